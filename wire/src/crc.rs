//! crc32c (CRC-32C, Castagnoli; "CRC-32/ISCSI") of the data path: the checksum of every block
//! a node stores and of every part the gateway sends or receives.
//!
//! The same function as the `crc32c` crate's `crc32c` / `crc32c_append` (the tests compare
//! them), computed by `crc-fast`, which picks at run time the widest carry-less multiply the CPU
//! has (VPCLMULQDQ with AVX-512, PCLMULQDQ with SSE4.1, ...; a table fallback elsewhere), so a
//! baseline x86-64 build still folds 64 bytes per instruction where the CPU allows. The `crc32c`
//! crate dispatches at run time too, but only to the SSE4.2 `crc32` instruction, 8 bytes at a
//! time.

/// crc32c of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// crc32c of the bytes whose crc32c is `crc`, followed by `bytes`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    // crc-fast's state is the shift register before the final inversion.
    let mut digest =
        crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(bytes);
    // A 32-bit CRC's state and result fit 32 bits.
    digest.finalize() as u32
}

/// Appending `n` bytes to a crc32c, as an operator: `x^(8n) mod P`, so that the crc32c of `A ‖ B`
/// is [`Shift::combine`] of the crcs of `A` and `B` when `B` has `n` bytes. Made once for a
/// length, it combines in about 32 steps; the `crc32c` crate's `crc32c_combine` builds the
/// operator again on each call (about 20 squarings of a 32 × 32 matrix for 1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift(u32);

/// The reflected CRC-32C polynomial.
const POLY: u32 = 0x82f6_3b78;

impl Shift {
    /// The operator for `n` bytes.
    pub fn bytes(n: u64) -> Shift {
        // x^(2^k) mod P for k = 3 (one byte) upwards: square as we go.
        let mut power = x_pow_2k(3);
        let mut op = 1u32 << 31; // x^0
        let mut n = n;
        while n != 0 {
            if n & 1 != 0 {
                op = mul_mod_p(power, op);
            }
            power = mul_mod_p(power, power);
            n >>= 1;
        }
        Shift(op)
    }

    /// crc32c of `A ‖ B` from `crc_a` and `crc_b`, `B` having the operator's length.
    pub fn combine(self, crc_a: u32, crc_b: u32) -> u32 {
        mul_mod_p(self.0, crc_a) ^ crc_b
    }
}

/// crc32c of `A ‖ B` from the crcs of `A` and of `B` (`len_b` bytes); as `crc32c_combine` of the
/// `crc32c` crate.
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    Shift::bytes(len_b).combine(crc_a, crc_b)
}

/// x^(2^k) mod P.
fn x_pow_2k(k: u32) -> u32 {
    let mut p = 1u32 << 30; // x^1
    for _ in 0..k {
        p = mul_mod_p(p, p);
    }
    p
}

/// a × b mod P, bit-reflected (bit 31 is x^0).
fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut product = 0u32;
    let mut m = 1u32 << 31;
    while m != 0 {
        if a & m != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        m >>= 1;
    }
    product
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
            .collect()
    }

    #[test]
    fn check_value() {
        // The catalogue's check value of CRC-32/ISCSI.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn equals_the_crc32c_crate_for_every_length() {
        let bytes = data(5000);
        for len in (0..300).chain([511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097, 5000]) {
            assert_eq!(
                crc32c(&bytes[..len]),
                ::crc32c::crc32c(&bytes[..len]),
                "length {len}"
            );
        }
        let big = data(3 << 20);
        assert_eq!(crc32c(&big), ::crc32c::crc32c(&big));
    }

    #[test]
    fn append_equals_the_crc32c_crate_whatever_the_pieces() {
        let bytes = data(200_003);
        let expected = ::crc32c::crc32c(&bytes);
        for piece in [1, 3, 64, 255, 256, 1400, 4096, 65_536, 100_000] {
            let mut crc = 0;
            for chunk in bytes.chunks(piece) {
                crc = crc32c_append(crc, chunk);
            }
            assert_eq!(crc, expected, "pieces of {piece}");
        }
        // Appending to a crc the other crate made, and the other way round.
        let (a, b) = bytes.split_at(70_001);
        assert_eq!(crc32c_append(::crc32c::crc32c(a), b), expected);
        assert_eq!(::crc32c::crc32c_append(crc32c(a), b), expected);
    }

    #[test]
    fn combine_equals_the_crc32c_crate() {
        let bytes = data(3 << 20);
        for split in [
            0usize,
            1,
            2,
            3,
            100,
            4096,
            65_536,
            1 << 20,
            (1 << 20) + 7,
            3 << 20,
        ] {
            let (a, b) = bytes.split_at(split);
            let (ca, cb) = (::crc32c::crc32c(a), ::crc32c::crc32c(b));
            let expected = ::crc32c::crc32c(&bytes);
            assert_eq!(
                crc32c_combine(ca, cb, b.len() as u64),
                expected,
                "split {split}"
            );
            assert_eq!(
                crc32c_combine(ca, cb, b.len() as u64),
                ::crc32c::crc32c_combine(ca, cb, b.len()),
                "split {split}"
            );
        }
        for (a, b, n) in [(0, 0, 0u64), (0xdead_beef, 0x1234_5678, 1), (1, 2, 1 << 40)] {
            assert_eq!(
                crc32c_combine(a, b, n),
                ::crc32c::crc32c_combine(a, b, n as usize),
                "{a:#x} {b:#x} {n}"
            );
        }
    }

    #[test]
    fn one_shift_combines_many_blocks() {
        let block = 1usize << 16;
        let bytes = data(5 * block);
        let shift = Shift::bytes(block as u64);
        let combined = bytes
            .chunks(block)
            .fold(0, |acc, c| shift.combine(acc, ::crc32c::crc32c(c)));
        assert_eq!(combined, ::crc32c::crc32c(&bytes));
    }
}
