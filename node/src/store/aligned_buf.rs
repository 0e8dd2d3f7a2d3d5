//! A heap buffer aligned for O_DIRECT, usable as an owned io_uring buffer by monoio.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut};

use super::format::ALIGN;
use super::pool_memory::PoolMemory;
use super::uncached_copy::copy_uncached;

/// A fixed-capacity byte buffer whose start address and capacity are multiples of 4096.
///
/// The whole capacity is zero-initialised at allocation and stays initialised, so `len` may be
/// set to any value up to the capacity. `len` is what a write submits and what a read filled.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    /// Who owns the bytes behind `ptr`: `None`, a global-allocator block of
    /// `Layout(cap, ALIGN)` freed on drop; `Some`, a range of a pool's mapping, which this
    /// keeps alive.
    pool_memory: Option<Arc<PoolMemory>>,
}

impl AlignedBuf {
    /// Allocates `cap` zeroed bytes; `cap` must be a non-zero multiple of 4096.
    pub fn new(cap: usize) -> AlignedBuf {
        assert!(
            cap > 0 && cap.is_multiple_of(ALIGN as usize),
            "AlignedBuf capacity {cap} is not a non-zero multiple of {ALIGN}"
        );
        let layout = Self::layout(cap);
        // SAFETY: `layout` has a non-zero size (checked above) and a valid power-of-two alignment.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf {
            ptr,
            cap,
            len: 0,
            pool_memory: None,
        }
    }

    /// The buffer over `[offset, offset + cap)` of `memory`, or `None` when that range is not
    /// inside it or not 4096-aligned.
    ///
    /// # Safety
    ///
    /// No other live `AlignedBuf` may cover any byte of the range: each buffer hands out
    /// `&mut` access to all of its bytes.
    pub unsafe fn in_pool_memory(
        memory: &Arc<PoolMemory>,
        offset: usize,
        cap: usize,
    ) -> Option<Self> {
        let align = ALIGN as usize;
        if cap == 0 || !cap.is_multiple_of(align) || !offset.is_multiple_of(align) {
            return None;
        }
        let ptr = memory.slice_ptr(offset, cap)?;
        Some(AlignedBuf {
            ptr,
            cap,
            len: 0,
            pool_memory: Some(Arc::clone(memory)),
        })
    }

    fn layout(cap: usize) -> Layout {
        match Layout::from_size_align(cap, ALIGN as usize) {
            Ok(l) => l,
            Err(_) => panic!("AlignedBuf capacity {cap} overflows a Layout"),
        }
    }

    /// Whether this buffer is a range of a pool's mapping (else a heap block).
    pub fn is_in_pool_memory(&self) -> bool {
        self.pool_memory.is_some()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Remaining room after `len`.
    pub fn spare(&self) -> usize {
        self.cap - self.len
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Sets the length; every byte up to the capacity is always initialised.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "len {len} beyond capacity {}", self.cap);
        self.len = len;
    }

    /// Appends as much of `data` as fits and returns how many bytes were taken. Long pieces
    /// bypass the cache (`uncached_copy.rs`): what goes into these buffers goes to the disk,
    /// not back to the CPU.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.spare());
        let start = self.len;
        copy_uncached(&mut self.full_mut()[start..start + n], &data[..n]);
        self.len += n;
        n
    }

    /// Zero-fills from `len` up to the next multiple of 4096 and extends `len` to it, so that a
    /// short tail can be written with O_DIRECT.
    pub fn pad_to_alignment(&mut self) {
        let padded = (self.len as u64).div_ceil(ALIGN) as usize * ALIGN as usize;
        let start = self.len;
        self.full_mut()[start..padded].fill(0);
        self.len = padded;
    }

    /// The filled bytes `[0, len)`.
    pub fn as_slice(&self) -> &[u8] {
        &self.full()[..self.len]
    }

    /// The filled bytes `[0, len)`, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.full_mut()[..len]
    }

    fn full(&self) -> &[u8] {
        // SAFETY: `ptr` points to `cap` bytes owned by this buffer, all initialised (zeroed at
        // allocation, or by the kernel for pool memory; only ever overwritten with bytes), and
        // the shared borrow of `self` prevents any mutable access for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }

    fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `full`, and the exclusive borrow of `self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.pool_memory.is_none() {
            // SAFETY: without pool memory, `ptr` was returned by `alloc_zeroed` with exactly this
            // layout and is freed once, here.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
        }
    }
}

// SAFETY: AlignedBuf uniquely owns its allocation or its range of a pool's mapping (like
// `Box<[u8]>`); nothing else aliases it, and `PoolMemory` is itself `Send + Sync`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`, which is safe to share between threads.
unsafe impl Sync for AlignedBuf {}

// SAFETY: `read_ptr` is the start of a heap allocation that does not move when the AlignedBuf
// value moves, and `bytes_init` (`len`) never exceeds the allocation's initialised size.
unsafe impl IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: `write_ptr` is the stable heap address of `cap` writable bytes; `bytes_total` is that
// capacity; any `set_init` position up to the capacity is initialised memory.
unsafe impl IoBufMut for AlignedBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        self.cap
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.set_len(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_fills() {
        let mut b = AlignedBuf::new(8192);
        assert_eq!(b.read_ptr() as usize % 4096, 0);
        assert_eq!(b.capacity(), 8192);
        assert!(b.is_empty());
        assert_eq!(b.extend_from_slice(&[1, 2, 3]), 3);
        assert_eq!(b.as_slice(), &[1, 2, 3]);
        b.pad_to_alignment();
        assert_eq!(b.len(), 4096);
        assert!(b.as_slice()[3..].iter().all(|&x| x == 0));
        let big = vec![9u8; 10_000];
        assert_eq!(b.extend_from_slice(&big), 4096);
        assert_eq!(b.spare(), 0);
        b.clear();
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn buffers_in_pool_memory_are_disjoint_and_zeroed() {
        let memory = Arc::new(PoolMemory::reserve(2 << 20).expect("mmap"));
        // SAFETY: the two ranges are disjoint, and nothing else covers them.
        let mut a = unsafe { AlignedBuf::in_pool_memory(&memory, 0, 1 << 20) }.unwrap();
        // SAFETY: as above.
        let mut b = unsafe { AlignedBuf::in_pool_memory(&memory, 1 << 20, 1 << 20) }.unwrap();
        assert_eq!(a.read_ptr() as usize % 4096, 0);
        a.set_len(a.capacity());
        b.set_len(b.capacity());
        assert!(a.as_slice().iter().all(|&x| x == 0));
        a.as_mut_slice().fill(1);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        drop(memory);
        // The buffers keep the mapping alive.
        assert!(a.as_slice().iter().all(|&x| x == 1));
        let fresh = Arc::new(PoolMemory::reserve(2 << 20).unwrap());
        // SAFETY: `fresh` has no buffers; the calls are refused before making one.
        unsafe {
            assert!(AlignedBuf::in_pool_memory(&fresh, 4096, 2 << 20).is_none());
            assert!(AlignedBuf::in_pool_memory(&fresh, 100, 4096).is_none());
        }
    }

    #[test]
    #[should_panic(expected = "not a non-zero multiple")]
    fn unaligned_capacity_is_refused() {
        let _ = AlignedBuf::new(1000);
    }
}
