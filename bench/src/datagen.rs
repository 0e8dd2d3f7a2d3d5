//! Test data made on the fly: a deterministic byte stream per file that can be produced at any
//! offset, so a 10 GiB upload needs no source file and a download can be verified byte for
//! byte without keeping a copy.
//!
//! The stream is cut into 64 KiB blocks. Block `b` of a file is the output of [`LANES`]
//! independent xoshiro256++ generators seeded (through SplitMix64) from the file seed, `b` and
//! the lane, interleaved word by word (little-endian u64s). Seeding per block makes the stream
//! seekable, so how it is chunked never changes it; running the lanes side by side lets the
//! compiler keep several generators in vector registers, which makes generation far faster
//! than the network it feeds.

use crate::verify::{VerifyError, first_difference};

/// Bytes per independently seeded block.
pub const BLOCK_SIZE: usize = 64 * 1024;
/// xoshiro256++ generators run side by side inside a block.
pub const LANES: usize = 8;
const GROUP: usize = LANES * 8;
const _: () = assert!(BLOCK_SIZE.is_multiple_of(GROUP));

/// SplitMix64's output function: a bijective 64-bit mixer.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The four state words SplitMix64 produces from `seed` (the seeding xoshiro's authors advise).
fn splitmix_state(seed: u64) -> [u64; 4] {
    let mut x = seed;
    std::array::from_fn(|_| {
        x = x.wrapping_add(GOLDEN);
        mix64(x)
    })
}

/// The seed of file `index` of a run: distinct files get unrelated streams.
pub fn file_seed(run_seed: u64, index: u64) -> u64 {
    mix64(run_seed ^ mix64(index.wrapping_mul(GOLDEN).wrapping_add(0x5158_f1d5)))
}

/// The xoshiro256++ states of all lanes for one block, stored lane-minor so that the update
/// loop is a straight line over arrays the compiler vectorises.
struct Lanes {
    s: [[u64; LANES]; 4],
}

impl Lanes {
    fn for_block(seed: u64, block: u64) -> Self {
        let mut s = [[0u64; LANES]; 4];
        let block_key = mix64(seed ^ mix64(block ^ 0x6a09_e667_f3bc_c908));
        for lane in 0..LANES {
            let st = splitmix_state(block_key.wrapping_add((lane as u64).wrapping_mul(GOLDEN)));
            for (words, value) in s.iter_mut().zip(st) {
                words[lane] = value;
            }
        }
        Lanes { s }
    }

    #[inline(always)]
    fn next_group(&mut self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), GROUP);
        let [s0, s1, s2, s3] = &mut self.s;
        let mut words = [0u64; LANES];
        for l in 0..LANES {
            words[l] = s0[l]
                .wrapping_add(s3[l])
                .rotate_left(23)
                .wrapping_add(s0[l]);
            let t = s1[l] << 17;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(45);
        }
        for (dst, w) in out.chunks_exact_mut(8).zip(words) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// Fills `out` (a whole number of groups) from `lanes`, with the widest vector instructions
/// the CPU has: the same code compiled for AVX-512 or AVX2 runs several times faster than the
/// baseline x86-64 (SSE2) build, whose lack of vector rotates makes it spill and shuffle.
fn fill_groups(lanes: &mut Lanes, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            // SAFETY: the CPU supports AVX-512F and AVX-512VL (checked just above).
            return unsafe { fill_groups_avx512(lanes, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { fill_groups_avx2(lanes, out) };
        }
    }
    fill_groups_portable(lanes, out)
}

