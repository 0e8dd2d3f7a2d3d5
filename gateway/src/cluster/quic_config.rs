//! QUIC settings towards the nodes. They must agree with the node's own (see README-API.md):
//! large datagrams on loopback, windows big enough for one fast stream, and no more.
//!
//! Pitfalls these settings avoid, seen with quinn on Linux:
//! - quinn batches up to 10 datagrams into one GSO `sendmsg`; above ~6.5 KB per datagram that
//!   exceeds the kernel's 64 KiB GSO limit, the send fails with `EMSGSIZE`, which quinn-udp
//!   swallows, and the losses make quinn fall back to 1200-byte packets. GSO is therefore turned
//!   off for large MTUs (one datagram per `sendmsg` costs nothing extra at 64 KB each).
//! - The congestion controller refuses to send a datagram larger than its window, so with a
//!   large initial MTU and the default initial window the first Initial never leaves. The
//!   initial window is at least ten datagrams.
//! - `EndpointConfig::max_udp_payload_size` defaults to 1472; it is what we announce we can
//!   receive and must be raised for the node to send us large datagrams.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

use super::config::{ETHERNET_MTU, MAX_QUIC_MTU};
use super::error::ClusterError;

/// Default per-stream receive window: bounds the read-ahead of one part download.
pub const STREAM_RECEIVE_WINDOW: u32 = 8 << 20;
/// Streams a node lets the gateway open on one connection (the node's
/// `max_concurrent_bidi_streams`); the connection window leaves room for all of them.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 512;
/// Upload bytes written to one node connection and not yet acknowledged: the cap on what the
/// gateway buffers per node for uploads. Unlike the node's (which covers every stream, see
/// `QuicSettings::effective_send_window` in the node), it stays a fixed cap: covering every
/// stream's window here took the gateway from 870 MiB to 1.7-2.9 GiB at 256 concurrent
/// uploads for no gain in throughput or errors (docs/bench.md), and the starvation that
/// motivated the node's change was seen on the node's sending side.
pub const SEND_WINDOW: u64 = 64 << 20;
/// Streams the peer may open towards us (nodes never do, but the setting mirrors the node's).
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 256;
/// Keeps idle pooled connections alive and detects dead peers.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// A connection silent for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// quinn's own cap on datagrams per GSO batch (`MAX_TRANSMIT_SEGMENTS` in quinn 0.11).
const QUINN_GSO_BATCH: usize = 10;
/// Largest total a GSO batch may carry (the kernel refuses more than 64 KiB per `sendmsg`).
const GSO_BYTES: usize = 65_000;
/// Minimum initial congestion window, in datagrams.
const INITIAL_WINDOW_PACKETS: u64 = 10;
/// quinn's default initial window (RFC 9002: min(10 × MTU, max(14720, 2 × MTU))).
const DEFAULT_INITIAL_WINDOW: u64 = 14_720;
/// Socket buffer size requested for the client UDP socket (capped by `net.core.*mem_max`).
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Whether quinn may batch datagrams of `mtu` bytes with GSO without exceeding the kernel limit.
pub fn gso_fits(mtu: u16) -> bool {
    usize::from(mtu) * QUINN_GSO_BATCH <= GSO_BYTES
}

/// Initial congestion window for datagrams of `mtu` bytes.
pub fn initial_window(mtu: u16) -> u64 {
    (u64::from(mtu) * INITIAL_WINDOW_PACKETS).max(DEFAULT_INITIAL_WINDOW)
}

/// Per-connection receive window for streams of `stream_window` bytes: room for every stream
/// the node lets us open to fill its own window, so that connection credit is never a shared
/// resource. With a smaller one, unread data of a download's read-ahead stream (its client still
/// reading the part before) could use up the credit that the parts being read need, on every
/// connection at once: the deadlock of 100 concurrent downloads. Memory stays bounded by the
/// streams actually open, which admission control limits (docs/architecture.md).
pub fn connection_window(stream_window: u32) -> VarInt {
    let bytes = u64::from(stream_window) * u64::from(MAX_STREAMS_PER_CONNECTION);
    VarInt::from_u64(bytes).unwrap_or(VarInt::MAX)
}

