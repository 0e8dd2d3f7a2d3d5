//! Settings of the cluster layer: heartbeats, expiry, cleanup cadence and QUIC path MTU.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// UDP payload size used towards nodes on loopback: the loopback interface carries 64 KiB
/// datagrams, and per-packet costs dominate QUIC's CPU use, so jumbo packets cut CPU per GiB
/// several times over.
pub const JUMBO_MTU: u16 = 65_000;
/// UDP payload size that fits an Ethernet MTU of 1500 with IPv6 (1500 − 40 − 8).
pub const ETHERNET_MTU: u16 = 1452;
/// Smallest UDP payload size QUIC allows (RFC 9000 §14).
pub const MIN_QUIC_MTU: u16 = 1200;
/// Largest UDP payload size quinn accepts (the IPv6 maximum).
pub const MAX_QUIC_MTU: u16 = 65_527;

/// How large the QUIC packets sent to a node may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtuSetting {
    /// [`JUMBO_MTU`] towards loopback addresses, [`ETHERNET_MTU`] towards anything else.
    #[default]
    Auto,
    /// This UDP payload size towards every node (clamped to 1200..=65527).
    Fixed(u16),
}

impl MtuSetting {
    /// The UDP payload size to start with towards `addr`.
    pub fn for_addr(self, addr: &SocketAddr) -> u16 {
        match self {
            MtuSetting::Auto if addr.ip().is_loopback() => JUMBO_MTU,
            MtuSetting::Auto => ETHERNET_MTU,
            MtuSetting::Fixed(mtu) => mtu.clamp(MIN_QUIC_MTU, MAX_QUIC_MTU),
        }
    }
}

impl From<u16> for MtuSetting {
    fn from(mtu: u16) -> Self {
        MtuSetting::Fixed(mtu)
    }
}

/// `auto`, or a number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MTU {0:?}: expected \"auto\" or a UDP payload size of 1200..=65527 bytes")]
pub struct ParseMtuError(String);

impl FromStr for MtuSetting {
    type Err = ParseMtuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(MtuSetting::Auto);
        }
        match s.parse::<u16>() {
            Ok(mtu) if (MIN_QUIC_MTU..=MAX_QUIC_MTU).contains(&mtu) => Ok(MtuSetting::Fixed(mtu)),
            _ => Err(ParseMtuError(s.to_owned())),
        }
    }
}

impl fmt::Display for MtuSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MtuSetting::Auto => f.write_str("auto"),
            MtuSetting::Fixed(mtu) => write!(f, "{mtu}"),
        }
    }
}

impl Serialize for MtuSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MtuSetting::Auto => s.serialize_str("auto"),
            MtuSetting::Fixed(mtu) => s.serialize_u16(*mtu),
        }
    }
}

impl<'de> Deserialize<'de> for MtuSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Default of [`ClusterConfig::orphan_grace`].
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Default of [`ClusterConfig::node_max_parts`].
pub const DEFAULT_NODE_MAX_PARTS: u32 = 64;

/// Configuration of [`super::Cluster`].
#[derive(Clone)]
pub struct ClusterConfig {
    /// How often nodes are asked to heartbeat.
    pub heartbeat_interval: Duration,
    /// A node silent for this long is marked down (three missed heartbeats by default).
    pub down_after: Duration,
    /// Age at which an unfinished upload session is aborted and its chunks deleted.
    pub session_ttl: Duration,
    /// Cadence of the cleanup task (session expiry and the delete queue).
    pub cleanup_interval: Duration,
    /// QUIC packet size towards nodes.
    pub mtu: MtuSetting,
    /// Bound on connecting to a node, on each request/response header exchange, and on each
    /// wait for the next piece of a part being read: a node that stops answering mid-download
    /// cuts the body after this long.
    pub request_timeout: Duration,
    /// QUIC receive window of one stream from a node: the read-ahead of one part download.
    pub stream_window: u32,
    /// How often every Up node's chunks are listed and checked for orphans.
    pub orphan_scan_interval: Duration,
    /// Delay between a node (re)registering and its first orphan scan.
    pub orphan_scan_delay: Duration,
    /// How long an orphan stays quarantined (and still an orphan in every scan) before it may
    /// be deleted.
    pub orphan_grace: Duration,
    /// Longest a node's heartbeat figures (used space, chunk count) stay only in memory.
    pub persist_interval: Duration,
    /// Parts in flight to one node at most; a node at the limit takes no new part.
    pub node_max_parts: u32,
    /// The gateway's clock: heartbeat deadlines, session expiry, orphan grace.
    pub clock: crate::clock::SharedClock,
    /// This gateway's id (`crate::gateway_id`): the owner of its sessions and leases.
    pub gateway_id: uuid::Uuid,
    /// What the other gateways call this one (its public address).
    pub gateway_name: String,
    /// With several gateways over one shared store: one silent this long is dead, its
    /// sessions are aborted and its job leases run out.
    pub gateway_timeout: Duration,
}

