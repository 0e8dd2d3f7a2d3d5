//! QUIC transport settings shared by both ends of a sixfold connection.
//!
//! The node (quinn-proto driven on monoio) and the gateway (quinn on tokio) must apply the same
//! values, or the smaller side silently wins (max UDP payload, windows) or packets are lost (MTU).
//! This file depends only on `quinn-proto` and `std` so that it can move to a shared crate as is.
//!
//! Every value here was chosen against a failure met in practice:
//! - the path MTU is the largest lever on CPU per byte (3-6x less CPU per GiB at 65000 than at
//!   1452 on loopback), so it is a setting and both `initial_mtu` and the MTU discovery upper
//!   bound follow it;
//! - `EndpointConfig::max_udp_payload_size` defaults to 1472 and caps the MTU below any setting,
//!   so it is raised to the MTU on both sides;
//! - a jumbo `initial_mtu` with the default congestion window (14720 bytes) is smaller than one
//!   datagram and the first Initial is never sent, so the initial window is at least 10 datagrams;
//! - one GSO send may carry at most 65507 bytes; above that the kernel answers EMSGSIZE, which
//!   quinn-udp ignores, and quinn mistakes the silence for a black hole and drops to 1200 bytes.
//!   quinn batches up to 10 segments per send, so GSO is turned off whenever 10 segments of the
//!   MTU could exceed that limit, and I/O layers that batch themselves cap segments with
//!   [`QuicSettings::max_gso_segments`].

use std::sync::Arc;
use std::time::Duration;

use quinn_proto::congestion::CubicConfig;
use quinn_proto::{
    ConfigError, EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt,
};

/// Largest UDP payload one GSO send can carry: 65535 (IPv4 total length) - 20 (IP) - 8 (UDP).
pub const MAX_GSO_PAYLOAD: usize = 65_507;

/// Segments quinn (the async crate) puts in one GSO send at most (`MAX_TRANSMIT_SEGMENTS`).
const QUINN_MAX_TRANSMIT_SEGMENTS: usize = 10;

/// Linux allows at most 64 segments per GSO send (`UDP_MAX_SEGMENTS`).
const KERNEL_MAX_GSO_SEGMENTS: usize = 64;

/// Smallest UDP payload every QUIC path must carry (RFC 9000 §14).
const QUIC_MIN_MTU: u16 = 1200;

/// Largest UDP payload quinn-proto accepts for `max_udp_payload_size`.
const QUIC_MAX_UDP_PAYLOAD: u16 = 65_527;

const MIB: u32 = 1024 * 1024;

/// Transport settings for a sixfold QUIC endpoint (node and gateway alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicSettings {
    /// Path MTU as QUIC counts it: the largest UDP payload (IP and UDP headers excluded).
    /// [`QuicSettings::DEFAULT_MTU`] fits a standard 1500-byte Ethernet path;
    /// [`QuicSettings::LOOPBACK_JUMBO_MTU`] fits loopback (64 KiB). Clamped to 1200..=65527.
    pub mtu: u16,
    /// Flow-control window of one stream: unread data the peer may send on it. The window of
    /// a whole connection is derived from it ([`QuicSettings::connection_receive_window`]).
    pub stream_receive_window: u32,
    /// Data a sender keeps buffered or unacknowledged per connection, on top of what the
    /// peer's flow control already bounds (see [`QuicSettings::effective_send_window`]).
    pub send_window: u64,
    /// Bidirectional streams the peer may have open at once.
    pub max_concurrent_bidi_streams: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Ping interval keeping idle pooled connections alive; `None` disables pings.
    pub keep_alive_interval: Option<Duration>,
    /// Requested kernel send and receive buffer of the UDP socket, in bytes.
    pub socket_buffer_size: usize,
}

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            mtu: Self::DEFAULT_MTU,
            stream_receive_window: 8 * MIB,
            send_window: 32 * u64::from(MIB),
            max_concurrent_bidi_streams: 512,
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Some(Duration::from_secs(10)),
            socket_buffer_size: 8 * MIB as usize,
        }
    }
}

