//! xxh3's long-input loop: the stripe accumulation and the block scramble, in portable code and
//! in AVX2 and AVX-512 versions chosen at run time.
//!
//! The eight 64-bit accumulators fit one AVX-512 register (two AVX2 ones), so the vector kernels
//! keep them in registers for every stripe of a call, and across whole blocks ([`Kernel::blocks`],
//! the path most of a large input takes). A stripe's contribution is added, and
//! addition commutes, so even and odd stripes go to two partial sums that are added at the end:
//! the chain of dependent additions halves. Whole blocks sum their stripes apart from the
//! accumulators, so that only one addition and the scramble depend on the block before. Stripe `n`
//! of a block is keyed by the secret's bytes `8n..8n + 64`; [`BLOCK_KEYS`] holds those windows
//! copied out once, 64-byte aligned, so that no key load splits a cache line. All three compute the
//! same function; the tests compare them on random input.

/// A stripe: the unit xxh3 accumulates, 64 input bytes against 64 secret bytes.
pub(super) type Stripe = [u8; 64];

/// xxh3's default secret (`XXH3_kSecret`).
#[rustfmt::skip]
pub(super) const DEFAULT_SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];

const PRIME32_1: u64 = 0x9E37_79B1;

/// Stripes per block: a block ends with a scramble, when the secret's windows run out.
pub(super) const BLOCK_STRIPES: usize = (DEFAULT_SECRET.len() - 64) / 8;

/// The key of each stripe of a block, aligned for whole-register loads.
#[repr(C, align(64))]
pub(super) struct BlockKeys(pub(super) [Stripe; BLOCK_STRIPES]);

pub(super) static BLOCK_KEYS: BlockKeys = BlockKeys(block_keys());

const fn block_keys() -> [Stripe; BLOCK_STRIPES] {
    let mut keys = [[0; 64]; BLOCK_STRIPES];
    let mut n = 0;
    while n < BLOCK_STRIPES {
        let mut i = 0;
        while i < 64 {
            keys[n][i] = DEFAULT_SECRET[8 * n + i];
            i += 1;
        }
        n += 1;
    }
    keys
}

