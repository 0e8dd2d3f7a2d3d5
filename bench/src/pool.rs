//! A pool of fixed-size buffers that come back when the `Bytes` made from them is dropped, so a
//! 10 GiB upload reuses a handful of buffers instead of allocating 10 240 of them.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Cheap to clone; clones share the free list.
#[derive(Clone)]
pub struct BufPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    buf_size: usize,
    max_free: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

/// A buffer on loan from the pool; returns itself when dropped.
pub struct PooledBuf {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<PoolInner>,
}

impl BufPool {
    /// Buffers of `buf_size` bytes; at most `max_free` idle ones are kept.
    pub fn new(buf_size: usize, max_free: usize) -> Self {
        BufPool {
            inner: Arc::new(PoolInner {
                buf_size,
                max_free,
                free: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// A buffer whose full `buf_size` bytes are writable; `len` starts at `buf_size`.
    pub fn take(&self) -> PooledBuf {
        let reused = match self.inner.free.lock() {
            Ok(mut free) => free.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        let buf = reused.unwrap_or_else(|| vec![0u8; self.inner.buf_size]);
        PooledBuf {
            len: buf.len(),
            buf,
            pool: Arc::clone(&self.inner),
        }
    }

    /// Idle buffers held right now.
    pub fn idle(&self) -> usize {
        match self.inner.free.lock() {
            Ok(free) => free.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }
}

impl PooledBuf {
    /// The whole writable buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Keeps only the first `len` bytes visible (for the last, shorter piece of a stream).
    pub fn truncate(&mut self, len: usize) {
        self.len = len.min(self.buf.len());
    }

    /// Hands the buffer to `Bytes` without copying; it returns to the pool when the last
    /// `Bytes` referring to it is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = match self.pool.free.lock() {
            Ok(free) => free,
            Err(poisoned) => poisoned.into_inner(),
        };
        if free.len() < self.pool.max_free {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_bytes_are_dropped() {
        let pool = BufPool::new(1024, 2);
        let mut a = pool.take();
        a.as_mut_slice()[0] = 7;
        a.truncate(10);
        let bytes = a.freeze();
        assert_eq!(bytes.len(), 10);
        assert_eq!(bytes[0], 7);
        let clone = bytes.slice(2..5);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "still referenced by a slice");
        drop(clone);
        assert_eq!(pool.idle(), 1);
        let b = pool.take();
        assert_eq!(pool.idle(), 0);
        assert_eq!(b.as_ref().len(), 1024, "a reused buffer is whole again");
        assert_eq!(b.as_ref()[0], 7, "the same memory came back");
    }

    #[test]
    fn keeps_at_most_max_free() {
        let pool = BufPool::new(16, 2);
        let bufs: Vec<_> = (0..5).map(|_| pool.take()).collect();
        drop(bufs);
        assert_eq!(pool.idle(), 2);
    }
}
