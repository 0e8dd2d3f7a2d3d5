//! The `Range` request header (RFC 9110 §14): which bytes of a file of known size to send.
//!
//! One range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) is served as `206`. Several ranges are
//! answered with the whole file (`200`): the RFC lets a server ignore `Range`, and multipart
//! byteranges responses are not worth their complexity here. A header in another unit is
//! ignored too. A malformed `bytes=` header or one that no byte of the file satisfies is `416`.

/// What to send for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// The whole file, `200`.
    Full,
    /// Bytes `start..=end` (inclusive, `end < size`), `206`.
    Partial { start: u64, end: u64 },
    /// `416` with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Decides what to send for a `Range` header value against a file of `size` bytes.
pub fn decide(header: Option<&[u8]>, size: u64) -> RangeDecision {
    let Some(raw) = header else {
        return RangeDecision::Full;
    };
    let Ok(text) = std::str::from_utf8(raw) else {
        return RangeDecision::Unsatisfiable;
    };
    let text = text.trim();
    let Some((unit, set)) = text.split_once('=') else {
        return RangeDecision::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = specs.next() else {
        return RangeDecision::Unsatisfiable;
    };
    if specs.next().is_some() {
        return RangeDecision::Full;
    }
    match parse_spec(first) {
        Some(spec) => resolve(spec, size),
        None => RangeDecision::Unsatisfiable,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` or `a-` (end `None`).
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Digits only: no sign, no spaces inside, no overflow.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let start = number(first)?;
    let end = if last.is_empty() {
        None
    } else {
        let end = number(last)?;
        if end < start {
            return None;
        }
        Some(end)
    };
    Some(Spec::From { start, end })
}

fn resolve(spec: Spec, size: u64) -> RangeDecision {
    match spec {
        Spec::From { start, end } => {
            if start >= size {
                return RangeDecision::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            RangeDecision::Partial { start, end }
        }
        Spec::Suffix(n) => {
            if n == 0 || size == 0 {
                return RangeDecision::Unsatisfiable;
            }
            RangeDecision::Partial {
                start: size - n.min(size),
                end: size - 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::{Full, Partial, Unsatisfiable};
    use super::*;

    fn d(header: &str, size: u64) -> RangeDecision {
        decide(Some(header.as_bytes()), size)
    }

    #[test]
    fn no_header_is_full() {
        assert_eq!(decide(None, 10), Full);
        assert_eq!(decide(None, 0), Full);
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(d("bytes=0-0", 10), Partial { start: 0, end: 0 });
        assert_eq!(d("bytes=2-5", 10), Partial { start: 2, end: 5 });
        assert_eq!(d("bytes=0-9", 10), Partial { start: 0, end: 9 });
        // An end past the file is cut at the last byte.
        assert_eq!(d("bytes=5-100", 10), Partial { start: 5, end: 9 });
        assert_eq!(d(" bytes = 3 - 4 ", 10), Partial { start: 3, end: 4 });
        assert_eq!(d("BYTES=3-4", 10), Partial { start: 3, end: 4 });
    }

    #[test]
    fn open_ranges() {
        assert_eq!(d("bytes=0-", 10), Partial { start: 0, end: 9 });
        assert_eq!(d("bytes=9-", 10), Partial { start: 9, end: 9 });
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(d("bytes=-1", 10), Partial { start: 9, end: 9 });
        assert_eq!(d("bytes=-4", 10), Partial { start: 6, end: 9 });
        // A suffix longer than the file is the whole file, still as 206.
        assert_eq!(d("bytes=-100", 10), Partial { start: 0, end: 9 });
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(d("bytes=10-", 10), Unsatisfiable);
        assert_eq!(d("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(d("bytes=-0", 10), Unsatisfiable);
        assert_eq!(d("bytes=0-", 0), Unsatisfiable);
        assert_eq!(d("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn malformed_ranges_are_416() {
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=1-x",
            "bytes=+1-2",
            "bytes=--1",
            "bytes=1",
            "bytes",
            "bytes=1-2-3",
            "bytes=0x10-",
        ] {
            assert_eq!(d(bad, 100), Unsatisfiable, "{bad:?}");
        }
        assert_eq!(decide(Some(b"bytes=\xff-1"), 100), Unsatisfiable);
    }

    #[test]
    fn overflowing_numbers_are_416_not_a_panic() {
        let huge = "99999999999999999999999";
        assert_eq!(d(&format!("bytes={huge}-"), 10), Unsatisfiable);
        assert_eq!(d(&format!("bytes=0-{huge}"), 10), Unsatisfiable);
        assert_eq!(d(&format!("bytes=-{huge}"), 10), Unsatisfiable);
        let max = u64::MAX;
        assert_eq!(
            d(&format!("bytes=0-{max}"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            d(&format!("bytes=-{max}"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            d(&format!("bytes={}-{max}", max - 1), max),
            Partial {
                start: max - 1,
                end: max - 1
            }
        );
    }

    #[test]
    fn several_ranges_or_other_units_serve_the_whole_file() {
        assert_eq!(d("bytes=0-1,5-6", 10), Full);
        assert_eq!(d("bytes=0-1, -2", 10), Full);
        assert_eq!(d("items=0-1", 10), Full);
        // Empty list elements are allowed by the grammar and ignored.
        assert_eq!(d("bytes=0-1,", 10), Partial { start: 0, end: 1 });
    }
}
