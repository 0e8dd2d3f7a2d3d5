//! The soak's file-size distribution, as typed on the command line:
//!
//! - `4MiB`: every file has that size;
//! - `1MiB..64MiB`: uniform over the bytes from 1 MiB to 64 MiB, both included;
//! - `1MiB:5,64MiB:1`: a weighted list (here five small files for each big one).
//!
//! Sizes are written as for `--size` (`123`, `64KiB`, `1GB`, ...).

use crate::size::{HumanBytes, parse_size};
use rand::Rng;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeDist {
    Fixed(u64),
    /// Uniform over `min..=max`.
    Uniform {
        min: u64,
        max: u64,
    },
    /// Sizes with relative weights (each above zero).
    Weighted(Vec<(u64, u32)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizesError {
    #[error("--sizes: `{text}`: {reason}")]
    BadSize { text: String, reason: String },
    #[error("--sizes: a file size must be at least 1 byte (`{0}`)")]
    Zero(String),
    #[error("--sizes: in `{0}` the lower bound is above the upper one")]
    Reversed(String),
    #[error("--sizes: `{0}` is not SIZE:WEIGHT with a whole weight from 1 to 1000000")]
    BadWeight(String),
    #[error(
        "--sizes: `{0}` is none of SIZE, MIN..MAX or SIZE:WEIGHT,SIZE:WEIGHT,... \
         (examples: 4MiB, 1MiB..64MiB, 1MiB:5,64MiB:1)"
    )]
    Malformed(String),
}

const MAX_WEIGHT: u32 = 1_000_000;

fn size(text: &str) -> Result<u64, SizesError> {
    let n = parse_size(text).map_err(|e| SizesError::BadSize {
        text: text.trim().to_string(),
        reason: e.to_string(),
    })?;
    if n == 0 {
        return Err(SizesError::Zero(text.trim().to_string()));
    }
    Ok(n)
}

impl SizeDist {
    pub fn parse(text: &str) -> Result<SizeDist, SizesError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SizesError::Malformed(String::new()));
        }
        if let Some((lo, hi)) = text.split_once("..") {
            let (min, max) = (size(lo)?, size(hi)?);
            if min > max {
                return Err(SizesError::Reversed(text.to_string()));
            }
            return Ok(SizeDist::Uniform { min, max });
        }
        if !text.contains(':') {
            if text.contains(',') {
                return Err(SizesError::Malformed(text.to_string()));
            }
            return Ok(SizeDist::Fixed(size(text)?));
        }
        let mut list = Vec::new();
        for item in text.split(',') {
            let (s, w) = item
                .split_once(':')
                .ok_or_else(|| SizesError::BadWeight(item.trim().to_string()))?;
            let w: u32 = w
                .trim()
                .parse()
                .ok()
                .filter(|w| (1..=MAX_WEIGHT).contains(w))
                .ok_or_else(|| SizesError::BadWeight(item.trim().to_string()))?;
            list.push((size(s)?, w));
        }
        Ok(SizeDist::Weighted(list))
    }

    /// Draws a file size.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { min, max } => rng.random_range(*min..=*max),
            SizeDist::Weighted(list) => {
                let total: u64 = list.iter().map(|(_, w)| u64::from(*w)).sum();
                let mut roll = rng.random_range(0..total);
                for (size, w) in list {
                    let w = u64::from(*w);
                    if roll < w {
                        return *size;
                    }
                    roll -= w;
                }
                // The rolls cover exactly the weights' sum; this is the last entry's share.
                list.last().map(|(s, _)| *s).unwrap_or(1)
            }
        }
    }

    /// The largest size the distribution can draw.
    pub fn max(&self) -> u64 {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { max, .. } => *max,
            SizeDist::Weighted(list) => list.iter().map(|(s, _)| *s).max().unwrap_or(0),
        }
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(n) => write!(f, "{n}"),
            SizeDist::Uniform { min, max } => write!(f, "{min}..{max}"),
            SizeDist::Weighted(list) => {
                for (i, (s, w)) in list.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{s}:{w}")?;
                }
                Ok(())
            }
        }
    }
}

