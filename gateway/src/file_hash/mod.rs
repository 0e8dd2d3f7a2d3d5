//! The whole-file checksum's hasher: xxh3-128 with the default secret and seed 0, the value
//! stored as a file's `checksum` since the first release.
//!
//! Every uploaded byte passes through it, so the long-input loop is our own (`kernels`): AVX-512,
//! AVX2 or portable code, chosen at run time from the CPU's features, so the shipped build stays
//! baseline x86-64. It keeps the eight accumulators in registers across stripes and blocks,
//! where twox-hash (used before) loads and stores them for every 64-byte stripe and stops at
//! AVX2; the criterion bench `hot_paths` compares the two. Files of at most 240 bytes take
//! xxh3's short-input paths, left to xxhash-rust. The streaming rules (what is buffered, which
//! bytes form the last stripe) are xxh3's, so the value is the same function whatever the
//! pieces: the tests compare against xxhash-rust's one-shot hash, and the checksums of files
//! stored by earlier releases stay valid.

mod kernels;

use kernels::{BLOCK_KEYS, BLOCK_STRIPES, DEFAULT_SECRET, Kernel, Stripe, word};

const STRIPE_BYTES: usize = 64;
/// Input held back between updates: xxh3's streaming buffer, four stripes.
const BUFFER_BYTES: usize = 4 * STRIPE_BYTES;
/// Longest input hashed by xxh3's short-input paths instead of the stripe loop.
const SHORT_INPUT: u64 = 240;
const _: () = assert!(BUFFER_BYTES as u64 > SHORT_INPUT);

const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_MX1: u64 = 0x1656_6791_9E37_79F9;

#[rustfmt::skip]
const INITIAL_ACCUMULATORS: [u64; 8] = [
    0xC2B2_AE3D, PRIME64_1, PRIME64_2, 0x1656_67B1_9E37_79F9,
    0x85EB_CA77_C2B2_AE63, 0x85EB_CA77, 0x27D4_EB2F_1656_67C5, 0x9E37_79B1,
];

/// Streaming xxh3-128 of a file's bytes, in any pieces.
#[derive(Clone)]
pub struct Xxh3 {
    lanes: Lanes,
    /// Bytes not yet accumulated; never empty once anything was added, so that the last
    /// stripe is still at hand when the digest is taken.
    buffer: [u8; BUFFER_BYTES],
    buffered: usize,
    total: u64,
}

/// The accumulators and where the current block stands.
#[derive(Clone)]
struct Lanes {
    kernel: Kernel,
    acc: [u64; 8],
    /// Stripes of the current block already accumulated.
    block_stripes: usize,
}

impl Lanes {
    fn consume(&mut self, mut stripes: &[Stripe]) {
        while !stripes.is_empty() {
            if self.block_stripes == 0 {
                let (blocks, rest) = stripes.as_chunks::<BLOCK_STRIPES>();
                if !blocks.is_empty() {
                    self.kernel.blocks(&mut self.acc, blocks, secret_end());
                    stripes = rest;
                    continue;
                }
            }
            let now = stripes.len().min(BLOCK_STRIPES - self.block_stripes);
            let (these, rest) = stripes.split_at(now);
            self.kernel
                .accumulate(&mut self.acc, these, &BLOCK_KEYS.0[self.block_stripes..]);
            self.block_stripes += now;
            if self.block_stripes == BLOCK_STRIPES {
                self.kernel.scramble(&mut self.acc, secret_end());
                self.block_stripes = 0;
            }
            stripes = rest;
        }
    }
}

fn secret_end() -> &'static [u8; 64] {
    let (_, end) = DEFAULT_SECRET
        .split_last_chunk::<64>()
        .unwrap_or_else(|| unreachable!());
    end
}

fn secret_window(offset: usize) -> &'static [u8; 64] {
    DEFAULT_SECRET[offset..]
        .first_chunk::<64>()
        .unwrap_or_else(|| unreachable!("64 secret bytes from {offset}"))
}

