//! QUIC for a node shard: quinn-proto driven directly on monoio's io_uring runtime.
//!
//! quinn's own async layer needs `Send + Sync` sockets and a work-stealing runtime; a shard owns
//! its socket and everything on it, so this module runs quinn-proto (sans-IO) itself: one
//! driver task per endpoint ([`driver`]), quinn-udp for batched, segmented datagram I/O
//! ([`udp`]), and `Rc`-shared state with per-stream wakers ([`state`]) behind the handles
//! [`QuicEndpoint`], [`Connection`], [`RecvStream`] and [`SendStream`].
//!
//! [`QuicSettings`] holds the transport settings both ends must share; the gateway builds its
//! quinn configuration from the same values.

mod connection;
mod driver;
mod endpoint;
mod error;
pub mod settings;
mod state;
mod stream;
mod udp;

#[cfg(test)]
mod tests;

pub use connection::Connection;
pub use endpoint::QuicEndpoint;
pub use error::{ConnectError, ConnectionError, EndpointError, StreamError};
pub use quinn_proto::{ConnectionStats, StreamId, VarInt};
pub use settings::QuicSettings;
pub use stream::{DROPPED_STREAM_CODE, RecvStream, SendStream};