/// For the human summary: `1.00 MiB..64.00 MiB`.
pub struct HumanDist<'a>(pub &'a SizeDist);

impl fmt::Display for HumanDist<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SizeDist::Fixed(n) => write!(f, "{}", HumanBytes(*n)),
            SizeDist::Uniform { min, max } => {
                write!(f, "{}..{}", HumanBytes(*min), HumanBytes(*max))
            }
            SizeDist::Weighted(list) => {
                for (i, (s, w)) in list.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{} x{w}", HumanBytes(*s))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    const MIB: u64 = 1 << 20;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(SizeDist::parse("4MiB"), Ok(SizeDist::Fixed(4 * MIB)));
        assert_eq!(
            SizeDist::parse("1MiB..64MiB"),
            Ok(SizeDist::Uniform {
                min: MIB,
                max: 64 * MIB
            })
        );
        assert_eq!(
            SizeDist::parse(" 1MiB:5, 64MiB:1 "),
            Ok(SizeDist::Weighted(vec![(MIB, 5), (64 * MIB, 1)]))
        );
        assert_eq!(
            SizeDist::parse("100..100"),
            Ok(SizeDist::Uniform { min: 100, max: 100 })
        );
        // What Display writes parses back to the same distribution (it goes in the report).
        for text in ["4MiB", "1KiB..2MiB", "1MiB:5,64MiB:1"] {
            let d = SizeDist::parse(text).unwrap();
            assert_eq!(SizeDist::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn refuses_bad_distributions_naming_the_flag() {
        type Is = fn(&SizesError) -> bool;
        let cases: [(&str, Is); 9] = [
            ("", |e| matches!(e, SizesError::Malformed(_))),
            ("1MiB,2MiB", |e| matches!(e, SizesError::Malformed(_))),
            ("64MiB..1MiB", |e| matches!(e, SizesError::Reversed(_))),
            ("0..1MiB", |e| matches!(e, SizesError::Zero(_))),
            ("1XB..2MiB", |e| matches!(e, SizesError::BadSize { .. })),
            ("1MiB:0", |e| matches!(e, SizesError::BadWeight(_))),
            ("1MiB:x,2MiB:1", |e| matches!(e, SizesError::BadWeight(_))),
            ("1MiB:1,2MiB", |e| matches!(e, SizesError::BadWeight(_))),
            ("1MiB:1,2QB:1", |e| matches!(e, SizesError::BadSize { .. })),
        ];
        for (text, ok) in cases {
            let err = SizeDist::parse(text).unwrap_err();
            assert!(ok(&err), "{text}: {err:?}");
            assert!(err.to_string().starts_with("--sizes"), "{err}");
        }
        let msg = SizeDist::parse("1XB..2MiB").unwrap_err().to_string();
        assert!(msg.contains("1XB") && msg.contains("unknown unit"), "{msg}");
    }

    #[test]
    fn samples_stay_in_range_and_follow_weights() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let u = SizeDist::parse("10..20").unwrap();
        let mut seen = [false; 11];
        for _ in 0..2000 {
            let s = u.sample(&mut rng);
            assert!((10..=20).contains(&s), "{s}");
            seen[(s - 10) as usize] = true;
        }
        assert!(seen.iter().all(|x| *x), "both ends are drawn too: {seen:?}");
        assert_eq!(u.max(), 20);

        let w = SizeDist::parse("1:3,2:1").unwrap();
        let ones = (0..4000).filter(|_| w.sample(&mut rng) == 1).count();
        assert!((2800..3200).contains(&ones), "{ones}");
        assert_eq!(w.max(), 2);
        assert_eq!(SizeDist::Fixed(7).sample(&mut rng), 7);
    }

    #[test]
    fn human_form() {
        let d = SizeDist::parse("1MiB:5,64MiB:1").unwrap();
        assert_eq!(HumanDist(&d).to_string(), "1.00 MiB x5, 64.00 MiB x1");
    }
}