#[inline(always)]
fn fill_groups_portable(lanes: &mut Lanes, out: &mut [u8]) {
    for group in out.chunks_exact_mut(GROUP) {
        lanes.next_group(group);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_groups_avx2(lanes: &mut Lanes, out: &mut [u8]) {
    fill_groups_portable(lanes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
fn fill_groups_avx512(lanes: &mut Lanes, out: &mut [u8]) {
    fill_groups_portable(lanes, out)
}

/// The byte stream of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataGen {
    seed: u64,
}

impl DataGen {
    pub fn new(seed: u64) -> Self {
        DataGen { seed }
    }

    /// The stream of file `index` of a run with `run_seed`.
    pub fn for_file(run_seed: u64, index: u64) -> Self {
        Self::new(file_seed(run_seed, index))
    }

    /// Writes the stream's bytes `offset .. offset + out.len()` into `out`.
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut rest = out;
        while !rest.is_empty() {
            let block = pos / BLOCK_SIZE as u64;
            let within = (pos % BLOCK_SIZE as u64) as usize;
            let n = (BLOCK_SIZE - within).min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            self.fill_in_block(block, within, head);
            pos += n as u64;
            rest = tail;
        }
    }

    /// Writes bytes `within .. within + out.len()` of block `block` into `out`.
    fn fill_in_block(&self, block: u64, within: usize, out: &mut [u8]) {
        let mut lanes = Lanes::for_block(self.seed, block);
        // Groups before `within` still have to be generated: the stream is sequential inside a
        // block. Whole groups go straight into `out`; the partial ones at the edges through a
        // small scratch group.
        let first_group = within / GROUP;
        let mut scratch = [0u8; GROUP];
        for _ in 0..first_group {
            lanes.next_group(&mut scratch);
        }
        let mut written = 0;
        let skip = within % GROUP;
        if skip != 0 {
            lanes.next_group(&mut scratch);
            let n = (GROUP - skip).min(out.len());
            out[..n].copy_from_slice(&scratch[skip..skip + n]);
            written = n;
        }
        let whole_len = (out.len() - written) / GROUP * GROUP;
        let (whole, tail) = out[written..].split_at_mut(whole_len);
        fill_groups(&mut lanes, whole);
        if !tail.is_empty() {
            lanes.next_group(&mut scratch);
            let n = tail.len();
            tail.copy_from_slice(&scratch[..n]);
        }
    }
}

/// Checks a downloaded body, fed in pieces of any size, against the generated stream of the
/// expected length.
pub struct GenVerifier {
    datagen: DataGen,
    len: u64,
    pos: u64,
    /// The expected bytes of block `block_index`, generated once and compared against as
    /// many incoming pieces as it overlaps.
    block: Box<[u8]>,
    block_index: Option<u64>,
}

impl GenVerifier {
    pub fn new(datagen: DataGen, len: u64) -> Self {
        GenVerifier {
            datagen,
            len,
            pos: 0,
            block: vec![0u8; BLOCK_SIZE].into_boxed_slice(),
            block_index: None,
        }
    }

    /// Bytes received and found equal so far.
    pub fn verified(&self) -> u64 {
        self.pos
    }

    /// Compares the next piece of the body. After an error the verifier must not be fed again.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), VerifyError> {
        let room = self.len - self.pos;
        let (data, too_long) = if data.len() as u64 > room {
            (&data[..room as usize], true)
        } else {
            (data, false)
        };
        let mut rest = data;
        while !rest.is_empty() {
            let block = self.pos / BLOCK_SIZE as u64;
            let within = (self.pos % BLOCK_SIZE as u64) as usize;
            if self.block_index != Some(block) {
                self.datagen
                    .fill(block * BLOCK_SIZE as u64, &mut self.block);
                self.block_index = Some(block);
            }
            let n = (BLOCK_SIZE - within).min(rest.len());
            let expected = &self.block[within..within + n];
            if let Some(i) = first_difference(expected, &rest[..n]) {
                let offset = self.pos + i as u64;
                // The bytes before the difference did verify.
                self.pos = offset;
                return Err(VerifyError::Mismatch {
                    offset,
                    expected: expected[i],
                    got: rest[i],
                });
            }
            self.pos += n as u64;
            rest = &rest[n..];
        }
        if too_long {
            return Err(VerifyError::TooLong { expected: self.len });
        }
        Ok(())
    }

    /// Ends the body: an error if fewer bytes arrived than expected.
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
    use rand::{Rng, RngCore, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn generate(datagen: DataGen, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        datagen.fill(offset, &mut v);
        v
    }

    #[test]
    fn each_lane_is_genuine_xoshiro256plusplus() {
        let seed = 42;
        let block = 3u64;
        let got = generate(DataGen::new(seed), block * BLOCK_SIZE as u64, BLOCK_SIZE);
        let lanes = Lanes::for_block(seed, block);
        for lane in 0..LANES {
            let mut state = [0u8; 32];
            for word in 0..4 {
                state[word * 8..word * 8 + 8].copy_from_slice(&lanes.s[word][lane].to_le_bytes());
            }
            let mut reference = Xoshiro256PlusPlus::from_seed(state);
            for group in 0..BLOCK_SIZE / GROUP {
                let at = group * GROUP + lane * 8;
                let word = u64::from_le_bytes(got[at..at + 8].try_into().unwrap());
                assert_eq!(word, reference.next_u64(), "lane {lane} group {group}");
            }
        }
    }

    #[test]
    fn deterministic_per_seed_and_distinct_across_seeds_and_files() {
        let a = generate(DataGen::new(7), 0, 300_000);
        assert_eq!(a, generate(DataGen::new(7), 0, 300_000));
        assert_ne!(a, generate(DataGen::new(8), 0, 300_000));
        let f0 = generate(DataGen::for_file(7, 0), 0, 4096);
        let f1 = generate(DataGen::for_file(7, 1), 0, 4096);
        assert_ne!(f0, f1);
        assert_eq!(f0, generate(DataGen::for_file(7, 0), 0, 4096));
        // Blocks of one stream are not repeats of each other.
        assert_ne!(a[..BLOCK_SIZE], a[BLOCK_SIZE..2 * BLOCK_SIZE]);
    }

    #[test]
    fn looks_random_enough_to_defeat_compression_and_dedup() {
        let data = generate(DataGen::new(1), 0, 1 << 20);
        let mut counts = [0u32; 256];
        for &b in &data {
            counts[b as usize] += 1;
        }
        // 4096 expected per value; a constant or low-entropy stream would fail wildly.
        assert!(
            counts.iter().all(|&c| (3500..4700).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn chunking_does_not_change_the_stream() {
        let datagen = DataGen::new(0xdead_beef);
        let len = 3 * BLOCK_SIZE + 12_345;
        let whole = generate(datagen, 0, len);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..8 {
            let mut pieced = vec![0u8; len];
            let mut at = 0;
            while at < len {
                let n = rng.random_range(1..=20_000).min(len - at);
                datagen.fill(at as u64, &mut pieced[at..at + n]);
                at += n;
            }
            assert_eq!(pieced, whole);
        }
        // Pieces that straddle block and group edges, and single bytes.
        for &(off, n) in &[
            (BLOCK_SIZE - 1, 2),
            (BLOCK_SIZE - 3, 70),
            (GROUP - 1, 1),
            (5, BLOCK_SIZE),
            (len - 1, 1),
        ] {
            assert_eq!(generate(datagen, off as u64, n), whole[off..off + n]);
        }
        // Offsets far into a 10 GiB file work without generating what comes before.
        let far = 10u64 << 30;
        let expect = generate(datagen, far - 100, 200);
        assert_eq!(generate(datagen, far, 100), expect[100..]);
    }

    fn feed_in_pieces(v: &mut GenVerifier, data: &[u8], seed: u64) -> Result<(), VerifyError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut at = 0;
        while at < data.len() {
            let n = rng.random_range(1..=9_000).min(data.len() - at);
            v.feed(&data[at..at + n])?;
            at += n;
        }
        Ok(())
    }

    #[test]
    fn verifier_accepts_the_stream_in_any_pieces() {
        let datagen = DataGen::new(99);
        let len = 2 * BLOCK_SIZE + 777;
        let data = generate(datagen, 0, len);
        for seed in 0..4 {
            let mut v = GenVerifier::new(datagen, len as u64);
            feed_in_pieces(&mut v, &data, seed).unwrap();
            assert_eq!(v.finish(), Ok(len as u64));
        }
    }

    #[test]
    fn verifier_detects_a_flipped_byte_at_any_offset() {
        let datagen = DataGen::new(5);
        let len = BLOCK_SIZE + 300;
        let data = generate(datagen, 0, len);
        let mut offsets: Vec<usize> = (0..len).step_by(4099).collect();
        offsets.extend([0, 1, GROUP - 1, GROUP, BLOCK_SIZE - 1, BLOCK_SIZE, len - 1]);
        for off in offsets {
            let mut bad = data.clone();
            bad[off] ^= 0x01;
            let mut v = GenVerifier::new(datagen, len as u64);
            let err = feed_in_pieces(&mut v, &bad, off as u64).unwrap_err();
            assert_eq!(
                err,
                VerifyError::Mismatch {
                    offset: off as u64,
                    expected: data[off],
                    got: bad[off]
                }
            );
            assert_eq!(v.verified(), off as u64, "bytes before the flip count");
        }
    }

    #[test]
    fn verifier_reports_short_and_long_bodies() {
        let datagen = DataGen::new(5);
        let data = generate(datagen, 0, 1000);
        let mut v = GenVerifier::new(datagen, 1000);
        v.feed(&data[..999]).unwrap();
        assert_eq!(
            v.finish(),
            Err(VerifyError::Short {
                expected: 1000,
                got: 999
            })
        );
        let mut long = data.clone();
        long.extend(generate(datagen, 1000, 10));
        let mut v = GenVerifier::new(datagen, 1000);
        assert_eq!(v.feed(&long), Err(VerifyError::TooLong { expected: 1000 }));
        let mut v = GenVerifier::new(datagen, 0);
        assert_eq!(v.finish(), Ok(0));
        assert_eq!(v.feed(b"x"), Err(VerifyError::TooLong { expected: 0 }));
    }
}