/// Which code runs the loop. A vector variant is only ever made by [`Kernel::detect`] or
/// [`Kernel::available`], after checking that the CPU has the feature: that check is what
/// makes calling its `#[target_feature]` functions sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Every kernel this CPU runs, slowest first.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut kernels = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Self::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Self::Avx512);
            }
        }
        kernels
    }

    /// Accumulates `stripes`, each against its key: stripe `i` against `keys[i]`.
    ///
    /// # Panics
    /// If there are more stripes than keys (a caller's bug).
    pub(super) fn accumulate(self, acc: &mut [u64; 8], stripes: &[Stripe], keys: &[Stripe]) {
        assert!(
            stripes.len() <= keys.len(),
            "{} stripes but {} keys",
            stripes.len(),
            keys.len()
        );
        match self {
            Self::Portable => portable::accumulate(acc, stripes, keys),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` exists only where `is_x86_feature_detected!("avx2")` held, and the
            // assertion above keeps every key load in bounds.
            Self::Avx2 => unsafe { avx2::accumulate(acc, stripes, keys) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, with "avx512f".
            Self::Avx512 => unsafe { avx512::accumulate(acc, stripes, keys) },
        }
    }

    /// Scrambles the accumulators at the end of a block, with the secret's last 64 bytes.
    pub(super) fn scramble(self, acc: &mut [u64; 8], secret_end: &[u8; 64]) {
        match self {
            Self::Portable => portable::scramble(acc, secret_end),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` exists only where `is_x86_feature_detected!("avx2")` held.
            Self::Avx2 => unsafe { avx2::scramble(acc, secret_end) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` exists only where `is_x86_feature_detected!("avx512f")` held.
            Self::Avx512 => unsafe { avx512::scramble(acc, secret_end) },
        }
    }

    /// Whole blocks from a block boundary: for each, its stripes against [`BLOCK_KEYS`], then
    /// the scramble. The same as [`Kernel::accumulate`] and [`Kernel::scramble`] per block, but
    /// the accumulators stay in registers across blocks, and a block's stripes are summed apart
    /// from them, so that the scramble's chain of dependent instructions overlaps the next
    /// block's loads and multiplies instead of stalling them.
    pub(super) fn blocks(
        self,
        acc: &mut [u64; 8],
        blocks: &[[Stripe; BLOCK_STRIPES]],
        secret_end: &[u8; 64],
    ) {
        match self {
            Self::Portable => portable::blocks(acc, blocks, secret_end),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` exists only where `is_x86_feature_detected!("avx2")` held.
            Self::Avx2 => unsafe { avx2::blocks(acc, blocks, secret_end) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` exists only where `is_x86_feature_detected!("avx512f")` held.
            Self::Avx512 => unsafe { avx512::blocks(acc, blocks, secret_end) },
        }
    }
}

/// The `i`th little-endian 64-bit word of `bytes`.
pub(super) fn word(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[8 * i..8 * i + 8]);
    u64::from_le_bytes(w)
}

/// The reference: xxh3's scalar loop, lane by lane.
mod portable {
    use super::{BLOCK_KEYS, BLOCK_STRIPES, PRIME32_1, Stripe, word};

    pub(super) fn accumulate(acc: &mut [u64; 8], stripes: &[Stripe], keys: &[Stripe]) {
        for (stripe, key) in stripes.iter().zip(keys) {
            for i in 0..8 {
                let data = word(stripe, i);
                let keyed = data ^ word(key, i);
                acc[i ^ 1] = acc[i ^ 1].wrapping_add(data);
                acc[i] = acc[i].wrapping_add((keyed & 0xFFFF_FFFF) * (keyed >> 32));
            }
        }
    }

    pub(super) fn scramble(acc: &mut [u64; 8], secret_end: &[u8; 64]) {
        for (i, lane) in acc.iter_mut().enumerate() {
            *lane ^= *lane >> 47;
            *lane ^= word(secret_end, i);
            *lane = lane.wrapping_mul(PRIME32_1);
        }
    }

    pub(super) fn blocks(
        acc: &mut [u64; 8],
        blocks: &[[Stripe; BLOCK_STRIPES]],
        secret_end: &[u8; 64],
    ) {
        for block in blocks {
            accumulate(acc, block, &BLOCK_KEYS.0);
            scramble(acc, secret_end);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BLOCK_KEYS, BLOCK_STRIPES, PRIME32_1, Stripe};

    /// # Safety
    /// The CPU has AVX2, and there are at least as many `keys` as `stripes`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn accumulate(acc: &mut [u64; 8], stripes: &[Stripe], keys: &[Stripe]) {
        let acc_ptr = acc.as_mut_ptr().cast::<__m256i>();
        let zero = _mm256_setzero_si256();
        // SAFETY: unaligned loads and stores of the 64 bytes of `acc`, and loads of each
        // 64-byte stripe and of its key, which the caller provides.
        unsafe {
            let mut even = [
                _mm256_loadu_si256(acc_ptr),
                _mm256_loadu_si256(acc_ptr.add(1)),
            ];
            let mut odd = [zero, zero];
            let keys = &keys[..stripes.len()];
            let pairs = stripes.chunks_exact(2).zip(keys.chunks_exact(2));
            for (stripe, key) in pairs {
                add_stripe(&mut even, &stripe[0], &key[0]);
                add_stripe(&mut odd, &stripe[1], &key[1]);
            }
            if let ([last], [key]) = (
                stripes.chunks_exact(2).remainder(),
                keys.chunks_exact(2).remainder(),
            ) {
                add_stripe(&mut even, last, key);
            }
            _mm256_storeu_si256(acc_ptr, _mm256_add_epi64(even[0], odd[0]));
            _mm256_storeu_si256(acc_ptr.add(1), _mm256_add_epi64(even[1], odd[1]));
        }
    }

    /// What one half stripe adds to its four accumulators.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn contribution(data: __m256i, key: __m256i) -> __m256i {
        let keyed = _mm256_xor_si256(data, key);
        let product = _mm256_mul_epu32(keyed, _mm256_srli_epi64::<32>(keyed));
        let swapped = _mm256_shuffle_epi32::<0b01_00_11_10>(data);
        _mm256_add_epi64(swapped, product)
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scramble(acc: &mut [u64; 8], secret_end: &[u8; 64]) {
        let acc_ptr = acc.as_mut_ptr().cast::<__m256i>();
        // SAFETY: unaligned loads and stores within the 64 bytes of `acc` and `secret_end`.
        unsafe {
            let keys = load_pair(secret_end);
            let a = [
                _mm256_loadu_si256(acc_ptr),
                _mm256_loadu_si256(acc_ptr.add(1)),
            ];
            let a = scrambled(a, keys);
            _mm256_storeu_si256(acc_ptr, a[0]);
            _mm256_storeu_si256(acc_ptr.add(1), a[1]);
        }
    }

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn blocks(
        acc: &mut [u64; 8],
        blocks: &[[Stripe; BLOCK_STRIPES]],
        secret_end: &[u8; 64],
    ) {
        let acc_ptr = acc.as_mut_ptr().cast::<__m256i>();
        let zero = _mm256_setzero_si256();
        // SAFETY: unaligned loads and stores of the 64 bytes of `acc`, of `secret_end`, and of
        // each 64-byte stripe of `blocks` and of each of the `BLOCK_STRIPES` keys.
        unsafe {
            let end_keys = load_pair(secret_end);
            let mut a = [
                _mm256_loadu_si256(acc_ptr),
                _mm256_loadu_si256(acc_ptr.add(1)),
            ];
            for block in blocks {
                let mut even = [zero, zero];
                let mut odd = [zero, zero];
                for (pair, keys) in block.chunks_exact(2).zip(BLOCK_KEYS.0.chunks_exact(2)) {
                    add_stripe(&mut even, &pair[0], &keys[0]);
                    add_stripe(&mut odd, &pair[1], &keys[1]);
                }
                for half in 0..2 {
                    let sum = _mm256_add_epi64(even[half], odd[half]);
                    a[half] = _mm256_add_epi64(a[half], sum);
                }
                a = scrambled(a, end_keys);
            }
            _mm256_storeu_si256(acc_ptr, a[0]);
            _mm256_storeu_si256(acc_ptr.add(1), a[1]);
        }
    }

    /// Adds what one stripe contributes to the two registers of accumulators.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add_stripe(sums: &mut [__m256i; 2], stripe: &Stripe, key: &Stripe) {
        let data = stripe.as_ptr().cast::<__m256i>();
        let key = key.as_ptr().cast::<__m256i>();
        for (half, sum) in sums.iter_mut().enumerate() {
            // SAFETY: unaligned loads within the 64 bytes of `stripe` and `key`.
            let part = unsafe {
                contribution(
                    _mm256_loadu_si256(data.add(half)),
                    _mm256_loadu_si256(key.add(half)),
                )
            };
            *sum = _mm256_add_epi64(*sum, part);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_pair(bytes: &[u8; 64]) -> [__m256i; 2] {
        let ptr = bytes.as_ptr().cast::<__m256i>();
        // SAFETY: unaligned loads within the 64 bytes of `bytes`.
        unsafe { [_mm256_loadu_si256(ptr), _mm256_loadu_si256(ptr.add(1))] }
    }

    /// xxh3's scramble of accumulators held in two registers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn scrambled(acc: [__m256i; 2], keys: [__m256i; 2]) -> [__m256i; 2] {
        let prime = _mm256_set1_epi32(PRIME32_1 as i32);
        std::array::from_fn(|i| {
            let a = _mm256_xor_si256(acc[i], _mm256_srli_epi64::<47>(acc[i]));
            let a = _mm256_xor_si256(a, keys[i]);
            let low = _mm256_mul_epu32(a, prime);
            let high = _mm256_mul_epu32(_mm256_srli_epi64::<32>(a), prime);
            _mm256_add_epi64(low, _mm256_slli_epi64::<32>(high))
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BLOCK_KEYS, BLOCK_STRIPES, PRIME32_1, Stripe};

    /// # Safety
    /// The CPU has AVX-512F, and there are at least as many `keys` as `stripes`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate(acc: &mut [u64; 8], stripes: &[Stripe], keys: &[Stripe]) {
        // SAFETY: unaligned loads and stores of the 64 bytes of `acc`, and loads of each
        // 64-byte stripe and of its key, which the caller provides.
        unsafe {
            let mut even = _mm512_loadu_si512(acc.as_ptr().cast());
            let mut odd = _mm512_setzero_si512();
            let keys = &keys[..stripes.len()];
            let pairs = stripes.chunks_exact(2).zip(keys.chunks_exact(2));
            for (stripe, key) in pairs {
                even = _mm512_add_epi64(even, contribution(&stripe[0], &key[0]));
                odd = _mm512_add_epi64(odd, contribution(&stripe[1], &key[1]));
            }
            if let ([last], [key]) = (
                stripes.chunks_exact(2).remainder(),
                keys.chunks_exact(2).remainder(),
            ) {
                even = _mm512_add_epi64(even, contribution(last, key));
            }
            _mm512_storeu_si512(acc.as_mut_ptr().cast(), _mm512_add_epi64(even, odd));
        }
    }

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scramble(acc: &mut [u64; 8], secret_end: &[u8; 64]) {
        // SAFETY: unaligned loads and stores of the 64 bytes of `acc` and `secret_end`.
        unsafe {
            let a = _mm512_loadu_si512(acc.as_ptr().cast());
            let a = scrambled(a, _mm512_loadu_si512(secret_end.as_ptr().cast()));
            _mm512_storeu_si512(acc.as_mut_ptr().cast(), a);
        }
    }

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn blocks(
        acc: &mut [u64; 8],
        blocks: &[[Stripe; BLOCK_STRIPES]],
        secret_end: &[u8; 64],
    ) {
        // SAFETY: unaligned loads and stores of the 64 bytes of `acc`, of `secret_end`, and of
        // each 64-byte stripe of `blocks` and of each of the `BLOCK_STRIPES` keys.
        unsafe {
            let end_key = _mm512_loadu_si512(secret_end.as_ptr().cast());
            let mut a = _mm512_loadu_si512(acc.as_ptr().cast());
            for block in blocks {
                let mut even = _mm512_setzero_si512();
                let mut odd = _mm512_setzero_si512();
                for (pair, keys) in block.chunks_exact(2).zip(BLOCK_KEYS.0.chunks_exact(2)) {
                    even = _mm512_add_epi64(even, contribution(&pair[0], &keys[0]));
                    odd = _mm512_add_epi64(odd, contribution(&pair[1], &keys[1]));
                }
                a = scrambled(_mm512_add_epi64(a, _mm512_add_epi64(even, odd)), end_key);
            }
            _mm512_storeu_si512(acc.as_mut_ptr().cast(), a);
        }
    }

    /// What one stripe adds to the eight accumulators.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn contribution(stripe: &Stripe, key: &Stripe) -> __m512i {
        // SAFETY: unaligned loads of the 64 bytes of `stripe` and `key`.
        let (data, key) = unsafe {
            (
                _mm512_loadu_si512(stripe.as_ptr().cast()),
                _mm512_loadu_si512(key.as_ptr().cast()),
            )
        };
        let keyed = _mm512_xor_si512(data, key);
        let product = _mm512_mul_epu32(keyed, _mm512_srli_epi64::<32>(keyed));
        let swapped = _mm512_shuffle_epi32::<0b01_00_11_10>(data);
        _mm512_add_epi64(swapped, product)
    }

    /// xxh3's scramble of the accumulators held in one register.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn scrambled(acc: __m512i, key: __m512i) -> __m512i {
        let prime = _mm512_set1_epi32(PRIME32_1 as i32);
        let a = _mm512_xor_si512(acc, _mm512_srli_epi64::<47>(acc));
        let a = _mm512_xor_si512(a, key);
        let low = _mm512_mul_epu32(a, prime);
        let high = _mm512_mul_epu32(_mm512_srli_epi64::<32>(a), prime);
        _mm512_add_epi64(low, _mm512_slli_epi64::<32>(high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes whose 32-bit halves vary widely, so that the products differ lane by lane.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| ((i + seed * 7919).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect()
    }

    fn stripes(bytes: &[u8]) -> &[Stripe] {
        bytes.as_chunks::<64>().0
    }

    #[test]
    fn every_kernel_accumulates_as_the_portable_one() {
        for (seed, count) in [(1, 1), (2, 2), (3, 5), (4, 16)] {
            let input = noise(seed, 64 * count);
            let start: [u64; 8] =
                std::array::from_fn(|i| (i as u64 + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut expected = start;
            Kernel::Portable.accumulate(&mut expected, stripes(&input), &BLOCK_KEYS.0);
            for kernel in Kernel::available() {
                let mut acc = start;
                kernel.accumulate(&mut acc, stripes(&input), &BLOCK_KEYS.0);
                assert_eq!(acc, expected, "{kernel:?}, {count} stripes");
            }
        }
    }

    #[test]
    fn no_stripes_leave_the_accumulators_alone() {
        let start: [u64; 8] = std::array::from_fn(|i| i as u64 * 0x0123_4567_89AB_CDEF);
        for kernel in Kernel::available() {
            let mut acc = start;
            kernel.accumulate(&mut acc, &[], &BLOCK_KEYS.0);
            assert_eq!(acc, start, "{kernel:?}");
        }
    }

    #[test]
    fn every_kernel_scrambles_as_the_portable_one() {
        let start: [u64; 8] = std::array::from_fn(|i| u64::MAX / (i as u64 + 3));
        let secret_end: &[u8; 64] = DEFAULT_SECRET.last_chunk().expect("192 bytes");
        let mut expected = start;
        Kernel::Portable.scramble(&mut expected, secret_end);
        assert_ne!(expected, start);
        for kernel in Kernel::available() {
            let mut acc = start;
            kernel.scramble(&mut acc, secret_end);
            assert_eq!(acc, expected, "{kernel:?}");
        }
    }

    #[test]
    fn every_kernel_runs_whole_blocks_as_the_portable_stripes_and_scramble() {
        let secret_end: &[u8; 64] = DEFAULT_SECRET.last_chunk().expect("192 bytes");
        for (seed, count) in [(5, 0), (6, 1), (7, 3)] {
            let input = noise(seed, 64 * BLOCK_STRIPES * count);
            let (blocks, rest) = stripes(&input).as_chunks::<BLOCK_STRIPES>();
            assert!(rest.is_empty());
            let start: [u64; 8] =
                std::array::from_fn(|i| (i as u64 + seed).wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
            let mut expected = start;
            for block in blocks {
                Kernel::Portable.accumulate(&mut expected, block, &BLOCK_KEYS.0);
                Kernel::Portable.scramble(&mut expected, secret_end);
            }
            assert_eq!(expected == start, count == 0);
            for kernel in Kernel::available() {
                let mut acc = start;
                kernel.blocks(&mut acc, blocks, secret_end);
                assert_eq!(acc, expected, "{kernel:?}, {count} blocks");
            }
        }
    }

    #[test]
    fn the_detected_kernel_is_the_fastest_available() {
        let available = Kernel::available();
        assert_eq!(available[0], Kernel::Portable);
        assert_eq!(Some(&Kernel::detect()), available.last());
    }

    #[test]
    fn the_block_keys_are_the_secrets_windows() {
        for (n, key) in BLOCK_KEYS.0.iter().enumerate() {
            assert_eq!(&key[..], &DEFAULT_SECRET[8 * n..8 * n + 64], "key {n}");
            assert_eq!(key.as_ptr() as usize % 64, 0, "key {n} is aligned");
        }
    }

    #[test]
    #[should_panic(expected = "17 stripes but 16 keys")]
    fn more_stripes_than_keys_are_refused() {
        let input = noise(4, 64 * 17);
        let mut acc = [0; 8];
        Kernel::Portable.accumulate(&mut acc, stripes(&input), &BLOCK_KEYS.0);
    }
}
