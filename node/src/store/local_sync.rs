//! Single-threaded async primitives for one shard (no locks, no atomics): a FIFO semaphore
//! with direct hand-off, a one-shot event and a re-armable notification.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Waiter {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// A counting semaphore. A released permit goes straight to the oldest waiter, so waiters are
/// served in order and a newcomer cannot overtake them.
pub(crate) struct Semaphore {
    permits: Cell<usize>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl Semaphore {
    pub(crate) fn new(permits: usize) -> Semaphore {
        Semaphore {
            permits: Cell::new(permits),
            waiters: RefCell::new(VecDeque::new()),
        }
    }

    pub(crate) fn available(&self) -> usize {
        self.permits.get()
    }

    /// Takes a permit if one is free and nobody is queued before us.
    pub(crate) fn try_acquire(&self) -> bool {
        let p = self.permits.get();
        if p > 0 && self.waiters.borrow().is_empty() {
            self.permits.set(p - 1);
            true
        } else {
            false
        }
    }

    /// Waits for a permit. The caller owns the permit afterwards and must `release` it.
    pub(crate) fn acquire(&self) -> Acquire<'_> {
        Acquire {
            sem: self,
            waiter: None,
            done: false,
        }
    }

    pub(crate) fn release(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        match next {
            Some(w) => {
                w.granted.set(true);
                if let Some(waker) = w.waker.borrow_mut().take() {
                    waker.wake();
                }
            }
            None => self.permits.set(self.permits.get() + 1),
        }
    }

    /// Waits for a permit that is released when the guard drops.
    pub(crate) async fn lock(&self) -> SemaphoreGuard<'_> {
        self.acquire().await;
        SemaphoreGuard { sem: self }
    }
}

pub(crate) struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}

pub(crate) struct Acquire<'a> {
    sem: &'a Semaphore,
    waiter: Option<Rc<Waiter>>,
    done: bool,
}

impl Future for Acquire<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match &this.waiter {
            None => {
                if this.sem.try_acquire() {
                    this.done = true;
                    return Poll::Ready(());
                }
                let w = Rc::new(Waiter {
                    granted: Cell::new(false),
                    waker: RefCell::new(Some(cx.waker().clone())),
                });
                this.sem.waiters.borrow_mut().push_back(w.clone());
                this.waiter = Some(w);
                Poll::Pending
            }
            Some(w) => {
                if w.granted.get() {
                    this.done = true;
                    Poll::Ready(())
                } else {
                    *w.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(w) = self.waiter.take() {
            if w.granted.get() {
                // Granted but never observed: pass the permit on.
                self.sem.release();
            } else {
                self.sem.waiters.borrow_mut().retain(|x| !Rc::ptr_eq(x, &w));
            }
        }
    }
}

/// Set once; everyone waiting (now or later) proceeds.
#[derive(Default)]
pub(crate) struct Event {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    pub(crate) fn set(&self) {
        self.set.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub(crate) async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A wake-up flag for one consumer task: `notify` sets it, `notified` waits for it and clears it.
#[derive(Default)]
pub(crate) struct Notify {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        self.pending.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub(crate) async fn notified(&self) {
        std::future::poll_fn(|cx| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct CountWake(std::sync::atomic::AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll_once<F: Future>(f: Pin<&mut F>, wake: &Arc<CountWake>) -> Poll<F::Output> {
        let waker = Waker::from(wake.clone());
        f.poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn semaphore_hands_off_in_order_and_cancel_passes_permit_on() {
        let sem = Semaphore::new(1);
        let wake = Arc::new(CountWake(Default::default()));
        assert!(sem.try_acquire());
        let mut a = Box::pin(sem.acquire());
        let mut b = Box::pin(sem.acquire());
        assert!(poll_once(a.as_mut(), &wake).is_pending());
        assert!(poll_once(b.as_mut(), &wake).is_pending());
        // Queued waiters block newcomers even if a permit shows up.
        sem.release();
        assert!(!sem.try_acquire());
        assert_eq!(sem.available(), 0);
        // `a` was granted; dropping it unobserved hands the permit to `b`.
        drop(a);
        assert!(poll_once(b.as_mut(), &wake).is_ready());
        drop(b);
        sem.release();
        assert_eq!(sem.available(), 1);
    }

    #[test]
    fn dropped_ungranted_waiter_leaves_the_queue() {
        let sem = Semaphore::new(0);
        let wake = Arc::new(CountWake(Default::default()));
        let mut a = Box::pin(sem.acquire());
        assert!(poll_once(a.as_mut(), &wake).is_pending());
        drop(a);
        sem.release();
        assert!(sem.try_acquire());
    }

    #[test]
    fn event_and_notify() {
        let wake = Arc::new(CountWake(Default::default()));
        let ev = Event::default();
        let mut w = Box::pin(ev.wait());
        assert!(poll_once(w.as_mut(), &wake).is_pending());
        ev.set();
        assert!(poll_once(w.as_mut(), &wake).is_ready());

        let n = Notify::default();
        n.notify();
        let mut f = Box::pin(n.notified());
        assert!(poll_once(f.as_mut(), &wake).is_ready());
        let mut g = Box::pin(n.notified());
        assert!(poll_once(g.as_mut(), &wake).is_pending());
    }
}
