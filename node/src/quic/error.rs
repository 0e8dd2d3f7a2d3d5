//! Errors of the QUIC layer.

use std::io;

pub use quinn_proto::ConnectionError;
use quinn_proto::VarInt;

/// Setting up an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The UDP socket could not be created, bound or configured.
    #[error("UDP socket: {0}")]
    Io(#[from] io::Error),
    /// The rustls configuration cannot serve QUIC (it must allow TLS 1.3 with an initial suite).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(#[from] quinn_proto::crypto::rustls::NoInitialCipherSuite),
    /// A transport or endpoint setting is out of bounds.
    #[error("QUIC configuration: {0}")]
    Config(#[from] quinn_proto::ConfigError),
}

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection could not be started (bad address, bad server name, ...).
    #[error("cannot start connection: {0}")]
    Start(#[from] quinn_proto::ConnectError),
    /// The rustls configuration cannot serve QUIC (it must allow TLS 1.3 with an initial suite).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(#[from] quinn_proto::crypto::rustls::NoInitialCipherSuite),
    /// The handshake failed or the connection was lost before it completed.
    #[error("connection failed: {0}")]
    Connection(#[from] ConnectionError),
    /// The endpoint was closed.
    #[error("endpoint closed")]
    EndpointClosed,
}

/// Reading from or writing to a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The peer reset the stream it was sending (RESET_STREAM) with this application code.
    #[error("stream reset by peer with code {0}")]
    Reset(VarInt),
    /// The peer no longer reads this stream (STOP_SENDING) and gave this application code.
    #[error("stream stopped by peer with code {0}")]
    Stopped(VarInt),
    /// The connection is gone; the reason says why.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] ConnectionError),
    /// This side already finished, reset or stopped the stream.
    #[error("stream already closed")]
    Closed,
}
