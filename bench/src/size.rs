//! Byte sizes as people type them (`10GiB`, `512MiB`, `1GB`, `123`) and as the report prints them.

use std::fmt;

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size: give a number of bytes, optionally with a unit such as 512MiB or 10GiB")]
    Empty,
    #[error("`{0}` does not start with a number (examples: 123, 512MiB, 10GiB, 1GB)")]
    NoNumber(String),
    #[error(
        "unknown unit `{unit}` in `{input}`: use B, KiB, MiB, GiB, TiB (powers of 1024), \
         KB, MB, GB, TB (powers of 1000) or K, M, G, T (same as KiB..TiB)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("`{0}` is too large (more than 2^64 - 1 bytes)")]
    Overflow(String),
    #[error("`{0}` is not a whole number of bytes")]
    Fractional(String),
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

fn unit_multiplier(unit: &str) -> Option<u64> {
    // Units are matched without regard to case except that a lone `b` stays bytes: `mb` is
    // megabytes (nobody means megabits for a file size), `mib` mebibytes.
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "t" | "tib" => TIB,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    Some(m)
}

/// Parses a size: an integer or decimal number followed by an optional unit, with optional
/// spaces between them. `1.5GiB` is accepted when it is a whole number of bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(num_end);
    let number: String = number.chars().filter(|&c| c != '_').collect();
    let unit = unit.trim();
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number.as_str(), ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(SizeError::NoNumber(input.to_string()));
    }
    let mult = unit_multiplier(unit).ok_or_else(|| SizeError::UnknownUnit {
        input: input.to_string(),
        unit: unit.to_string(),
    })?;
    let overflow = || SizeError::Overflow(input.to_string());
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| overflow())?
    };
    let mut total = int_value.checked_mul(mult as u128).ok_or_else(overflow)?;
    let frac_digits = frac_part.trim_end_matches('0');
    if !frac_digits.is_empty() {
        if frac_digits.len() > 18 {
            return Err(SizeError::Fractional(input.to_string()));
        }
        let frac: u128 = frac_digits.parse().map_err(|_| overflow())?;
        let scale = 10u128.pow(frac_digits.len() as u32);
        let scaled = frac * mult as u128;
        if !scaled.is_multiple_of(scale) {
            return Err(SizeError::Fractional(input.to_string()));
        }
        total += scaled / scale;
    }
    u64::try_from(total).map_err(|_| overflow())
}

/// A byte count printed with a binary unit, e.g. `10.00 GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanBytes(pub u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let (div, unit) = match b {
            _ if b >= TIB => (TIB, "TiB"),
            _ if b >= GIB => (GIB, "GiB"),
            _ if b >= MIB => (MIB, "MiB"),
            _ if b >= KIB => (KIB, "KiB"),
            _ => return write!(f, "{b} B"),
        };
        write!(f, "{:.2} {unit}", b as f64 / div as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("123B"), Ok(123));
        assert_eq!(parse_size("10GiB"), Ok(10 * GIB));
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2TiB"), Ok(2 * TIB));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1kb"), Ok(1000));
        assert_eq!(parse_size("10G"), Ok(10 * GIB));
        assert_eq!(parse_size("64m"), Ok(64 * MIB));
        assert_eq!(parse_size(" 10 GiB "), Ok(10 * GIB));
        assert_eq!(parse_size("10gib"), Ok(10 * GIB));
        assert_eq!(parse_size("1_000"), Ok(1000));
    }

    #[test]
    fn parses_exact_fractions() {
        assert_eq!(parse_size("1.5GiB"), Ok(3 * GIB / 2));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
        assert_eq!(parse_size(".5MiB"), Ok(MIB / 2));
        assert_eq!(parse_size("2.0"), Ok(2));
        assert_eq!(
            parse_size("1.5"),
            Err(SizeError::Fractional("1.5".to_string()))
        );
        assert_eq!(
            parse_size("0.1KiB"),
            Err(SizeError::Fractional("0.1KiB".to_string()))
        );
    }

    #[test]
    fn refuses_bad_input_with_a_clear_error() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("   "), Err(SizeError::Empty));
        assert_eq!(
            parse_size("GiB"),
            Err(SizeError::NoNumber("GiB".to_string()))
        );
        assert_eq!(parse_size("."), Err(SizeError::NoNumber(".".to_string())));
        assert_eq!(
            parse_size("1.2.3"),
            Err(SizeError::NoNumber("1.2.3".to_string()))
        );
        assert_eq!(
            parse_size("10GiBs"),
            Err(SizeError::UnknownUnit {
                input: "10GiBs".to_string(),
                unit: "GiBs".to_string()
            })
        );
        assert_eq!(
            parse_size("-5MiB"),
            Err(SizeError::NoNumber("-5MiB".to_string()))
        );
        assert!(matches!(
            parse_size("10 PiB"),
            Err(SizeError::UnknownUnit { .. })
        ));
        let msg = parse_size("12XB").unwrap_err().to_string();
        assert!(msg.contains("XB") && msg.contains("GiB"), "{msg}");
    }

    #[test]
    fn refuses_overflow() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_size("18446744073709551616"),
            Err(SizeError::Overflow("18446744073709551616".to_string()))
        );
        assert_eq!(
            parse_size("20000000TiB"),
            Err(SizeError::Overflow("20000000TiB".to_string()))
        );
        assert!(matches!(
            parse_size("99999999999999999999999999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn prints_binary_units() {
        assert_eq!(HumanBytes(0).to_string(), "0 B");
        assert_eq!(HumanBytes(1023).to_string(), "1023 B");
        assert_eq!(HumanBytes(1536).to_string(), "1.50 KiB");
        assert_eq!(HumanBytes(10 * GIB).to_string(), "10.00 GiB");
    }
}
