//! The shard's bounded pool of aligned I/O buffers: all data-path memory of the store.
//!
//! `acquire` waits when every buffer is out. That wait is the store's backpressure: a put that
//! cannot get a buffer stops pulling bytes from its stream, so memory stays flat however fast
//! the network is.
//!
//! A read hands its verified block on without copying it ([`PooledBuf::lend`]): the buffer
//! leaves the pool as `Bytes` and a replacement takes its place at once, so the pool never waits
//! for a consumer. Lent buffers come back, from whichever thread drops the last `Bytes`, to a
//! store of returns (at most twice the pool's count) that later replacements are taken from.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut, Range};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use monoio::buf::{IoBuf, IoBufMut};

use super::aligned_buf::AlignedBuf;
use super::local_sync::Semaphore;
use super::pool_memory::PoolMemory;

/// A cheap handle (clone = same pool) to a fixed number of equal aligned buffers.
#[derive(Clone)]
pub struct BufferPool {
    inner: Rc<PoolInner>,
}

struct PoolInner {
    buf_size: usize,
    count: usize,
    free: RefCell<Vec<AlignedBuf>>,
    /// One permit per buffer not handed out.
    permits: Semaphore,
    /// Buffers allocated so far (allocation is lazy, up to `count`).
    allocated: Cell<usize>,
    /// Room for `2 x count` buffers, when the pool is big enough for huge pages and the kernel
    /// gave the mapping: the pool's own and as many replacements for lent ones. Buffers past
    /// that, or without the mapping, are each their own heap block.
    memory: Option<Arc<PoolMemory>>,
    /// Buffers carved from `memory` so far (slot `i` at `i x buf_size`).
    carved: Cell<usize>,
    /// Buffers lent out as `Bytes` and dropped since, at most `2 x count` of them, those carved
    /// from `memory` before heap ones, so that none of its slots is ever lost.
    returns: Arc<Returns>,
}

impl PoolInner {
    /// A new empty buffer: the next slot of the pool's memory while there is one, else a heap
    /// block.
    fn new_buffer(&self) -> AlignedBuf {
        let size = self.buf_size;
        if let Some(memory) = &self.memory {
            let slot = self.carved.get();
            // SAFETY: slot `i` covers `[i x size, (i + 1) x size)`, disjoint from every other
            // slot, and each slot is carved once: `carved` only grows.
            if let Some(buf) = unsafe { AlignedBuf::in_pool_memory(memory, slot * size, size) } {
                self.carved.set(slot + 1);
                return buf;
            }
        }
        AlignedBuf::new(size)
    }
}

/// Where lent buffers go back to; shared with every `Bytes` a lend made, which may be dropped
/// on any thread.
struct Returns {
    bufs: Mutex<Vec<AlignedBuf>>,
    keep: usize,
}

impl Returns {
    fn lock(&self) -> MutexGuard<'_, Vec<AlignedBuf>> {
        // A panic while holding the lock cannot leave the Vec half-updated (push and pop only).
        self.bufs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Option<AlignedBuf> {
        self.lock().pop()
    }

    /// Keeps `buf` for a later replacement. When `keep` are kept already, a buffer of the
    /// pool's mapping takes the place of a heap one (so no slot of the mapping is ever lost),
    /// and a heap one is freed.
    fn give_back(&self, mut buf: AlignedBuf) {
        buf.clear();
        let mut bufs = self.lock();
        if bufs.len() < self.keep {
            bufs.push(buf);
            return;
        }
        let freed = match bufs.iter().position(|b| !b.is_in_pool_memory()) {
            Some(heap) if buf.is_in_pool_memory() => std::mem::replace(&mut bufs[heap], buf),
            _ => buf,
        };
        drop(bufs);
        drop(freed);
    }
}

/// The owner behind the `Bytes` of a lend: the buffer, and where it goes when they drop.
struct Lent {
    buf: Option<AlignedBuf>,
    returns: Arc<Returns>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        match &self.buf {
            Some(b) => b.as_slice(),
            None => &[],
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.returns.give_back(buf);
        }
    }
}

