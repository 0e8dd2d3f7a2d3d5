//! Deterministic test data that can be produced at any offset, so a test can stream hundreds of
//! MiB up and verify them on the way back without keeping a copy.

use bytes::Bytes;

/// A byte stream defined by a seed: byte `i` depends only on `(seed, i)`.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    pub seed: u64,
}

pub fn pattern(seed: u64) -> Pattern {
    Pattern { seed }
}

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: fast and well spread, enough to make every part's bytes distinct.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pattern {
    /// Writes the bytes at `[offset, offset + buf.len())` into `buf`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < buf.len() {
            let word = mix(self.seed ^ (pos / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes();
            let start = (pos % 8) as usize;
            let n = (8 - start).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&word[start..start + n]);
            i += n;
            pos += n as u64;
        }
    }

    pub fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(offset, &mut v);
        v
    }

    /// The whole `[0, len)` as a stream of `piece`-sized frames, for request bodies.
    pub fn stream(
        self,
        len: u64,
        piece: usize,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures_util::stream::unfold(0u64, move |pos| async move {
            if pos >= len {
                return None;
            }
            let n = piece.min((len - pos) as usize);
            Some((Ok(Bytes::from(self.bytes(pos, n))), pos + n as u64))
        })
    }

    /// Compares `got` with the pattern at `offset`; returns the first differing absolute offset.
    pub fn first_mismatch(&self, offset: u64, got: &[u8]) -> Option<u64> {
        let mut expect = vec![0u8; got.len().min(1 << 20)];
        let mut done = 0usize;
        while done < got.len() {
            let n = expect.len().min(got.len() - done);
            self.fill(offset + done as u64, &mut expect[..n]);
            if let Some(i) = expect[..n]
                .iter()
                .zip(&got[done..done + n])
                .position(|(a, b)| a != b)
            {
                return Some(offset + (done + i) as u64);
            }
            done += n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_gives_the_same_bytes_as_the_whole() {
        let p = pattern(42);
        let whole = p.bytes(0, 1000);
        for off in [0usize, 1, 7, 8, 9, 500, 999] {
            assert_eq!(p.bytes(off as u64, 1000 - off), whole[off..]);
        }
        assert_ne!(pattern(43).bytes(0, 64), whole[..64]);
    }

    #[test]
    fn mismatch_is_located() {
        let p = pattern(1);
        let mut v = p.bytes(100, 5000);
        assert_eq!(p.first_mismatch(100, &v), None);
        v[4321] ^= 1;
        assert_eq!(p.first_mismatch(100, &v), Some(4421));
    }
}