impl QuicSettings {
    /// Safe MTU for a 1500-byte Ethernet path with IPv6 headers (1500 - 40 - 8).
    pub const DEFAULT_MTU: u16 = 1452;
    /// MTU for loopback (interface MTU 65536) and the jumbo test setups.
    pub const LOOPBACK_JUMBO_MTU: u16 = 65_000;

    /// Defaults with [`QuicSettings::LOOPBACK_JUMBO_MTU`]: for clusters on one host.
    pub fn loopback_jumbo() -> Self {
        Self::default().with_mtu(Self::LOOPBACK_JUMBO_MTU)
    }

    /// The same settings with another MTU.
    pub fn with_mtu(mut self, mtu: u16) -> Self {
        self.mtu = mtu;
        self
    }

    /// The MTU actually used: [`QuicSettings::mtu`] clamped to what QUIC allows.
    pub fn effective_mtu(&self) -> u16 {
        self.mtu.clamp(QUIC_MIN_MTU, QUIC_MAX_UDP_PAYLOAD)
    }

    /// Whether quinn's 10-segment GSO batches stay within [`MAX_GSO_PAYLOAD`] at this MTU.
    pub fn segmentation_offload(&self) -> bool {
        usize::from(self.effective_mtu()) * QUINN_MAX_TRANSMIT_SEGMENTS <= MAX_GSO_PAYLOAD
    }

    /// Most datagrams one GSO send may carry at this MTU, for an I/O layer that batches itself.
    /// `platform_max` is what the socket supports (`quinn_udp::UdpSocketState::max_gso_segments`).
    pub fn max_gso_segments(&self, platform_max: usize) -> usize {
        if !self.segmentation_offload() {
            return 1;
        }
        let fit = MAX_GSO_PAYLOAD / usize::from(self.effective_mtu());
        fit.min(platform_max).clamp(1, KERNEL_MAX_GSO_SEGMENTS)
    }

    /// Flow-control window of a whole connection: room for every stream the peer may open to
    /// fill its own window. A smaller connection window is a resource all streams share, and
    /// a stream whose reader waits (a put waiting for a disk buffer, a download whose client
    /// reads another part first) would then withhold credit from the streams that could make
    /// progress: that was the deadlock of 100 concurrent transfers. Memory stays bounded by
    /// the streams actually open, which admission control limits.
    pub fn connection_receive_window(&self) -> u64 {
        u64::from(self.stream_receive_window) * u64::from(self.max_concurrent_bidi_streams)
    }

    /// The send window used: at least room for every stream to use its whole stream window.
    /// quinn-proto blocks every stream of a connection once this much is written and not yet
    /// acknowledged, so a smaller one is credit all streams share, and under load a stream can
    /// wait behind the others for longer than any request timeout (seen: gets that sent nothing
    /// for 30 s while others on the same connection moved). Each stream's writes stay bounded
    /// by the peer's stream credit, and so memory by the streams admission lets open.
    pub fn effective_send_window(&self) -> u64 {
        self.send_window.max(self.connection_receive_window())
    }

    /// Congestion window before the first acknowledgement: at least 10 datagrams of the MTU.
    pub fn initial_congestion_window(&self) -> u64 {
        // quinn-proto's own default, kept when the MTU is small.
        const QUINN_DEFAULT_INITIAL_WINDOW: u64 = 14_720;
        (10 * u64::from(self.effective_mtu())).max(QUINN_DEFAULT_INITIAL_WINDOW)
    }