impl BufferPool {
    /// `count` buffers of `buf_size` bytes (a multiple of 4096). Memory is allocated on first use.
    pub fn new(count: usize, buf_size: usize) -> BufferPool {
        let memory = count
            .checked_mul(buf_size)
            .and_then(|bytes| bytes.checked_mul(2))
            .and_then(PoolMemory::reserve)
            .map(Arc::new);
        BufferPool {
            inner: Rc::new(PoolInner {
                buf_size,
                count,
                free: RefCell::new(Vec::with_capacity(count)),
                permits: Semaphore::new(count),
                allocated: Cell::new(0),
                memory,
                carved: Cell::new(0),
                returns: Arc::new(Returns {
                    bufs: Mutex::new(Vec::new()),
                    keep: count.saturating_mul(2),
                }),
            }),
        }
    }

    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    pub fn capacity(&self) -> usize {
        self.inner.count
    }

    /// Buffers that can be taken right now without waiting.
    pub fn available(&self) -> usize {
        self.inner.permits.available()
    }

    /// Buffers allocated for the pool itself so far (never more than `capacity`); replacements
    /// for lent buffers are not counted.
    pub fn allocated(&self) -> usize {
        self.inner.allocated.get()
    }

    /// Lent buffers that came back and wait to replace the next ones lent.
    pub fn returned(&self) -> usize {
        self.inner.returns.lock().len()
    }

    /// Waits until a buffer is free (FIFO among waiters) and takes it, empty.
    pub async fn acquire(&self) -> PooledBuf {
        self.inner.permits.acquire().await;
        self.take()
    }

    /// Takes a buffer only if one is free now.
    pub fn try_acquire(&self) -> Option<PooledBuf> {
        if self.inner.permits.try_acquire() {
            Some(self.take())
        } else {
            None
        }
    }

    /// Called with a permit held.
    fn take(&self) -> PooledBuf {
        let buf = self.inner.free.borrow_mut().pop().unwrap_or_else(|| {
            self.inner.allocated.set(self.inner.allocated.get() + 1);
            self.inner.new_buffer()
        });
        PooledBuf {
            buf: Some(buf),
            pool: self.inner.clone(),
        }
    }
}

/// A buffer on loan from a [`BufferPool`]; it goes back (and wakes the next waiter) on drop.
pub struct PooledBuf {
    buf: Option<AlignedBuf>,
    pool: Rc<PoolInner>,
}

impl PooledBuf {
    fn get(&self) -> &AlignedBuf {
        match &self.buf {
            Some(b) => b,
            None => unreachable!("PooledBuf is only empty while being dropped"),
        }
    }

    fn get_mut(&mut self) -> &mut AlignedBuf {
        match &mut self.buf {
            Some(b) => b,
            None => unreachable!("PooledBuf is only empty while being dropped"),
        }
    }
}

impl PooledBuf {
    /// Hands bytes `range` of the filled part out as `Bytes`, without copying them. The pool
    /// gets a replacement buffer at once (one that came back from an earlier lend, or a new
    /// one) and its permit back, so whoever holds the `Bytes` holds no pool buffer: the memory
    /// they pin is the reader's, as a copy's would be. Panics if `range` is outside `len`.
    pub fn lend(mut self, range: Range<usize>) -> Bytes {
        let replacement = self
            .pool
            .returns
            .take()
            .unwrap_or_else(|| self.pool.new_buffer());
        let buf = self.buf.replace(replacement);
        let lent = Lent {
            buf,
            returns: Arc::clone(&self.pool.returns),
        };
        // `self` drops here: the replacement goes into the pool and the permit is released.
        drop(self);
        Bytes::slice(&Bytes::from_owner(lent), range)
    }
}