fn stripes(bytes: &[u8]) -> &[Stripe] {
    bytes.as_chunks::<STRIPE_BYTES>().0
}

impl Default for Xxh3 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Xxh3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xxh3")
            .field("kernel", &self.lanes.kernel)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Xxh3 {
    pub fn new() -> Self {
        Self::with_kernel(Kernel::detect())
    }

    fn with_kernel(kernel: Kernel) -> Self {
        Self {
            lanes: Lanes {
                kernel,
                acc: INITIAL_ACCUMULATORS,
                block_stripes: 0,
            },
            buffer: [0; BUFFER_BYTES],
            buffered: 0,
            total: 0,
        }
    }

    /// Adds the next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.total += bytes.len() as u64;

        let n = bytes.len().min(BUFFER_BYTES - self.buffered);
        let (head, rest) = bytes.split_at(n);
        self.buffer[self.buffered..self.buffered + n].copy_from_slice(head);
        self.buffered += n;
        bytes = rest;
        // A full buffer waits for more: its last stripe may be the input's last.
        if self.buffered < BUFFER_BYTES || bytes.is_empty() {
            return;
        }
        self.lanes.consume(stripes(&self.buffer));
        self.buffered = 0;

        // Straight from the input, holding back between one and two stripes.
        if let Some(len) = bytes.len().checked_sub(STRIPE_BYTES) {
            let whole = len / STRIPE_BYTES * STRIPE_BYTES;
            let (now, rest) = bytes.split_at(whole);
            self.lanes.consume(stripes(now));
            bytes = rest;
        }
        self.buffer[..bytes.len()].copy_from_slice(bytes);
        self.buffered = bytes.len();
    }

    /// The hash of every byte added so far (the hasher can go on).
    pub fn digest128(&self) -> u128 {
        if self.total <= SHORT_INPUT {
            return xxhash_rust::xxh3::xxh3_128(&self.buffer[..self.buffered]);
        }
        let mut lanes = self.lanes.clone();
        let pending = &self.buffer[..self.buffered];
        // Every pending stripe but the last, which is accumulated against its own secret.
        let before_last = (pending.len() - 1) / STRIPE_BYTES;
        lanes.consume(&stripes(pending)[..before_last]);
        let last: [u8; STRIPE_BYTES] = match pending.last_chunk::<STRIPE_BYTES>() {
            Some(last) => *last,
            None => {
                // Fewer than 64 bytes pending: the last stripe begins in the bytes already
                // accumulated, which are still at the end of the buffer.
                let mut last = [0; STRIPE_BYTES];
                let reused = STRIPE_BYTES - pending.len();
                last[..reused].copy_from_slice(&self.buffer[BUFFER_BYTES - reused..]);
                last[reused..].copy_from_slice(pending);
                last
            }
        };
        let last_key = secret_window(DEFAULT_SECRET.len() - STRIPE_BYTES - 7);
        lanes
            .kernel
            .accumulate(&mut lanes.acc, &[last], &[*last_key]);

        let low = merge(
            &lanes.acc,
            secret_window(11),
            self.total.wrapping_mul(PRIME64_1),
        );
        let high = merge(
            &lanes.acc,
            secret_window(DEFAULT_SECRET.len() - STRIPE_BYTES - 11),
            !self.total.wrapping_mul(PRIME64_2),
        );
        (u128::from(high) << 64) | u128::from(low)
    }
}

/// xxh3's final merge of the accumulators into one 64-bit half of the hash.
fn merge(acc: &[u64; 8], secret: &[u8; 64], start: u64) -> u64 {
    let mut result = start;
    for i in (0..8).step_by(2) {
        let a = acc[i] ^ word(secret, i);
        let b = acc[i + 1] ^ word(secret, i + 1);
        let product = u128::from(a) * u128::from(b);
        result = result.wrapping_add(product as u64 ^ (product >> 64) as u64);
    }
    avalanche(result)
}

fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 37;
    h = h.wrapping_mul(PRIME_MX1);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect()
    }

    /// A hasher on each kernel this CPU runs: the portable one always, so the streaming rules
    /// are checked on every machine, and the vector ones where the CPU has them.
    fn hashers() -> Vec<Xxh3> {
        Kernel::available()
            .into_iter()
            .map(Xxh3::with_kernel)
            .collect()
    }

    #[test]
    fn equals_xxhash_rust_for_every_length_class() {
        // Empty, the short-input paths (1-16, 17-128, 129-240), the buffer (256), blocks of
        // 16 stripes (1 KiB) with their tails, and last stripes inside and across the buffer.
        for len in [
            0,
            1,
            3,
            4,
            8,
            9,
            16,
            17,
            100,
            128,
            129,
            200,
            240,
            241,
            255,
            256,
            257,
            300,
            319,
            320,
            321,
            383,
            384,
            385,
            1023,
            1024,
            1025,
            1087,
            1088,
            1089,
            2048,
            4096,
            16_383,
            16_384,
            16_385,
            100_000,
            1 << 20,
        ] {
            let bytes = data(len);
            let expected = xxhash_rust::xxh3::xxh3_128(&bytes);
            for mut ours in hashers() {
                ours.update(&bytes);
                assert_eq!(ours.digest128(), expected, "length {len}, {ours:?}");
            }
        }
    }

    #[test]
    fn equals_xxhash_rust_whatever_the_pieces() {
        let bytes = data(300_001);
        let expected = xxhash_rust::xxh3::xxh3_128(&bytes);
        for piece in [
            1, 7, 63, 64, 65, 239, 240, 255, 256, 257, 1000, 1024, 4096, 65_536, 100_000,
        ] {
            for mut ours in hashers() {
                for chunk in bytes.chunks(piece) {
                    ours.update(chunk);
                }
                assert_eq!(ours.digest128(), expected, "pieces of {piece}, {ours:?}");
            }
        }
    }

    #[test]
    fn equals_xxhash_rust_for_uneven_pieces_and_every_end() {
        // Pieces of changing sizes leave the buffer at every fill level; the digest after each
        // piece checks the last stripe whether it lies in the buffer, across its end, or in
        // bytes accumulated straight from the input.
        let bytes = data(40_000);
        for mut ours in hashers() {
            let mut at = 0;
            let mut step = 1;
            while at < bytes.len() {
                let end = (at + step).min(bytes.len());
                ours.update(&bytes[at..end]);
                at = end;
                assert_eq!(
                    ours.digest128(),
                    xxhash_rust::xxh3::xxh3_128(&bytes[..at]),
                    "after {at} bytes, {ours:?}"
                );
                step = (step * 7 + 3) % 1500 + 1;
            }
        }
    }

    #[test]
    fn empty_updates_change_nothing() {
        let bytes = data(1000);
        for mut ours in hashers() {
            ours.update(&[]);
            ours.update(&bytes[..256]);
            ours.update(&[]);
            ours.update(&bytes[256..]);
            assert_eq!(ours.digest128(), xxhash_rust::xxh3::xxh3_128(&bytes));
        }
    }

    #[test]
    fn digest_leaves_the_hasher_usable() {
        let bytes = data(5000);
        for mut ours in hashers() {
            ours.update(&bytes[..2000]);
            assert_eq!(
                ours.digest128(),
                xxhash_rust::xxh3::xxh3_128(&bytes[..2000])
            );
            ours.update(&bytes[2000..]);
            assert_eq!(ours.digest128(), xxhash_rust::xxh3::xxh3_128(&bytes));
        }
    }

    #[test]
    fn new_uses_the_fastest_kernel() {
        assert_eq!(Xxh3::new().lanes.kernel, Kernel::detect());
    }
}
