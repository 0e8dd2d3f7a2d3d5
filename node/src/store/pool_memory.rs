//! One anonymous mapping for a whole buffer pool, backed by transparent huge pages.
//!
//! Every O_DIRECT read and write pins the pages of its buffer for the length of the I/O. With
//! 4 KiB pages that is 256 page references taken and dropped per 1 MiB block, a few per cent of
//! the node's CPU (`gup_fast_fallback` in a profile). With the pool's memory in 2 MiB huge
//! pages the kernel pins one large folio per I/O instead. The mapping only reserves address
//! space: a page is allocated (zeroed, by the kernel) when first touched, so the pool's memory
//! still grows on first use, and never beyond what was reserved.
//!
//! Huge pages are a hint (`MADV_HUGEPAGE`, honoured when the host's THP mode is `always` or
//! `madvise`); where the kernel has none to give, the same mapping works with small pages.
//! The pool never gives its memory back, so each huge page is faulted in once for the life of
//! the process: a host whose THP `defrag` setting compacts memory on such faults pays that once
//! per 2 MiB of the pool, not per I/O.

use std::ptr::NonNull;

/// Size of an x86-64 / aarch64 transparent huge page (PMD size).
pub const HUGE_PAGE: usize = 2 << 20;

/// An anonymous private mapping, `HUGE_PAGE`-aligned, unmapped on drop.
pub struct PoolMemory {
    /// What `mmap` returned (unaligned) and its length: what `munmap` takes back.
    map: NonNull<u8>,
    map_len: usize,
    /// The aligned start of the usable bytes, and how many there are.
    start: NonNull<u8>,
    len: usize,
}

impl PoolMemory {
    /// Reserves `len` bytes (rounded up to a whole number of huge pages), or `None` when the
    /// pool is too small for a huge page to pay or the kernel refuses the mapping.
    pub fn reserve(len: usize) -> Option<PoolMemory> {
        if len < HUGE_PAGE {
            return None;
        }
        let len = len.checked_next_multiple_of(HUGE_PAGE)?;
        let map_len = len.checked_add(HUGE_PAGE)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing aliases
        // nothing; the result is checked against MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let map = NonNull::new(raw.cast::<u8>())?;
        let skip = (map.as_ptr() as usize).next_multiple_of(HUGE_PAGE) - map.as_ptr() as usize;
        // SAFETY: `skip < HUGE_PAGE`, so `map + skip .. map + skip + len` lies inside the
        // `map_len = len + HUGE_PAGE` bytes just mapped.
        let start = unsafe { NonNull::new_unchecked(map.as_ptr().add(skip)) };
        // SAFETY: the range is inside our own mapping. A refusal (THP compiled out, mode
        // `never`) leaves small pages, which is only slower, so the result is not an error.
        let _ = unsafe { libc::madvise(start.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        Some(PoolMemory {
            map,
            map_len,
            start,
            len,
        })
    }

    /// Usable bytes (a multiple of [`HUGE_PAGE`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// The start of `[offset, offset + size)`, if that range lies inside the usable bytes.
    /// The bytes are zero until written: anonymous memory is zero-filled by the kernel.
    pub fn slice_ptr(&self, offset: usize, size: usize) -> Option<NonNull<u8>> {
        let end = offset.checked_add(size)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `offset + size <= len`, checked above, so the pointer stays inside the
        // usable bytes of the mapping.
        Some(unsafe { NonNull::new_unchecked(self.start.as_ptr().add(offset)) })
    }
}

impl Drop for PoolMemory {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly what mmap returned, unmapped once, here. Every
        // buffer carved from this memory holds an `Arc<PoolMemory>`, so none outlives it.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

// SAFETY: the mapping is plain memory owned by this value; which bytes may be touched through
// which buffer is arbitrated by the pool, which carves disjoint ranges.
unsafe impl Send for PoolMemory {}
// SAFETY: `PoolMemory` itself hands out only raw pointers and its length.
unsafe impl Sync for PoolMemory {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pools_take_no_mapping() {
        assert!(PoolMemory::reserve(0).is_none());
        assert!(PoolMemory::reserve(HUGE_PAGE - 4096).is_none());
    }

    #[test]
    fn mapping_is_aligned_rounded_up_and_zero() {
        let m = PoolMemory::reserve(3 << 20).expect("mmap");
        assert_eq!(m.len(), 4 << 20);
        let p = m.slice_ptr(0, m.len()).unwrap();
        assert_eq!(p.as_ptr() as usize % HUGE_PAGE, 0);
        // SAFETY: the whole usable range belongs to `m`, and nothing else refers to it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), m.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[m.len() - 1] = 7;
        assert_eq!(bytes[m.len() - 1], 7);
    }

    #[test]
    fn ranges_outside_the_mapping_are_refused() {
        let m = PoolMemory::reserve(HUGE_PAGE).expect("mmap");
        assert!(m.slice_ptr(HUGE_PAGE - 4096, 4096).is_some());
        assert!(m.slice_ptr(HUGE_PAGE - 4096, 4097).is_none());
        assert!(m.slice_ptr(usize::MAX, 2).is_none());
    }
}
