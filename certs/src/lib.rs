//! The sixfold cluster PKI: a cluster CA, node and gateway certificates naming their role
//! (see [`identity`]), and rustls configurations for mutual TLS between the gateway and the
//! storage nodes.
//!
//! # A certs dir
//!
//! Every host keeps its PKI files in one directory, its *certs dir* (a node's default is
//! `<data-dir>/certs`). File names are fixed (see [`layout`]):
//!
//! | file | mode | where | what |
//! | --- | --- | --- | --- |
//! | `ca.pem` | 0644 | every host | the cluster CA certificate, the only trust anchor |
//! | `ca-key.pem` | 0600 | gateway host only | the CA key, signs new node certificates |
//! | `gateway.pem`, `gateway-key.pem` | 0644, 0600 | gateway | the gateway's client certificate |
//! | `node.pem`, `node-key.pem` | 0644, 0600 | each node | the node's server (and client) certificate |
//! | `cluster.token` | 0600 | older releases only | no longer written nor read: nodes authenticate with their certificate |
//!
//! [`init_cluster`] makes the gateway's dir (`sixfold-gateway certs init`); [`issue_node`]
//! makes a node's dir from it (`sixfold-gateway certs issue-node`). [`NodeTls::load`] and
//! [`GatewayTls::load`] turn a dir into rustls configs. Keys are created with
//! mode 0600 at open time, and existing files are only replaced when asked (`force`).
//!
//! ```
//! use sixfold_certs::{init_cluster, issue_node, GatewayTls, InitOptions, NodeCertRequest, NodeTls};
//!
//! # fn main() -> Result<(), sixfold_certs::CertsError> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let (gateway_dir, node_dir) = (tmp.path().join("gateway"), tmp.path().join("node-1"));
//! init_cluster(&gateway_dir, &InitOptions::default())?;
//! let request = NodeCertRequest {
//!     node_id: uuid::Uuid::new_v4(),
//!     name: "node-1".into(),
//!     ips: vec!["127.0.0.1".parse().unwrap()],
//!     dns_names: vec![],
//! };
//! issue_node(&gateway_dir, &request, &node_dir, false)?;
//!
//! let node_tls = NodeTls::load(&node_dir)?; // on the node: QUIC server config
//! let gateway_tls = GatewayTls::load(&gateway_dir)?; // on the gateway: QUIC client config
//! # let _ = (node_tls.server_config(), gateway_tls.client_config());
//! # Ok(())
//! # }
//! ```
//!
//! # TLS
//!
//! Connections are TLS 1.3 only with ALPN [`ALPN`]; both sides present a certificate and
//! accept only peers whose certificate chains to the cluster CA. The configs are built with
//! [`crypto_provider`] (aws-lc-rs, AES-128-GCM preferred) explicitly; [`install_crypto_provider`]
//! additionally makes it the process default for code that builds configs without naming a
//! provider.
//!
//! Keys are ECDSA P-256. The CA may sign only end-entity certificates (path length 0).

mod ca;
mod cluster;
mod error;
mod file_write;
pub mod identity;
mod issue;
pub mod layout;
mod pem_files;
mod random;
pub mod role_verify;
mod subject_name;
mod tls_config;
mod token;
mod validity;

pub use ca::{CA_COMMON_NAME_PREFIX, ClusterCa};
pub use cluster::{ClusterPaths, InitOptions, NodePaths, init_cluster, issue_node, renew_gateway};
pub use error::{CertsError, Result};
pub use file_write::{FileAccess, create_private_dir, ensure_absent, write_file};
pub use identity::{IdentityError, PeerIdentity, PeerRole, parse_identity};
pub use issue::{GATEWAY_COMMON_NAME, IssuedCert, NodeCertRequest};
pub use pem_files::{read_certificates, read_private_key, write_cert_and_key};
pub use tls_config::{
    ALPN_H2, ALPN_HTTP1, GatewayTls, NodeTls, client_config, https_server_config,
    internal_server_config, registration_client_config, server_config,
};
pub use token::ClusterToken;
pub use validity::Validity;

/// The ALPN protocol of the node protocol (QUIC between gateway and nodes).
pub const ALPN: &[u8] = b"sixfold/1";

/// The rustls crypto provider every sixfold TLS config is built with: aws-lc-rs, with the
/// TLS 1.3 suites in [`TLS13_SUITE_PREFERENCE`] order.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(provider())
}

/// The TLS 1.3 suites in the order both ends offer them; a sixfold connection negotiates the
/// first (the server follows the client's order, and both use this provider). AES-128-GCM
/// first: 10 AES rounds per block instead of AES-256's 14 on the bulk data of every
/// gateway-node connection; it is the suite every TLS 1.3 implementation must support (RFC 8446
/// §9.1). The other suites stay offered, so a peer that prefers another still connects.
pub const TLS13_SUITE_PREFERENCE: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// aws-lc-rs rather than ring: its AES-GCM has VAES code for 512-bit vectors (AVX-512), chosen
/// at run time from the CPU's features, where ring 0.17 stops at 256-bit VAES (AVX2); AES-GCM is
/// the largest computation of the data path on both ends (docs/bench.md, "CPU per GiB").
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let rank = |suite: &rustls::SupportedCipherSuite| {
        TLS13_SUITE_PREFERENCE
            .iter()
            .position(|s| *s == suite.suite())
            .unwrap_or(TLS13_SUITE_PREFERENCE.len())
    };
    // Stable: suites not named (TLS 1.2, for the public HTTPS listener) keep their order, after.
    provider.cipher_suites.sort_by_key(rank);
    provider
}

/// Makes [`crypto_provider`] the process-wide default.
///
/// Idempotent and never panics: if a provider is already installed (by an earlier call or
/// by other code) it is kept.
pub fn install_crypto_provider() {
    if provider().install_default().is_err() {
        tracing::debug!("a rustls crypto provider was already installed; keeping it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_prefers_aes_128_gcm_and_keeps_every_tls13_suite() {
        let provider = crypto_provider();
        let tls13: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .map(|s| s.suite())
            .collect();
        assert_eq!(tls13, TLS13_SUITE_PREFERENCE);
        assert_eq!(
            provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // The public HTTPS listener's TLS 1.2 suites are still there, after.
        assert!(provider.cipher_suites.iter().any(|s| s.tls13().is_none()));
    }
}
