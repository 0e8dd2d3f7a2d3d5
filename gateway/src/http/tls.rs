//! TLS on the gateway's HTTP listeners, shared by the public HTTPS API and the internal
//! (node registration) listener: the handshake with a timeout, which HTTP version ALPN chose,
//! and, with client certificates, who the peer is.
//!
//! The rustls configs come from `sixfold_certs` (ring provider, as the rest of the workspace):
//! [`sixfold_certs::https_server_config`] for the public API (no client certificates, `h2`
//! and `http/1.1`), and [`sixfold_certs::GatewayTls::internal_server_config`] for the internal
//! listener (node certificates only, checked in the handshake).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sixfold_certs::{PeerIdentity, parse_identity};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// Bound on a TLS handshake: a client that connects and stays silent (or trickles bytes)
/// holds a connection slot for at most this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The verified client certificate's identity, put into every request's extensions by the
/// internal listener.
#[derive(Debug, Clone)]
pub struct PeerCert(pub Arc<PeerIdentity>);

/// What the handshake settled for one connection.
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    /// ALPN chose HTTP/2.
    pub h2: bool,
    /// The client certificate's identity, when one was required and presented.
    pub peer: Option<PeerCert>,
}

/// Accepts TLS connections with one server config.
#[derive(Clone)]
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    pub fn new(config: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> Self {
        Self {
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout,
        }
    }

    /// The public API's acceptor from PEM files (`tls_cert`, `tls_key`).
    pub fn public_from_files(cert: &Path, key: &Path) -> Result<Self, sixfold_certs::CertsError> {
        let chain = sixfold_certs::read_certificates(cert)?;
        let key = sixfold_certs::read_private_key(key)?;
        let config = sixfold_certs::https_server_config(chain, key)?;
        Ok(Self::new(Arc::new(config), HANDSHAKE_TIMEOUT))
    }

    /// Runs the handshake (bounded by the handshake timeout).
    pub async fn accept<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, Negotiated)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let (_, conn) = stream.get_ref();
        let h2 = conn.alpn_protocol() == Some(sixfold_certs::ALPN_H2);
        // The verifier accepted the chain (and the role); this reads who it names.
        let peer = conn
            .peer_certificates()
            .and_then(<[_]>::first)
            .and_then(|leaf| parse_identity(leaf).ok())
            .map(|identity| PeerCert(Arc::new(identity)));
        Ok((stream, Negotiated { h2, peer }))
    }
}