impl Deref for PooledBuf {
    type Target = AlignedBuf;
    fn deref(&self) -> &AlignedBuf {
        self.get()
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut AlignedBuf {
        self.get_mut()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(mut b) = self.buf.take() {
            b.clear();
            self.pool.free.borrow_mut().push(b);
            self.pool.permits.release();
        }
    }
}

// SAFETY: delegates to the inner AlignedBuf, whose heap address is stable while the PooledBuf
// (and thus the AlignedBuf) is owned by an in-flight operation.
unsafe impl IoBuf for PooledBuf {
    fn read_ptr(&self) -> *const u8 {
        self.get().read_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.get().bytes_init()
    }
}

// SAFETY: delegates to the inner AlignedBuf (stable address, `bytes_total` = its capacity).
unsafe impl IoBufMut for PooledBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.get_mut().write_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        self.get_mut().bytes_total()
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.get_mut().set_len(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pool_never_hands_out_more_than_its_count() {
        let pool = BufferPool::new(3, 4096);
        let a = pool.try_acquire().expect("1st");
        let b = pool.try_acquire().expect("2nd");
        let c = pool.try_acquire().expect("3rd");
        assert!(pool.try_acquire().is_none());
        assert_eq!(pool.available(), 0);
        assert_eq!(pool.allocated(), 3);
        drop(b);
        assert_eq!(pool.available(), 1);
        let d = pool.try_acquire().expect("reuse");
        // Reused, not newly allocated.
        assert_eq!(pool.allocated(), 3);
        assert!(d.is_empty());
        drop((a, c, d));
        assert_eq!(pool.available(), 3);
    }

    #[test]
    fn a_pool_of_whole_huge_pages_lays_its_buffers_side_by_side() {
        let size = 1 << 20;
        let pool = BufferPool::new(4, size);
        let held: Vec<PooledBuf> = (0..4).map(|_| pool.try_acquire().unwrap()).collect();
        let base = held[0].read_ptr() as usize;
        assert_eq!(base % super::super::pool_memory::HUGE_PAGE, 0);
        for (i, b) in held.iter().enumerate() {
            assert_eq!(b.read_ptr() as usize, base + i * size);
            assert_eq!(b.capacity(), size);
        }
        assert!(pool.try_acquire().is_none());
    }

    #[test]
    fn a_lent_buffer_frees_its_pool_slot_at_once_and_comes_back_when_dropped() {
        let pool = BufferPool::new(1, 4096);
        let mut a = pool.try_acquire().unwrap();
        a.extend_from_slice(b"hello, world");
        let lent_at = a.read_ptr();
        let bytes = a.lend(7..12);
        assert_eq!(&bytes[..], b"world");
        assert_eq!(bytes.as_ptr(), lent_at.wrapping_add(7), "no copy");
        // The pool has its one buffer again (a replacement), empty, while the Bytes live.
        let mut b = pool.try_acquire().expect("the slot was given back");
        assert!(b.is_empty());
        assert_ne!(b.read_ptr(), lent_at);
        assert_eq!(pool.returned(), 0);
        // Dropped on another thread, the lent buffer goes to the returns...
        let clone = bytes.clone();
        std::thread::spawn(move || drop(bytes)).join().unwrap();
        assert_eq!(pool.returned(), 0, "still held by the clone");
        drop(clone);
        assert_eq!(pool.returned(), 1);
        // ...and replaces the next buffer lent, instead of a new allocation.
        b.extend_from_slice(b"x");
        let c = b.lend(0..1);
        assert_eq!(pool.returned(), 0);
        assert_eq!(pool.try_acquire().unwrap().read_ptr(), lent_at);
        drop(c);
        assert_eq!(pool.returned(), 1);
        assert_eq!(pool.allocated(), 1);
    }

    #[test]
    fn an_empty_lend_gives_its_buffer_straight_back() {
        let pool = BufferPool::new(1, 4096);
        let bytes = pool.try_acquire().unwrap().lend(0..0);
        assert!(bytes.is_empty());
        assert_eq!(pool.returned(), 1);
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn replacements_for_lent_buffers_come_from_the_pool_memory_while_it_has_room() {
        let size = 1 << 20;
        let pool = BufferPool::new(2, size);
        let first = pool.try_acquire().unwrap();
        let base = first.read_ptr() as usize;
        let in_memory = |p: *const u8| (base..base + 4 * size).contains(&(p as usize));
        drop(first);
        // Four lends of the one buffer: each replacement is a new slot of the mapping (slots
        // 1, 2, 3), and the fourth, past its 2 x 2 slots, a heap block.
        let mut lent = Vec::new();
        for _ in 0..4 {
            let mut b = pool.try_acquire().unwrap();
            b.extend_from_slice(b"x");
            assert!(in_memory(b.read_ptr()));
            lent.push(b.lend(0..1));
        }
        let last = pool.try_acquire().unwrap();
        assert!(!in_memory(last.read_ptr()), "the mapping is used up");
        drop(last);
        drop(lent);
        // All four carved buffers came back and are kept.
        assert_eq!(pool.returned(), 4);
    }

    #[test]
    fn full_returns_keep_buffers_of_the_mapping_over_heap_ones() {
        let size = 1 << 20;
        // One buffer: a mapping of two slots, returns keeping two.
        let pool = BufferPool::new(1, size);
        let mut lent = Vec::new();
        for _ in 0..4 {
            let mut b = pool.try_acquire().unwrap();
            b.extend_from_slice(b"x");
            lent.push(b.lend(0..1));
        }
        // Lent: slot 0, slot 1, then two heap blocks. The heap ones come back first and fill
        // the returns; the two of the mapping then take their places.
        let from_mapping: Vec<Bytes> = lent.drain(..2).collect();
        drop(lent);
        assert_eq!(pool.returned(), 2);
        drop(from_mapping);
        assert_eq!(pool.returned(), 2);
        let kept = pool.inner.returns.lock();
        assert!(kept.iter().all(|b| b.is_in_pool_memory()));
    }

    #[test]
    fn returns_keep_at_most_twice_the_pool_count() {
        let pool = BufferPool::new(2, 4096);
        let lent: Vec<Bytes> = (0..7)
            .map(|_| {
                let mut b = pool.try_acquire().unwrap();
                b.extend_from_slice(b"x");
                b.lend(0..1)
            })
            .collect();
        assert_eq!(pool.available(), 2);
        drop(lent);
        assert_eq!(pool.returned(), 4);
    }

    #[test]
    fn returned_buffer_comes_back_empty() {
        let pool = BufferPool::new(1, 4096);
        let mut a = pool.try_acquire().unwrap();
        a.extend_from_slice(b"hello");
        drop(a);
        assert!(pool.try_acquire().unwrap().is_empty());
    }

    #[test]
    fn acquire_waits_until_a_buffer_is_returned() {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let pool = BufferPool::new(2, 4096);
            let held = vec![pool.acquire().await, pool.acquire().await];
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut waiters = Vec::new();
            for i in 0..3 {
                let (pool, order) = (pool.clone(), order.clone());
                waiters.push(monoio::spawn(async move {
                    let b = pool.acquire().await;
                    order.borrow_mut().push(i);
                    b
                }));
            }
            // Let every waiter run and block.
            monoio::time::sleep(Duration::from_millis(1)).await;
            assert!(order.borrow().is_empty(), "no waiter may get a buffer yet");
            drop(held);
            // Waiters 0 and 1 get the two buffers, in arrival order; 2 keeps waiting.
            let mut waiters = waiters.into_iter();
            let b0 = waiters.next().unwrap().await;
            let b1 = waiters.next().unwrap().await;
            assert_eq!(*order.borrow(), vec![0, 1]);
            assert_eq!(pool.available(), 0);
            drop(b0);
            let b2 = waiters.next().unwrap().await;
            assert_eq!(*order.borrow(), vec![0, 1, 2]);
            drop((b1, b2));
            assert_eq!(pool.available(), 2);
            assert_eq!(pool.allocated(), 2);
        });
    }
}
