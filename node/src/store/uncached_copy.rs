//! Copying received bytes into an O_DIRECT buffer with non-temporal stores.
//!
//! A put copies every byte it receives into a pool buffer that the CPU never reads again: the
//! disk takes it by DMA. Ordinary stores first fetch each destination line into the cache
//! (read-for-ownership) and then push out cache lines the next packets need. With six shards
//! and the gateway sharing the caches, a pool buffer comes back cold, so the copy ran at
//! memory speed twice over (about 6 GB/s in the node's upload profile). Non-temporal stores
//! write whole lines to memory without fetching them. SSE2 has them and is part of baseline
//! x86-64, so no run-time dispatch is needed.
//!
//! Short copies (headers, tables, the tail of a block) stay ordinary: they are few, and a
//! fence per copy costs more than it saves on them.

/// Copies shorter than this use ordinary stores.
pub const UNCACHED_MIN: usize = 4096;

/// Copies `src` into `dst` (same length), bypassing the cache where the CPU allows.
///
/// Panics if the lengths differ, like `copy_from_slice`.
pub fn copy_uncached(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_uncached: destination and source lengths differ"
    );
    #[cfg(target_arch = "x86_64")]
    if src.len() >= UNCACHED_MIN {
        sse2::copy(dst, src);
        return;
    }
    dst.copy_from_slice(src);
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

    const LANE: usize = 16;
    const STEP: usize = 4 * LANE;

    /// `dst.len() == src.len()` (checked by the caller).
    pub(super) fn copy(dst: &mut [u8], src: &[u8]) {
        let len = src.len();
        // Non-temporal 16-byte stores need a 16-byte-aligned address: the bytes before the
        // first aligned one are copied as usual.
        let head = dst.as_ptr().align_offset(LANE).min(len);
        dst[..head].copy_from_slice(&src[..head]);
        let body = (len - head) / STEP * STEP;
        let d = dst[head..head + body].as_mut_ptr();
        let s = src[head..head + body].as_ptr();
        let mut i = 0;
        while i < body {
            // SAFETY: `i + STEP <= body`, so all four 16-byte loads are inside `src[head..][..body]`
            // (unaligned loads are allowed) and all four stores inside `dst[head..][..body]`,
            // whose start is 16-byte aligned (`head` is its alignment offset) and `i` a multiple
            // of 16. SSE2 is part of every x86-64 CPU. `dst` is borrowed mutably, so nothing
            // else reads or writes these bytes meanwhile.
            unsafe {
                let a = _mm_loadu_si128(s.add(i).cast::<__m128i>());
                let b = _mm_loadu_si128(s.add(i + LANE).cast::<__m128i>());
                let c = _mm_loadu_si128(s.add(i + 2 * LANE).cast::<__m128i>());
                let e = _mm_loadu_si128(s.add(i + 3 * LANE).cast::<__m128i>());
                _mm_stream_si128(d.add(i).cast::<__m128i>(), a);
                _mm_stream_si128(d.add(i + LANE).cast::<__m128i>(), b);
                _mm_stream_si128(d.add(i + 2 * LANE).cast::<__m128i>(), c);
                _mm_stream_si128(d.add(i + 3 * LANE).cast::<__m128i>(), e);
            }
            i += STEP;
        }
        // Non-temporal stores are weakly ordered: the fence makes them visible before any
        // later store, e.g. the io_uring submission that hands the buffer to the kernel.
        // SAFETY: `sfence` has no preconditions; SSE is part of every x86-64 CPU.
        unsafe { _mm_sfence() };
        let tail = head + body;
        dst[tail..].copy_from_slice(&src[tail..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Every length around the thresholds, at every destination and source alignment in a
    /// 16-byte lane, copies exactly the source and leaves the bytes around it alone.
    #[test]
    fn copies_every_length_and_alignment_exactly() {
        let lengths = [
            0,
            1,
            15,
            16,
            63,
            64,
            65,
            UNCACHED_MIN - 1,
            UNCACHED_MIN,
            UNCACHED_MIN + 1,
            UNCACHED_MIN + 17,
            65_000,
        ];
        let src_all = pattern(65_000 + 64, 7);
        for &len in &lengths {
            for dst_off in 0..17 {
                for src_off in [0, 1, 5, 16] {
                    let mut dst = vec![0xAAu8; len + 64];
                    let src = &src_all[src_off..src_off + len];
                    copy_uncached(&mut dst[dst_off..dst_off + len], src);
                    assert_eq!(
                        &dst[dst_off..dst_off + len],
                        src,
                        "len {len} dst+{dst_off} src+{src_off}"
                    );
                    assert!(
                        dst[..dst_off].iter().all(|&b| b == 0xAA),
                        "before, len {len}"
                    );
                    assert!(
                        dst[dst_off + len..].iter().all(|&b| b == 0xAA),
                        "after, len {len}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn different_lengths_are_refused() {
        let mut dst = [0u8; 8192];
        copy_uncached(&mut dst, &[1u8; 8191]);
    }
}
