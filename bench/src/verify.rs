//! Byte-for-byte verification of a downloaded body against what was uploaded.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;

/// How a downloaded body differs from the expected content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("byte {offset} differs: expected {expected:#04x}, got {got:#04x}")]
    Mismatch { offset: u64, expected: u8, got: u8 },
    #[error("body ended after {got} of {expected} bytes")]
    Short { expected: u64, got: u64 },
    #[error("body is longer than the {expected} bytes expected")]
    TooLong { expected: u64 },
    #[error("reading the expected content failed: {0}")]
    Source(String),
}

impl VerifyError {
    /// The offset the error is about, if any.
    pub fn offset(&self) -> Option<u64> {
        match *self {
            VerifyError::Mismatch { offset, .. } => Some(offset),
            VerifyError::Short { got, .. } => Some(got),
            VerifyError::TooLong { expected } => Some(expected),
            VerifyError::Source(_) => None,
        }
    }

    /// A short machine-readable name for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::Mismatch { .. } => "mismatch",
            VerifyError::Short { .. } => "short_body",
            VerifyError::TooLong { .. } => "long_body",
            VerifyError::Source(_) => "source",
        }
    }
}

/// Index of the first byte where the two slices (of equal length) differ.
pub fn first_difference(expected: &[u8], got: &[u8]) -> Option<usize> {
    debug_assert_eq!(expected.len(), got.len());
    if expected == got {
        return None;
    }
    expected.iter().zip(got).position(|(a, b)| a != b)
}

/// The expected content as a stream of pieces (e.g. the source file read back in sections).
pub type ExpectedStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Checks a body, fed in pieces of any size, against an expected stream of any chunking.
pub struct StreamVerifier {
    expected: ExpectedStream,
    current: Bytes,
    len: u64,
    pos: u64,
}

impl StreamVerifier {
    pub fn new(expected: ExpectedStream, len: u64) -> Self {
        StreamVerifier {
            expected,
            current: Bytes::new(),
            len,
            pos: 0,
        }
    }

    /// Bytes received and found equal so far.
    pub fn verified(&self) -> u64 {
        self.pos
    }

    pub async fn feed(&mut self, data: &[u8]) -> Result<(), VerifyError> {
        let room = self.len - self.pos;
        let (data, too_long) = if data.len() as u64 > room {
            (&data[..room as usize], true)
        } else {
            (data, false)
        };
        let mut rest = data;
        while !rest.is_empty() {
            if self.current.is_empty() {
                self.current = match self.expected.next().await {
                    Some(Ok(piece)) => piece,
                    Some(Err(e)) => return Err(VerifyError::Source(e.to_string())),
                    None => {
                        return Err(VerifyError::Source(format!(
                            "expected content ended at byte {} of {}",
                            self.pos, self.len
                        )));
                    }
                };
                continue;
            }
            let n = self.current.len().min(rest.len());
            if let Some(i) = first_difference(&self.current[..n], &rest[..n]) {
                let offset = self.pos + i as u64;
                // The bytes before the difference did verify.
                self.pos = offset;
                return Err(VerifyError::Mismatch {
                    offset,
                    expected: self.current[i],
                    got: rest[i],
                });
            }
            let _ = self.current.split_to(n);
            self.pos += n as u64;
            rest = &rest[n..];
        }
        if too_long {
            return Err(VerifyError::TooLong { expected: self.len });
        }
        Ok(())
    }

    pub fn finish(&self) -> Result<u64, VerifyError> {
        if self.pos < self.len {
            return Err(VerifyError::Short {
                expected: self.len,
                got: self.pos,
            });
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::DataGen;
    use futures_util::stream;

    fn expected_in_pieces(data: &[u8], piece: usize) -> ExpectedStream {
        let pieces: Vec<std::io::Result<Bytes>> = data
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(stream::iter(pieces))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn first_difference_finds_the_first_differing_byte() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"abc", b"xbd"), Some(0));
        assert_eq!(first_difference(b"", b""), None);
    }

    #[test]
    fn stream_verifier_accepts_any_chunking_and_finds_flips() {
        let mut data = vec![0u8; 10_000];
        DataGen::new(3).fill(0, &mut data);
        block_on(async {
            for (expected_piece, got_piece) in [(1000, 333), (7, 4096), (10_000, 1)] {
                let mut v = StreamVerifier::new(expected_in_pieces(&data, expected_piece), 10_000);
                for c in data.chunks(got_piece) {
                    v.feed(c).await.unwrap();
                }
                assert_eq!(v.finish(), Ok(10_000));
            }
            for off in [0usize, 999, 1000, 5555, 9999] {
                let mut bad = data.clone();
                bad[off] = !bad[off];
                let mut v = StreamVerifier::new(expected_in_pieces(&data, 1000), 10_000);
                let mut result = Ok(());
                for c in bad.chunks(321) {
                    result = v.feed(c).await;
                    if result.is_err() {
                        break;
                    }
                }
                assert_eq!(
                    result,
                    Err(VerifyError::Mismatch {
                        offset: off as u64,
                        expected: data[off],
                        got: bad[off]
                    })
                );
                assert_eq!(v.verified(), off as u64);
            }
            let mut v = StreamVerifier::new(expected_in_pieces(&data, 1000), 10_000);
            v.feed(&data[..5000]).await.unwrap();
            assert_eq!(
                v.finish(),
                Err(VerifyError::Short {
                    expected: 10_000,
                    got: 5000
                })
            );
        });
    }
}
