//! rustls configurations for mutual TLS inside the cluster.
//!
//! Both sides trust the cluster CA and nothing else, speak TLS 1.3 only (so the configs can
//! become QUIC configs) and offer the ALPN protocol [`ALPN`]. The ring provider is passed
//! explicitly, so no process-wide default provider is needed to build them.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ALPN;
use crate::error::{CertsError, Result};
use crate::layout::{CA_CERT, GATEWAY_CERT, GATEWAY_KEY, NODE_CERT, NODE_KEY};
use crate::pem_files::{read_certificates, read_private_key};

/// A server config that presents `cert_chain` and requires a client certificate chaining
/// to one of `ca_certs`.
pub fn server_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    let provider = ring_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(ca_certs)?),
        provider.clone(),
    )
    .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A client config that verifies the server against `ca_certs` only and presents
/// `cert_chain` as its client certificate.
pub fn client_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(root_store(ca_certs)?)
        .with_client_auth_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A storage node's TLS server side, loaded from its certs dir
/// (`ca.pem`, `node.pem`, `node-key.pem`).
#[derive(Clone, Debug)]
pub struct NodeTls {
    server_config: Arc<ServerConfig>,
}

impl NodeTls {
    /// Loads the files and builds the server config (checks the key matches the cert).
    pub fn load(certs_dir: &Path) -> Result<Self> {
        let (ca, chain, key) = load_parts(certs_dir, NODE_CERT, NODE_KEY)?;
        let config = server_config(&ca, chain, key)
            .map_err(|e| attribute(e, certs_dir, NODE_CERT, NODE_KEY))?;
        Ok(Self {
            server_config: Arc::new(config),
        })
    }

    /// The server config, shareable between endpoints.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config.clone()
    }
}

/// The gateway's TLS client side, loaded from its certs dir
/// (`ca.pem`, `gateway.pem`, `gateway-key.pem`).
#[derive(Clone, Debug)]
pub struct GatewayTls {
    client_config: Arc<ClientConfig>,
}

impl GatewayTls {
    /// Loads the files and builds the client config (checks the key matches the cert).
    pub fn load(certs_dir: &Path) -> Result<Self> {
        let (ca, chain, key) = load_parts(certs_dir, GATEWAY_CERT, GATEWAY_KEY)?;
        let config = client_config(&ca, chain, key)
            .map_err(|e| attribute(e, certs_dir, GATEWAY_CERT, GATEWAY_KEY))?;
        Ok(Self {
            client_config: Arc::new(config),
        })
    }

    /// The client config, shareable between connections.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config.clone()
    }
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(ca_certs: &[CertificateDer<'static>]) -> Result<RootCertStore> {
    if ca_certs.is_empty() {
        return Err(VerifierBuilderError::NoRootAnchors.into());
    }
    let mut roots = RootCertStore::empty();
    for cert in ca_certs {
        roots.add(cert.clone())?;
    }
    Ok(roots)
}

type TlsParts = (
    Vec<CertificateDer<'static>>,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

/// Reads the CA, a certificate chain and its key from a certs dir, checking the CA first so
/// that a bad `ca.pem` is reported as such.
fn load_parts(dir: &Path, cert_file: &str, key_file: &str) -> Result<TlsParts> {
    let ca_path = dir.join(CA_CERT);
    let ca = read_certificates(&ca_path)?;
    root_store(&ca).map_err(|e| CertsError::invalid_file(&ca_path, e.to_string()))?;
    let chain = read_certificates(&dir.join(cert_file))?;
    let key = read_private_key(&dir.join(key_file))?;
    Ok((ca, chain, key))
}

/// rustls errors do not name files; once the CA is known good, a refusal concerns the
/// certificate and its key.
fn attribute(err: CertsError, dir: &Path, cert_file: &str, key_file: &str) -> CertsError {
    match err {
        CertsError::Tls(e) => CertsError::invalid_file(
            dir.join(cert_file),
            format!("{e} (with key {})", dir.join(key_file).display()),
        ),
        other => other,
    }
}
