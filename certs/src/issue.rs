//! What goes into node and gateway certificates, and the issued result.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use uuid::Uuid;

use crate::error::{CertsError, Result};
use crate::identity::PeerRole;
use crate::pem_files::write_cert_and_key;
use crate::validity::Validity;

/// Common name of the gateway's certificate.
pub const GATEWAY_COMMON_NAME: &str = "sixfold-gateway";

/// The identity a node certificate is issued for.
///
/// The node id becomes the URI `urn:sixfold:node:<id>` (see [`crate::identity`]): the gateway
/// checks it against the node it meets. The QUIC handshake also checks one of the addresses or
/// names, so at least one is required: the address the gateway dials must be listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCertRequest {
    /// The node's id; the node takes its id from its certificate.
    pub node_id: Uuid,
    /// The node's name; becomes the certificate's common name.
    pub name: String,
    /// IP addresses the node is reached at (subject alternative names).
    pub ips: Vec<IpAddr>,
    /// DNS names the node is reached at (subject alternative names).
    pub dns_names: Vec<String>,
}

/// A freshly issued certificate with its new private key (ECDSA P-256, PKCS#8).
pub struct IssuedCert {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: PrivatePkcs8KeyDer<'static>,
    key_pem: String,
}

impl IssuedCert {
    pub(crate) fn sign(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Result<Self> {
        let key = new_key_pair()?;
        let cert = params.signed_by(&key, issuer)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, DER (a copy, as rustls configs take ownership).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The private key, PEM (`PRIVATE KEY`).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes the certificate (0644) and key (0600); see [`write_cert_and_key`].
    pub fn write(&self, cert_path: &Path, key_path: &Path, force: bool) -> Result<()> {
        write_cert_and_key(cert_path, &self.cert_pem, key_path, &self.key_pem, force)
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"[elided]")
            .finish()
    }
}

/// A new ECDSA P-256 key: small, fast to generate and to handshake with.
pub(crate) fn new_key_pair() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// Parameters of a node certificate: TLS server and client, names from the request.
pub(crate) fn node_params(req: &NodeCertRequest, validity: Validity) -> Result<CertificateParams> {
    if req.name.trim().is_empty() {
        return Err(CertsError::InvalidRequest("node name is empty".into()));
    }
    if req.ips.is_empty() && req.dns_names.is_empty() {
        return Err(CertsError::InvalidRequest(format!(
            "node {:?} needs at least one IP address or DNS name",
            req.name
        )));
    }
    if req.node_id.is_nil() {
        return Err(CertsError::InvalidRequest("node id is the nil UUID".into()));
    }
    let mut sans = host_sans(&req.ips, &req.dns_names)?;
    sans.push(role_san(PeerRole::Node(req.node_id))?);
    let mut params = leaf_params(&req.name, validity);
    params.subject_alt_names = sans;
    Ok(params)
}

/// Parameters of the gateway certificate: the TLS client towards nodes, and the server of the
/// internal (registration) listener; the role URI says it is the gateway.
pub(crate) fn gateway_params(validity: Validity) -> Result<CertificateParams> {
    let mut params = leaf_params(GATEWAY_COMMON_NAME, validity);
    params.subject_alt_names = vec![role_san(PeerRole::Gateway)?];
    Ok(params)
}

/// Parameters of an HTTPS server certificate for the public API: server auth only and no role,
/// so it can never pass as a cluster member.
pub(crate) fn server_params(
    ips: &[IpAddr],
    dns_names: &[String],
    validity: Validity,
) -> Result<CertificateParams> {
    if ips.is_empty() && dns_names.is_empty() {
        return Err(CertsError::InvalidRequest(
            "a server certificate needs at least one IP address or DNS name".into(),
        ));
    }
    let common_name = dns_names
        .first()
        .cloned()
        .or_else(|| ips.first().map(IpAddr::to_string))
        .unwrap_or_default();
    let mut params = leaf_params(&common_name, validity);
    params.subject_alt_names = host_sans(ips, dns_names)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn host_sans(ips: &[IpAddr], dns_names: &[String]) -> Result<Vec<SanType>> {
    let mut sans = Vec::with_capacity(ips.len() + dns_names.len() + 1);
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    for name in dns_names {
        let dns = name.clone().try_into().map_err(|e| {
            CertsError::InvalidRequest(format!("DNS name {name:?} is not valid: {e}"))
        })?;
        sans.push(SanType::DnsName(dns));
    }
    Ok(sans)
}

fn role_san(role: PeerRole) -> Result<SanType> {
    let uri = role.uri();
    let uri = uri
        .clone()
        .try_into()
        .map_err(|e| CertsError::InvalidRequest(format!("URI {uri:?} is not valid: {e}")))?;
    Ok(SanType::URI(uri))
}

fn leaf_params(common_name: &str, validity: Validity) -> CertificateParams {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.not_before = validity.not_before();
    params.not_after = validity.not_after();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ips: &[&str], dns: &[&str]) -> NodeCertRequest {
        NodeCertRequest {
            node_id: Uuid::from_u128(7),
            name: "node-1".into(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn node_params_carry_every_name() {
        let params = node_params(
            &request(&["127.0.0.1", "::1"], &["node-1.local"]),
            Validity::leaf_default(),
        )
        .unwrap();
        assert_eq!(params.subject_alt_names.len(), 4);
        assert!(
            params.subject_alt_names.contains(&SanType::URI(
                "urn:sixfold:node:00000000-0000-0000-0000-000000000007"
                    .try_into()
                    .unwrap()
            ))
        );
        assert!(
            params
                .subject_alt_names
                .contains(&SanType::IpAddress("::1".parse().unwrap()))
        );
        assert_eq!(
            params.distinguished_name.get(&DnType::CommonName),
            Some(&"node-1".into())
        );
        assert!(
            params
                .extended_key_usages
                .contains(&ExtendedKeyUsagePurpose::ServerAuth)
        );
        assert!(
            params
                .extended_key_usages
                .contains(&ExtendedKeyUsagePurpose::ClientAuth)
        );
    }

    #[test]
    fn node_without_names_or_with_bad_dns_is_refused() {
        let v = Validity::leaf_default();
        assert!(matches!(
            node_params(&request(&[], &[]), v),
            Err(CertsError::InvalidRequest(_))
        ));
        let mut unnamed = request(&["10.0.0.1"], &[]);
        unnamed.name = " ".into();
        assert!(matches!(
            node_params(&unnamed, v),
            Err(CertsError::InvalidRequest(_))
        ));
        assert!(matches!(
            node_params(&request(&[], &["bad name\u{e9}"]), v),
            Err(CertsError::InvalidRequest(_))
        ));
    }
}
