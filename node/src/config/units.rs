//! Values written the way operators write them: sizes (`10GiB`), durations (`10s`), the QUIC
//! packet size (`auto` or bytes) and the advertised address (`IP` or `IP:PORT`). The syntax
//! matches the gateway's configuration so one cluster uses one vocabulary.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Smallest UDP payload QUIC allows (RFC 9000 §14).
pub const MIN_MTU: u16 = 1200;
/// Largest UDP payload over IPv4.
pub const MAX_MTU: u16 = 65527;

/// Parses `123`, `123B`, `64KiB`, `1.5GiB`, `100MB`, `10 GiB`. Units are case-insensitive;
/// `K`/`M`/`G`/`T` alone mean the binary units, `KB`/`MB`/... the decimal ones.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size (expected e.g. 1048576, 64KiB or 10GiB)"
        ));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let too_big = || format!("size {text:?} does not fit in 64 bits");
    match number.split_once('.') {
        Some((whole, frac)) => {
            // Exact decimal arithmetic in u128: `1.1GiB` must not depend on float rounding.
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| too_big())?
            };
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{text:?} is not a size"));
            }
            let scale = 10u128.pow(frac.len() as u32);
            let frac: u128 = frac.parse().map_err(|_| too_big())?;
            let value = (whole * scale + frac) * u128::from(multiplier) / scale;
            u64::try_from(value).map_err(|_| too_big())
        }
        None => {
            let value: u64 = number.parse().map_err(|_| too_big())?;
            value.checked_mul(multiplier).ok_or_else(too_big)
        }
    }
}

/// A byte count in the config file: an integer or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes: an integer or a string such as \"10GiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration in the config file: a string such as `"10s"` or whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: a string such as \"10s\", or whole seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v)
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("{v:?} is not a duration: {e}")))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

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
    fn plain_and_unit_sizes() {
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_byte_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_byte_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_byte_size("10 gib"), Ok(10 << 30));
        assert_eq!(parse_byte_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_byte_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_byte_size("2T"), Ok(2 << 40));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            "",
            "GiB",
            "12XB",
            "-1",
            "1.",
            "1.2.3GiB",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(parse_byte_size(bad).is_err(), "{bad:?} accepted");
        }
    }

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