/// Transport settings for a path whose datagrams may be `mtu` bytes, with the default stream
/// window.
#[cfg(test)]
pub fn transport_config(mtu: u16) -> TransportConfig {
    transport_config_with(mtu, STREAM_RECEIVE_WINDOW)
}

/// Transport settings for a path whose datagrams may be `mtu` bytes.
///
/// The connection starts at `mtu` (clamped to the node's announced maximum during the
/// handshake) and MTU discovery may probe up to it again after a black hole was suspected; the
/// floor stays at QUIC's 1200 so that the handshake works even if the node is not tuned.
pub fn transport_config_with(mtu: u16, stream_window: u32) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(stream_window))
        .receive_window(connection_window(stream_window))
        .send_window(SEND_WINDOW)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
            u32::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(u32::MAX),
        ))))
        .initial_mtu(mtu)
        .enable_segmentation_offload(gso_fits(mtu));
    let mut mtud = MtuDiscoveryConfig::default();
    mtud.upper_bound(mtu.max(ETHERNET_MTU))
        .black_hole_cooldown(Duration::from_secs(10));
    t.mtu_discovery_config(Some(mtud));
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(initial_window(mtu));
    t.congestion_controller_factory(Arc::new(cubic));
    t
}

/// Endpoint settings: accept datagrams as large as UDP allows.
pub fn endpoint_config() -> Result<EndpointConfig, ClusterError> {
    let mut e = EndpointConfig::default();
    e.max_udp_payload_size(MAX_QUIC_MTU)
        .map_err(|err| ClusterError::Config(format!("max_udp_payload_size: {err}")))?;
    Ok(e)
}

/// A quinn client config from the gateway's rustls config and the transport for `mtu`.
pub fn client_config(
    tls: Arc<QuicClientConfig>,
    mtu: u16,
    stream_window: u32,
) -> quinn::ClientConfig {
    let mut c = quinn::ClientConfig::new(tls);
    c.transport_config(Arc::new(transport_config_with(mtu, stream_window)));
    c
}

/// Wraps the rustls config for QUIC (TLS 1.3 with a QUIC-capable initial cipher suite).
pub fn quic_tls(tls: Arc<rustls::ClientConfig>) -> Result<Arc<QuicClientConfig>, ClusterError> {
    if !tls
        .alpn_protocols
        .iter()
        .any(|p| p.as_slice() == sixfold_wire::ALPN)
    {
        return Err(ClusterError::Tls(
            "the gateway TLS config does not offer ALPN sixfold/1, which nodes require".into(),
        ));
    }
    QuicClientConfig::try_from(tls)
        .map(Arc::new)
        .map_err(|e| ClusterError::Tls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::config::JUMBO_MTU;

    #[test]
    fn connection_credit_covers_every_stream() {
        assert_eq!(
            connection_window(1 << 20).into_inner(),
            u64::from(MAX_STREAMS_PER_CONNECTION) << 20
        );
        assert_eq!(
            connection_window(u32::MAX).into_inner(),
            u64::from(u32::MAX) * u64::from(MAX_STREAMS_PER_CONNECTION)
        );
    }

    #[test]
    fn gso_only_where_a_batch_fits_in_64k() {
        assert!(gso_fits(1452));
        assert!(gso_fits(6500));
        assert!(!gso_fits(6501));
        assert!(!gso_fits(JUMBO_MTU));
    }

    #[test]
    fn initial_window_holds_ten_datagrams() {
        assert_eq!(initial_window(1200), DEFAULT_INITIAL_WINDOW);
        assert_eq!(initial_window(JUMBO_MTU), 650_000);
        assert!(initial_window(9000) >= 90_000);
    }

    #[test]
    fn endpoint_accepts_jumbo_datagrams() {
        let e = endpoint_config().expect("valid");
        assert_eq!(e.get_max_udp_payload_size(), u64::from(MAX_QUIC_MTU));
    }
}
