//! The shard's bounded pool of aligned I/O buffers: all data-path memory of the store.
//!
//! `acquire` waits when every buffer is out. That wait is the store's backpressure: a put that
//! cannot get a buffer stops pulling bytes from its stream, so memory stays flat however fast
//! the network is.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut};

use super::aligned_buf::AlignedBuf;
use super::local_sync::Semaphore;

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
}

impl BufferPool {
    /// `count` buffers of `buf_size` bytes (a multiple of 4096). Memory is allocated on first use.
    pub fn new(count: usize, buf_size: usize) -> BufferPool {
        BufferPool {
            inner: Rc::new(PoolInner {
                buf_size,
                count,
                free: RefCell::new(Vec::with_capacity(count)),
                permits: Semaphore::new(count),
                allocated: Cell::new(0),
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

    /// Buffers allocated so far (never more than `capacity`).
    pub fn allocated(&self) -> usize {
        self.inner.allocated.get()
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
            AlignedBuf::new(self.inner.buf_size)
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
