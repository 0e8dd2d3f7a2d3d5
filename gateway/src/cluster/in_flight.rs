//! Counting the parts the gateway is writing to each node, for two-choices placement.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counts one part in flight to a node for as long as it lives.
#[derive(Debug)]
pub struct InFlightGuard {
    counter: Arc<AtomicU32>,
}

impl InFlightGuard {
    pub(super) fn new(counter: Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self { counter }
    }

    /// A guard that counts towards nothing (for a node the registry does not know).
    pub(super) fn detached() -> Self {
        Self::new(Arc::default())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_while_alive() {
        let c = Arc::new(AtomicU32::new(0));
        let a = InFlightGuard::new(c.clone());
        let b = InFlightGuard::new(c.clone());
        assert_eq!(c.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(c.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }
}
