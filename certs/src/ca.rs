//! The cluster certificate authority: made once, kept on the gateway host, signs every
//! node and gateway certificate.

use std::fmt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::error::{CertsError, Result};
use crate::issue::{
    IssuedCert, NodeCertRequest, gateway_params, new_key_pair, node_params, server_params,
};
use crate::layout::{CA_CERT, CA_KEY};
use crate::pem_files::{read_certificates_pem, read_private_key, write_cert_and_key};
use crate::random::{hex, random_bytes};
use crate::subject_name::parse_subject;
use crate::validity::Validity;

/// Prefix of the CA's common name; a random suffix makes every cluster's CA name unique,
/// so a certificate from another cluster is an unknown issuer rather than a bad signature.
pub const CA_COMMON_NAME_PREFIX: &str = "sixfold cluster CA";

/// The cluster CA: its certificate and the key that signs with it.
pub struct ClusterCa {
    cert: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// Makes a new self-signed CA (ECDSA P-256; may sign end-entity certificates only).
    pub fn generate(validity: Validity) -> Result<Self> {
        let id = random_bytes::<8>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "sixfold");
        dn.push(
            DnType::CommonName,
            format!("{CA_COMMON_NAME_PREFIX} {}", hex(&id)),
        );
        let mut params = ca_params(dn);
        params.not_before = validity.not_before();
        params.not_after = validity.not_after();
        let key = new_key_pair()?;
        let cert = params.self_signed(&key)?;
        tracing::info!(id = %hex(&id), "generated cluster CA");
        Ok(Self {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem` and `ca-key.pem` from a certs dir.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_files(&dir.join(CA_CERT), &dir.join(CA_KEY))
    }

    /// Loads a CA from a certificate file and its key file.
    ///
    /// Fails if the key is not the certificate's key, or if the certificate's subject
    /// cannot be reproduced exactly (certificates signed with it would not chain).
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let (cert_pem, mut certs) = read_certificates_pem(cert_path)?;
        if certs.len() != 1 {
            return Err(CertsError::invalid_file(
                cert_path,
                format!("expected exactly one CA certificate, found {}", certs.len()),
            ));
        }
        let cert = certs.swap_remove(0);
        let key = KeyPair::try_from(&read_private_key(key_path)?).map_err(|e| {
            CertsError::invalid_file(key_path, format!("unusable private key: {e}"))
        })?;

        let anchor = trust_anchor(&cert).map_err(|reason| {
            CertsError::invalid_file(cert_path, format!("not a usable CA certificate: {reason}"))
        })?;
        let dn = parse_subject(&anchor.subject).map_err(|reason| {
            CertsError::invalid_file(cert_path, format!("unsupported CA subject name: {reason}"))
        })?;
        let params = ca_params(dn);

        // Re-encode the subject and public key through rcgen and compare bytes: this is what
        // issued certificates will carry as their issuer.
        let probe = params.self_signed(&key)?;
        let probe = trust_anchor(probe.der()).map_err(|reason| {
            CertsError::invalid_file(cert_path, format!("cannot re-encode CA: {reason}"))
        })?;
        if probe.subject_public_key_info != anchor.subject_public_key_info {
            return Err(CertsError::invalid_file(
                key_path,
                format!("is not the key of {}", cert_path.display()),
            ));
        }
        if probe.subject != anchor.subject {
            return Err(CertsError::invalid_file(
                cert_path,
                "CA subject name cannot be reproduced exactly for signing",
            ));
        }

        Ok(Self {
            cert,
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes `ca.pem` (0644) and `ca-key.pem` (0600) into `dir`, which must exist.
    pub fn save(&self, dir: &Path, force: bool) -> Result<()> {
        write_cert_and_key(
            &dir.join(CA_CERT),
            &self.cert_pem,
            &dir.join(CA_KEY),
            &self.issuer.key().serialize_pem(),
            force,
        )
    }

    /// The CA certificate, DER (what verifiers trust).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate, PEM (the content of `ca.pem`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a node certificate (server and client auth; names from `req`).
    pub fn issue_node(&self, req: &NodeCertRequest, validity: Validity) -> Result<IssuedCert> {
        let cert = IssuedCert::sign(&node_params(req, validity)?, &self.issuer)?;
        tracing::info!(node = ?req.name, node_id = %req.node_id, ips = ?req.ips, dns = ?req.dns_names, "issued node certificate");
        Ok(cert)
    }

    /// Issues the gateway's certificate (client auth, and server auth).
    pub fn issue_gateway(&self, validity: Validity) -> Result<IssuedCert> {
        IssuedCert::sign(&gateway_params(validity)?, &self.issuer)
    }

    /// Issues an HTTPS server certificate (server auth only, no cluster role) for the public
    /// API, e.g. `dev --tls`.
    pub fn issue_server(
        &self,
        ips: &[std::net::IpAddr],
        dns_names: &[String],
        validity: Validity,
    ) -> Result<IssuedCert> {
        IssuedCert::sign(&server_params(ips, dns_names, validity)?, &self.issuer)
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn ca_params(dn: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn trust_anchor(cert: &CertificateDer<'_>) -> Result<TrustAnchor<'static>, rustls::Error> {
    let mut store = RootCertStore::empty();
    store.add(cert.clone().into_owned())?;
    Ok(store.roots.swap_remove(0))
}
