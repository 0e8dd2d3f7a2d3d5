//! The memory all spooling uploads share. Each upload may keep up to `spool_memory_bytes` of a
//! length-less body in memory, but a hundred such uploads at once must not hold a hundred times
//! that: they draw from one budget (`spool_memory_total`), and an upload that finds it empty
//! spools to disk instead. Nothing waits on the budget, so it can never deadlock uploads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of spool memory still free, shared by every upload of a gateway.
#[derive(Debug)]
pub struct SpoolBudget {
    total: u64,
    free: AtomicU64,
}

impl SpoolBudget {
    pub fn new(total: u64) -> Arc<Self> {
        Arc::new(Self {
            total,
            free: AtomicU64::new(total),
        })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes not reserved by any upload right now.
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Acquire)
    }

    /// Takes `n` bytes if they are free; `false` (and nothing taken) otherwise.
    fn try_take(&self, n: u64) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(n)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        self.free.fetch_add(n, Ordering::AcqRel);
    }
}

/// Spool memory held by one upload; returned to the budget when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<SpoolBudget>,
    bytes: u64,
}

impl Reservation {
    pub fn new(budget: Arc<SpoolBudget>) -> Self {
        Self { budget, bytes: 0 }
    }

    /// Grows the reservation by `n` bytes if the budget has them.
    pub fn try_grow(&mut self, n: u64) -> bool {
        let ok = self.budget.try_take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_draw_from_one_budget_and_give_back_on_drop() {
        let budget = SpoolBudget::new(100);
        let mut a = Reservation::new(Arc::clone(&budget));
        let mut b = Reservation::new(Arc::clone(&budget));
        assert!(a.try_grow(60));
        assert!(!b.try_grow(50), "only 40 left");
        assert_eq!(b.bytes(), 0, "a refused grow takes nothing");
        assert!(b.try_grow(40));
        assert_eq!(budget.free(), 0);
        assert!(!a.try_grow(1));
        drop(a);
        assert_eq!(budget.free(), 60);
        drop(b);
        assert_eq!(budget.free(), budget.total());
    }

    #[test]
    fn concurrent_grows_never_overdraw() {
        let budget = SpoolBudget::new(10_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    let mut r = Reservation::new(budget);
                    let mut got = 0u64;
                    for _ in 0..5_000 {
                        if r.try_grow(3) {
                            got += 3;
                        }
                    }
                    assert_eq!(r.bytes(), got);
                    r
                })
            })
            .collect();
        let held: Vec<Reservation> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let sum: u64 = held.iter().map(Reservation::bytes).sum();
        // Demand far exceeds the budget, so it is drawn down to less than one grow.
        assert!(sum <= 10_000 && 10_000 - sum < 3, "{sum}");
        assert_eq!(budget.free(), 10_000 - sum);
        drop(held);
        assert_eq!(budget.free(), 10_000);
    }
}