    /// Transport parameters for connections on either side.
    pub fn transport_config(&self) -> TransportConfig {
        let mtu = self.effective_mtu();
        let mut transport = TransportConfig::default();

        let mut mtu_discovery = MtuDiscoveryConfig::default();
        mtu_discovery.upper_bound(mtu);
        transport
            .initial_mtu(mtu)
            .min_mtu(QUIC_MIN_MTU)
            .mtu_discovery_config(Some(mtu_discovery))
            .enable_segmentation_offload(self.segmentation_offload());

        let mut cubic = CubicConfig::default();
        cubic.initial_window(self.initial_congestion_window());
        transport.congestion_controller_factory(Arc::new(cubic));

        transport
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(
                VarInt::from_u64(self.connection_receive_window()).unwrap_or(VarInt::MAX),
            )
            .send_window(self.effective_send_window())
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .max_idle_timeout(Some(idle_timeout(self.idle_timeout)))
            .keep_alive_interval(self.keep_alive_interval)
            // sixfold moves files on streams only.
            .datagram_receive_buffer_size(None);
        transport
    }

    /// Endpoint parameters: the largest UDP payload accepted from peers follows the MTU.
    pub fn endpoint_config(&self) -> Result<EndpointConfig, ConfigError> {
        let mut endpoint = EndpointConfig::default();
        endpoint.max_udp_payload_size(self.effective_mtu().max(DEFAULT_MAX_UDP_PAYLOAD))?;
        Ok(endpoint)
    }
}

/// quinn-proto's default `max_udp_payload_size`; never lowered below it.
const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1472;

fn idle_timeout(timeout: Duration) -> IdleTimeout {
    // IdleTimeout is milliseconds in a VarInt; u32 milliseconds (49 days) is plenty.
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    IdleTimeout::from(VarInt::from_u32(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_stream_can_starve_another_of_connection_credit() {
        let s = QuicSettings::default();
        assert!(
            s.connection_receive_window()
                >= u64::from(s.stream_receive_window) * u64::from(s.max_concurrent_bidi_streams)
        );
        let tiny = QuicSettings {
            stream_receive_window: 64 * 1024,
            max_concurrent_bidi_streams: 3,
            ..QuicSettings::default()
        };
        assert_eq!(tiny.connection_receive_window(), 3 * 64 * 1024);
        assert!(s.effective_send_window() >= s.connection_receive_window());
        assert_eq!(tiny.effective_send_window(), tiny.send_window);
    }

    #[test]
    fn default_mtu_keeps_gso_within_one_send() {
        let s = QuicSettings::default();
        assert!(s.segmentation_offload());
        assert_eq!(s.max_gso_segments(64), 45);
        assert!(s.max_gso_segments(64) * usize::from(s.mtu) <= MAX_GSO_PAYLOAD);
        assert_eq!(s.max_gso_segments(1), 1);
    }

    #[test]
    fn jumbo_mtu_turns_gso_off() {
        let s = QuicSettings::loopback_jumbo();
        assert!(!s.segmentation_offload());
        assert_eq!(s.max_gso_segments(64), 1);
        // The threshold sits where quinn's 10 segments would pass the limit.
        assert!(
            QuicSettings::default()
                .with_mtu(6550)
                .segmentation_offload()
        );
        assert!(
            !QuicSettings::default()
                .with_mtu(6551)
                .segmentation_offload()
        );
    }

    #[test]
    fn initial_window_holds_ten_datagrams() {
        assert_eq!(QuicSettings::default().initial_congestion_window(), 14_720);
        assert_eq!(
            QuicSettings::loopback_jumbo().initial_congestion_window(),
            650_000
        );
    }

    #[test]
    fn endpoint_accepts_the_mtu() {
        let jumbo = QuicSettings::loopback_jumbo().endpoint_config().unwrap();
        assert_eq!(jumbo.get_max_udp_payload_size(), 65_000);
        let small = QuicSettings::default().endpoint_config().unwrap();
        assert_eq!(small.get_max_udp_payload_size(), 1472);
    }

    #[test]
    fn mtu_is_clamped_to_quic_limits() {
        assert_eq!(QuicSettings::default().with_mtu(500).effective_mtu(), 1200);
        assert_eq!(
            QuicSettings::default().with_mtu(u16::MAX).effective_mtu(),
            65_527
        );
        assert!(
            QuicSettings::default()
                .with_mtu(u16::MAX)
                .endpoint_config()
                .is_ok()
        );
    }
}
