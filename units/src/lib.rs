//! Configuration values written the way operators write them, shared by the gateway and the
//! node so one cluster uses one vocabulary: sizes (`10GiB`, `100MB`, `1048576`) and durations
//! (`"10s"`, `"1h 30m"`, or whole seconds).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

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

    #[derive(Debug, Deserialize)]
    struct Values {
        size: ByteSize,
        wait: HumanDuration,
    }

    #[test]
    fn config_values_deserialize_from_numbers_and_strings() {
        let v: Values = toml::from_str("size = \"1.5KiB\"\nwait = \"1m 30s\"").expect("valid");
        assert_eq!(
            (v.size, v.wait),
            (ByteSize(1536), HumanDuration(Duration::from_secs(90)))
        );
        let v: Values = toml::from_str("size = 4096\nwait = 7").expect("valid");
        assert_eq!(
            (v.size, v.wait),
            (ByteSize(4096), HumanDuration(Duration::from_secs(7)))
        );
        assert!(toml::from_str::<Values>("size = -1\nwait = 1").is_err());
        assert!(toml::from_str::<Values>("size = 1\nwait = \"soon\"").is_err());
    }
}
