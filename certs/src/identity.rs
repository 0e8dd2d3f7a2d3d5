//! Who a certificate belongs to: the role and node id a cluster certificate names in a URI
//! subject alternative name (`urn:sixfold:node:<uuid>`, `urn:sixfold:gateway`).
//!
//! Only a certificate that chains to the cluster CA says anything: callers parse the identity
//! of a certificate a verifier has already accepted. The common name is for logs only; the
//! role in the URI is the identity (a host name or address never is).

use std::fmt;

use rustls_pki_types::CertificateDer;
use uuid::Uuid;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// URI of the gateway's certificate.
pub const GATEWAY_URI: &str = "urn:sixfold:gateway";
/// Prefix of a node certificate's URI; the node id (hyphenated UUID) follows.
pub const NODE_URI_PREFIX: &str = "urn:sixfold:node:";

/// The role a cluster certificate is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// The gateway: the only client storage nodes accept.
    Gateway,
    /// A storage node with its node id.
    Node(Uuid),
}

impl PeerRole {
    /// The URI subject alternative name that carries this role.
    pub fn uri(&self) -> String {
        match self {
            PeerRole::Gateway => GATEWAY_URI.to_owned(),
            PeerRole::Node(id) => format!("{NODE_URI_PREFIX}{}", id.hyphenated()),
        }
    }

    /// The node id, for a node certificate.
    pub fn node_id(&self) -> Option<Uuid> {
        match self {
            PeerRole::Node(id) => Some(*id),
            PeerRole::Gateway => None,
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerRole::Gateway => f.write_str("gateway"),
            PeerRole::Node(id) => write!(f, "node {id}"),
        }
    }
}

/// The identity parsed from a certificate: its role and, for logs, its common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub role: PeerRole,
    /// The subject's common name as written (peer-supplied text: log it with `?`).
    pub common_name: Option<String>,
}

/// Why a certificate names no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not an X.509 certificate.
    #[error("not a parsable X.509 certificate: {0}")]
    Malformed(String),
    /// No `urn:sixfold:` URI: a certificate from before roles existed, or not ours.
    #[error("the certificate names no sixfold role (no urn:sixfold: URI subject alternative name)")]
    NoRole,
    /// A `urn:sixfold:` URI that is not a known role, or several roles.
    #[error("the certificate's sixfold role is not valid: {0}")]
    BadRole(String),
}

/// Parses the role (and common name) of a DER certificate.
pub fn parse_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, IdentityError> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let common_name = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let san = x509
        .subject_alternative_name()
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let mut role = None;
    for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(found) = parse_uri(uri)? else {
            continue;
        };
        if role.replace(found).is_some_and(|r| r != found) {
            return Err(IdentityError::BadRole("more than one role".into()));
        }
    }
    let role = role.ok_or(IdentityError::NoRole)?;
    Ok(PeerIdentity { role, common_name })
}

/// `Some(role)` for a sixfold URI, `None` for any other URI, an error for a bad sixfold one.
fn parse_uri(uri: &str) -> Result<Option<PeerRole>, IdentityError> {
    if uri == GATEWAY_URI {
        return Ok(Some(PeerRole::Gateway));
    }
    if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
        let id = Uuid::parse_str(id)
            .map_err(|e| IdentityError::BadRole(format!("{uri:?}: node id is not a UUID: {e}")))?;
        if id.is_nil() {
            return Err(IdentityError::BadRole(format!("{uri:?}: nil node id")));
        }
        return Ok(Some(PeerRole::Node(id)));
    }
    if uri.starts_with("urn:sixfold:") {
        return Err(IdentityError::BadRole(format!("unknown role {uri:?}")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_role() {
        use crate::{ClusterCa, NodeCertRequest, Validity};
        let ca = ClusterCa::generate(Validity::ca_default()).unwrap();
        let id = Uuid::new_v4();
        let node = ca
            .issue_node(
                &NodeCertRequest {
                    node_id: id,
                    name: "node-7".into(),
                    ips: vec!["127.0.0.1".parse().unwrap()],
                    dns_names: vec!["node-7.local".into()],
                },
                Validity::leaf_default(),
            )
            .unwrap();
        let parsed = parse_identity(node.cert_der()).unwrap();
        assert_eq!(parsed.role, PeerRole::Node(id));
        assert_eq!(parsed.common_name.as_deref(), Some("node-7"));
        let gateway = ca.issue_gateway(Validity::leaf_default()).unwrap();
        assert_eq!(
            parse_identity(gateway.cert_der()).unwrap().role,
            PeerRole::Gateway
        );
        // A public HTTPS certificate (and a certificate of an older release) has no role.
        let server = ca
            .issue_server(
                &["127.0.0.1".parse().unwrap()],
                &[],
                Validity::leaf_default(),
            )
            .unwrap();
        assert_eq!(
            parse_identity(server.cert_der()),
            Err(IdentityError::NoRole)
        );
        assert!(matches!(
            parse_identity(&CertificateDer::from(vec![1, 2, 3])),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn uris_round_trip_and_bad_ones_are_refused() {
        let id = Uuid::from_u128(0x1234);
        assert_eq!(
            parse_uri(&PeerRole::Node(id).uri()),
            Ok(Some(PeerRole::Node(id)))
        );
        assert_eq!(
            parse_uri(&PeerRole::Gateway.uri()),
            Ok(Some(PeerRole::Gateway))
        );
        assert_eq!(parse_uri("https://example.com/"), Ok(None));
        assert!(matches!(
            parse_uri("urn:sixfold:node:nope"),
            Err(IdentityError::BadRole(_))
        ));
        assert!(matches!(
            parse_uri(&format!("{NODE_URI_PREFIX}{}", Uuid::nil())),
            Err(IdentityError::BadRole(_))
        ));
        assert!(matches!(
            parse_uri("urn:sixfold:admin"),
            Err(IdentityError::BadRole(_))
        ));
    }
}