/// Default of [`ClusterConfig::gateway_timeout`].
pub const DEFAULT_GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            down_after: Duration::from_secs(6),
            session_ttl: Duration::from_secs(3600),
            cleanup_interval: Duration::from_secs(5),
            mtu: MtuSetting::Auto,
            request_timeout: Duration::from_secs(10),
            stream_window: super::quic_config::STREAM_RECEIVE_WINDOW,
            orphan_scan_interval: Duration::from_secs(600),
            orphan_scan_delay: Duration::from_secs(30),
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            persist_interval: Duration::from_secs(30),
            node_max_parts: DEFAULT_NODE_MAX_PARTS,
            clock: crate::clock::system(),
            gateway_id: uuid::Uuid::new_v4(),
            gateway_name: String::new(),
            gateway_timeout: DEFAULT_GATEWAY_TIMEOUT,
        }
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("down_after", &self.down_after)
            .field("session_ttl", &self.session_ttl)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("mtu", &self.mtu)
            .field("request_timeout", &self.request_timeout)
            .field("stream_window", &self.stream_window)
            .field("orphan_scan_interval", &self.orphan_scan_interval)
            .field("orphan_scan_delay", &self.orphan_scan_delay)
            .field("orphan_grace", &self.orphan_grace)
            .field("persist_interval", &self.persist_interval)
            .field("node_max_parts", &self.node_max_parts)
            .finish()
    }
}

impl ClusterConfig {
    /// Rejects settings the cluster cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("down_after", self.down_after),
            ("session_ttl", self.session_ttl),
            ("cleanup_interval", self.cleanup_interval),
            ("request_timeout", self.request_timeout),
            ("orphan_scan_interval", self.orphan_scan_interval),
            ("persist_interval", self.persist_interval),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        if self.stream_window < 64 * 1024 {
            return Err(format!(
                "stream_window ({} bytes) is below the 64 KiB minimum",
                self.stream_window
            ));
        }
        if self.node_max_parts == 0 {
            return Err("node_max_parts must be at least 1".into());
        }
        if self.down_after < self.heartbeat_interval {
            return Err(format!(
                "down_after ({:?}) is shorter than heartbeat_interval ({:?}): every node would flap",
                self.down_after, self.heartbeat_interval
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mtu_is_jumbo_on_loopback_only() {
        let lo4: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:7000".parse().unwrap();
        let lan: SocketAddr = "10.0.0.5:7000".parse().unwrap();
        assert_eq!(MtuSetting::Auto.for_addr(&lo4), JUMBO_MTU);
        assert_eq!(MtuSetting::Auto.for_addr(&lo6), JUMBO_MTU);
        assert_eq!(MtuSetting::Auto.for_addr(&lan), ETHERNET_MTU);
        assert_eq!(MtuSetting::Fixed(9000).for_addr(&lo4), 9000);
        assert_eq!(MtuSetting::Fixed(100).for_addr(&lan), MIN_QUIC_MTU);
    }

    #[test]
    fn mtu_parses_from_text_and_config_values() {
        assert_eq!("auto".parse::<MtuSetting>(), Ok(MtuSetting::Auto));
        assert_eq!(" 9000 ".parse::<MtuSetting>(), Ok(MtuSetting::Fixed(9000)));
        assert!("1199".parse::<MtuSetting>().is_err());
        assert!("65528".parse::<MtuSetting>().is_err());
        assert!("jumbo".parse::<MtuSetting>().is_err());
        let n: MtuSetting = serde_json::from_str("1452").unwrap();
        assert_eq!(n, MtuSetting::Fixed(1452));
        let a: MtuSetting = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(a, MtuSetting::Auto);
        assert!(serde_json::from_str::<MtuSetting>("70000").is_err());
        assert_eq!(
            serde_json::to_string(&MtuSetting::Fixed(9000)).unwrap(),
            "9000"
        );
        assert_eq!(MtuSetting::Auto.to_string(), "auto");
    }

    #[test]
    fn validation_catches_unusable_settings() {
        let mut cfg = ClusterConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        cfg.down_after = Duration::from_secs(1);
        assert!(cfg.validate().is_err());
        cfg.down_after = Duration::from_secs(6);
        assert_eq!(cfg.validate(), Ok(()));
    }
}
