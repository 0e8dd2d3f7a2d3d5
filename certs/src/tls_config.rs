//! rustls configurations for mutual TLS inside the cluster.
//!
//! Both sides trust the cluster CA and nothing else, speak TLS 1.3 only (so the configs can
//! become QUIC configs) and offer the ALPN protocol [`ALPN`]. The workspace's provider
//! ([`crate::crypto_provider`]) is passed explicitly, so no process-wide default provider is
//! needed to build them.
//!
//! Roles (see [`crate::identity`]) are checked in the handshake: a node's QUIC server takes
//! only the gateway as client; the gateway's internal HTTPS listener only nodes; a node's
//! registration client only the gateway as server.

use std::path::Path;
use std::sync::Arc;

use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ALPN;
use crate::error::{CertsError, Result};
use crate::identity::{IdentityError, PeerIdentity, parse_identity};
use crate::layout::{CA_CERT, GATEWAY_CERT, GATEWAY_KEY, NODE_CERT, NODE_KEY};
use crate::pem_files::{read_certificates, read_private_key};
use crate::role_verify::{RequiredRole, RoleClientVerifier, RoleServerVerifier};

/// ALPN of HTTP/1.1, the internal (registration) listener's only protocol.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// A node's QUIC server config: presents `cert_chain` and requires a client certificate
/// chaining to one of `ca_certs` with the gateway role.
pub fn server_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    mutual_server_config(ca_certs, cert_chain, key, RequiredRole::Gateway, ALPN)
}

/// The gateway's internal HTTPS listener (registration, heartbeats): presents the gateway's
/// `cert_chain` and requires a node certificate from the cluster CA. HTTP/1.1 only.
pub fn internal_server_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    mutual_server_config(ca_certs, cert_chain, key, RequiredRole::AnyNode, ALPN_HTTP1)
}

fn mutual_server_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    required: RequiredRole,
    alpn: &[u8],
) -> Result<ServerConfig> {
    let provider = crate::crypto_provider();
    let webpki = WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(ca_certs)?),
        provider.clone(),
    )
    .build()?;
    let verifier = Arc::new(RoleClientVerifier::new(webpki, required));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A node's client config for the gateway's internal listener: presents the node's
/// certificate and accepts a server only by its chain to the CA and the gateway role (not by
/// host name). HTTP/1.1.
pub fn registration_client_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig> {
    let provider = crate::crypto_provider();
    let verifier = Arc::new(RoleServerVerifier::new(
        Arc::new(root_store(ca_certs)?),
        provider.clone(),
        RequiredRole::Gateway,
    ));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// The public API's HTTPS server config: no client certificates, TLS 1.2 and 1.3, HTTP/2 and
/// HTTP/1.1 by ALPN.
pub fn https_server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(crate::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// A client config that verifies the server against `ca_certs` only and presents
/// `cert_chain` as its client certificate.
pub fn client_config(
    ca_certs: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(crate::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(root_store(ca_certs)?)
        .with_client_auth_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A storage node's TLS side, loaded from its certs dir (`ca.pem`, `node.pem`,
/// `node-key.pem`): the QUIC server config and the registration client config.
#[derive(Clone, Debug)]
pub struct NodeTls {
    server_config: Arc<ServerConfig>,
    registration_config: Arc<ClientConfig>,
    identity: Result<PeerIdentity, IdentityError>,
}

impl NodeTls {
    /// Loads the files and builds the configs (checks the key matches the cert). A
    /// certificate without a role loads too; [`NodeTls::identity`] says what is wrong with it,
    /// so the caller can tell the operator how to re-issue it.
    pub fn load(certs_dir: &Path) -> Result<Self> {
        let (ca, chain, key) = load_parts(certs_dir, NODE_CERT, NODE_KEY)?;
        let identity = chain
            .first()
            .map_or(Err(IdentityError::NoRole), parse_identity);
        let attribute = |e| attribute(e, certs_dir, NODE_CERT, NODE_KEY);
        let registration =
            registration_client_config(&ca, chain.clone(), key.clone_key()).map_err(attribute)?;
        let server = server_config(&ca, chain, key).map_err(attribute)?;
        Ok(Self {
            server_config: Arc::new(server),
            registration_config: Arc::new(registration),
            identity,
        })
    }

    /// The QUIC server config, shareable between endpoints.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config.clone()
    }

    /// The HTTPS client config towards the gateway's internal listener.
    pub fn registration_config(&self) -> Arc<ClientConfig> {
        self.registration_config.clone()
    }

    /// The role (node id) the node certificate names.
    pub fn identity(&self) -> Result<&PeerIdentity, &IdentityError> {
        self.identity.as_ref()
    }
}

/// The gateway's TLS side, loaded from its certs dir (`ca.pem`, `gateway.pem`,
/// `gateway-key.pem`): the QUIC client config towards nodes, and the internal listener's
/// server config.
#[derive(Clone, Debug)]
pub struct GatewayTls {
    client_config: Arc<ClientConfig>,
    internal_config: Arc<ServerConfig>,
    identity: Result<PeerIdentity, IdentityError>,
}

impl GatewayTls {
    /// Loads the files and builds the configs (checks the key matches the cert).
    pub fn load(certs_dir: &Path) -> Result<Self> {
        let (ca, chain, key) = load_parts(certs_dir, GATEWAY_CERT, GATEWAY_KEY)?;
        let identity = chain
            .first()
            .map_or(Err(IdentityError::NoRole), parse_identity);
        let attribute = |e| attribute(e, certs_dir, GATEWAY_CERT, GATEWAY_KEY);
        let internal =
            internal_server_config(&ca, chain.clone(), key.clone_key()).map_err(attribute)?;
        let client = client_config(&ca, chain, key).map_err(attribute)?;
        Ok(Self {
            client_config: Arc::new(client),
            internal_config: Arc::new(internal),
            identity,
        })
    }

    /// The client config, shareable between connections.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config.clone()
    }

    /// The internal listener's server config (requires node client certificates).
    pub fn internal_server_config(&self) -> Arc<ServerConfig> {
        self.internal_config.clone()
    }

    /// The role the gateway certificate names (an error for a certificate from before roles).
    pub fn identity(&self) -> Result<&PeerIdentity, &IdentityError> {
        self.identity.as_ref()
    }
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
