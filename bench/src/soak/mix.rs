//! The soak's operation mix, as typed on the command line: `read=60,write=30,delete=10`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One kind of soak operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Read,
    Write,
    Delete,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Read, Op::Write, Op::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Delete => "delete",
        }
    }
}

/// Relative weights of the operations. Weights need not add up to 100: `read=3,write=1` reads
/// three times as often as it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mix {
    pub read: u32,
    pub write: u32,
    pub delete: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            read: 60,
            write: 30,
            delete: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("--mix: `{0}` is not OP=WEIGHT (example: read=60,write=30,delete=10)")]
    Malformed(String),
    #[error("--mix: unknown operation `{0}`: use read, write or delete")]
    UnknownOp(String),
    #[error("--mix: `{0}` is given twice")]
    Repeated(String),
    #[error("--mix: weight `{0}` is not a whole number up to 1000000")]
    BadWeight(String),
    #[error("--mix: the weight of write must be above zero (reads and deletes need files)")]
    NoWrites,
}

/// Weights above this make no sense and would overflow the sum.
const MAX_WEIGHT: u32 = 1_000_000;

impl Mix {
    /// Parses `OP=WEIGHT,...`; operations left out weigh 0.
    pub fn parse(text: &str) -> Result<Mix, MixError> {
        let mut mix = Mix {
            read: 0,
            write: 0,
            delete: 0,
        };
        let mut seen = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (op, weight) = item
                .split_once('=')
                .ok_or_else(|| MixError::Malformed(item.to_string()))?;
            let op = op.trim().to_ascii_lowercase();
            let weight = weight.trim();
            let w: u32 = weight
                .parse()
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| MixError::BadWeight(weight.to_string()))?;
            if seen.contains(&op) {
                return Err(MixError::Repeated(op));
            }
            let slot = match op.as_str() {
                "read" => &mut mix.read,
                "write" => &mut mix.write,
                "delete" => &mut mix.delete,
                _ => return Err(MixError::UnknownOp(op)),
            };
            *slot = w;
            seen.push(op);
        }
        if mix.write == 0 {
            return Err(MixError::NoWrites);
        }
        Ok(mix)
    }

    fn total(&self) -> u32 {
        self.read + self.write + self.delete
    }

    /// The operation for a roll in `0..total()`: reads first, then writes, then deletes.
    fn op_at(&self, roll: u32) -> Op {
        if roll < self.read {
            Op::Read
        } else if roll < self.read + self.write {
            Op::Write
        } else {
            Op::Delete
        }
    }

    /// Draws an operation with the mix's weights.
    pub fn pick(&self, rng: &mut impl rand::Rng) -> Op {
        self.op_at(rng.random_range(0..self.total()))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read={},write={},delete={}",
            self.read, self.write, self.delete
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn parses_weights_in_any_order_and_case() {
        assert_eq!(
            Mix::parse("read=60,write=30,delete=10"),
            Ok(Mix {
                read: 60,
                write: 30,
                delete: 10
            })
        );
        assert_eq!(
            Mix::parse(" Delete = 1 , WRITE=2"),
            Ok(Mix {
                read: 0,
                write: 2,
                delete: 1
            })
        );
        let m = Mix::parse("write=5").unwrap();
        assert_eq!(m.to_string(), "read=0,write=5,delete=0");
        assert_eq!(Mix::parse(&Mix::default().to_string()), Ok(Mix::default()));
    }

    #[test]
    fn refuses_bad_mixes_naming_the_flag() {
        for (text, want) in [
            ("read60", MixError::Malformed("read60".into())),
            ("read=60,list=5,write=1", MixError::UnknownOp("list".into())),
            ("read=1,read=2,write=1", MixError::Repeated("read".into())),
            ("read=-1,write=1", MixError::BadWeight("-1".into())),
            ("read=x,write=1", MixError::BadWeight("x".into())),
            (
                "read=2000000,write=1",
                MixError::BadWeight("2000000".into()),
            ),
            ("read=60,delete=10", MixError::NoWrites),
            ("read=60,write=0", MixError::NoWrites),
            ("", MixError::Malformed("".into())),
        ] {
            let err = Mix::parse(text).unwrap_err();
            assert_eq!(err, want, "{text}");
            assert!(err.to_string().starts_with("--mix"), "{err}");
        }
    }

    #[test]
    fn rolls_map_to_operations_by_weight() {
        let m = Mix {
            read: 2,
            write: 1,
            delete: 1,
        };
        let ops: Vec<Op> = (0..4).map(|r| m.op_at(r)).collect();
        assert_eq!(ops, [Op::Read, Op::Read, Op::Write, Op::Delete]);
        let no_reads = Mix {
            read: 0,
            write: 1,
            delete: 0,
        };
        assert_eq!(no_reads.op_at(0), Op::Write);
    }

    #[test]
    fn picks_follow_the_weights() {
        let m = Mix::default();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[m.pick(&mut rng) as usize] += 1;
        }
        // 6000 / 3000 / 1000 expected; a seeded generator makes this exact run to run.
        assert!((5700..6300).contains(&counts[0]), "{counts:?}");
        assert!((2700..3300).contains(&counts[1]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
    }
}
