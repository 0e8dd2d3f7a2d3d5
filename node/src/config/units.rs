//! Values written the way operators write them: sizes (`10GiB`), durations (`10s`), the QUIC
//! packet size (`auto` or bytes) and the advertised address (`IP` or `IP:PORT`). The syntax
//! matches the gateway's configuration so one cluster uses one vocabulary.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use sixfold_units::{ByteSize, HumanDuration, parse_byte_size};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Smallest UDP payload QUIC allows (RFC 9000 §14).
pub const MIN_MTU: u16 = 1200;
/// Largest UDP payload over IPv4.
pub const MAX_MTU: u16 = 65527;

/// UDP payload size of the QUIC packets the node sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mtu {
    /// Jumbo packets on loopback, Ethernet-sized (1452) elsewhere.
    #[default]
    Auto,
    Fixed(u16),
}

impl Mtu {
    /// Payload size to use on a socket bound to `ip`.
    pub fn for_ip(self, ip: IpAddr) -> u16 {
        match self {
            Mtu::Fixed(mtu) => mtu,
            Mtu::Auto if ip.is_loopback() => 65_000,
            Mtu::Auto => 1452,
        }
    }
}

/// `auto` or a UDP payload size in bytes.
pub fn parse_mtu(text: &str) -> Result<Mtu, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Mtu::Auto);
    }
    match text.parse::<u16>() {
        Ok(mtu) if (MIN_MTU..=MAX_MTU).contains(&mtu) => Ok(Mtu::Fixed(mtu)),
        _ => Err(format!(
            "{text:?} is not an MTU: expected \"auto\" or {MIN_MTU}..={MAX_MTU}"
        )),
    }
}

impl<'de> Deserialize<'de> for Mtu {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MtuVisitor;
        impl Visitor<'_> for MtuVisitor {
            type Value = Mtu;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "\"auto\" or a number of bytes {MIN_MTU}..={MAX_MTU}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Mtu, E> {
                parse_mtu(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Mtu, E> {
                parse_mtu(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mtu, E> {
                parse_mtu(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(MtuVisitor)
    }
}

/// The address the gateway should dial: an IP (each shard's real port is used) or an
/// `IP:PORT` (shard `s` is advertised at `PORT + s`, for port forwarding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    Ip(IpAddr),
    Addr(SocketAddr),
}

impl Advertise {
    pub fn ip(self) -> IpAddr {
        match self {
            Advertise::Ip(ip) => ip,
            Advertise::Addr(addr) => addr.ip(),
        }
    }
}

pub fn parse_advertise(text: &str) -> Result<Advertise, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Advertise::Ip(ip));
    }
    text.parse::<SocketAddr>()
        .map(Advertise::Addr)
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

impl<'de> Deserialize<'de> for Advertise {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_advertise(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_is_auto_or_in_range() {
        assert_eq!(parse_mtu("auto"), Ok(Mtu::Auto));
        assert_eq!(parse_mtu("1500"), Ok(Mtu::Fixed(1500)));
        for bad in ["1199", "65528", "big", ""] {
            assert!(parse_mtu(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Mtu::Auto.for_ip([127, 0, 0, 1].into()), 65_000);
        assert_eq!(Mtu::Auto.for_ip([10, 0, 0, 1].into()), 1452);
        assert_eq!(Mtu::Fixed(1300).for_ip([127, 0, 0, 1].into()), 1300);
    }

    #[test]
    fn advertise_is_an_ip_or_a_socket_address() {
        assert_eq!(
            parse_advertise("10.0.0.7"),
            Ok(Advertise::Ip([10, 0, 0, 7].into()))
        );
        assert_eq!(
            parse_advertise("10.0.0.7:7000"),
            Ok(Advertise::Addr("10.0.0.7:7000".parse().unwrap()))
        );
        assert_eq!(
            parse_advertise("::1"),
            Ok(Advertise::Ip("::1".parse().unwrap()))
        );
        assert!(parse_advertise("node7.local").is_err());
    }
}
