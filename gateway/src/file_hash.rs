//! The whole-file checksum's hasher: xxh3-128 with the default secret and seed 0, the value
//! stored as a file's `checksum` since the first release.
//!
//! The computation is `twox-hash`'s, which picks its AVX2 or SSE2 code at run time from the
//! CPU's features (`is_x86_feature_detected!`), so the shipped build stays baseline x86-64 and
//! still uses AVX2 where the CPU has it. `xxhash-rust`'s `Xxh3` chooses at compile time only,
//! i.e. SSE2 for a baseline build. The two compute the same function: the tests below compare
//! them, and the checksums of files stored by earlier releases stay valid.

/// Streaming xxh3-128 of a file's bytes, in any pieces.
#[derive(Clone, Default)]
pub struct Xxh3(twox_hash::XxHash3_128);

impl std::fmt::Debug for Xxh3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Xxh3(..)")
    }
}

impl Xxh3 {
    pub fn new() -> Self {
        Self(twox_hash::XxHash3_128::new())
    }

    /// Adds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The hash of every byte added so far (the hasher can go on).
    pub fn digest128(&self) -> u128 {
        self.0.finish_128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect()
    }

    #[test]
    fn equals_xxhash_rust_for_every_length_class() {
        // Empty, the short-input paths (1-16, 17-128, 129-240) and the streaming stripes and
        // blocks (1 KiB stripes, 16 KiB-ish blocks) with their tails.
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
            1023,
            1024,
            1025,
            4096,
            16_383,
            16_384,
            16_385,
            100_000,
            1 << 20,
        ] {
            let bytes = data(len);
            let mut ours = Xxh3::new();
            ours.update(&bytes);
            assert_eq!(
                ours.digest128(),
                xxhash_rust::xxh3::xxh3_128(&bytes),
                "length {len}"
            );
        }
    }

    #[test]
    fn equals_xxhash_rust_whatever_the_pieces() {
        let bytes = data(300_001);
        let expected = xxhash_rust::xxh3::xxh3_128(&bytes);
        for piece in [1, 7, 64, 239, 240, 1000, 4096, 65_536, 100_000] {
            let mut ours = Xxh3::new();
            for chunk in bytes.chunks(piece) {
                ours.update(chunk);
            }
            assert_eq!(ours.digest128(), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn digest_leaves_the_hasher_usable() {
        let bytes = data(5000);
        let mut ours = Xxh3::new();
        ours.update(&bytes[..2000]);
        assert_eq!(
            ours.digest128(),
            xxhash_rust::xxh3::xxh3_128(&bytes[..2000])
        );
        ours.update(&bytes[2000..]);
        assert_eq!(ours.digest128(), xxhash_rust::xxh3::xxh3_128(&bytes));
    }
}
