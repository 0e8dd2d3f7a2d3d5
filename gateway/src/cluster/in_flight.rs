//! What an upload holds on the nodes while its parts are in flight: for every planned part, the
//! part's bytes reserved against its node's free space and one of the node's in-flight slots
//! (`node_max_parts`). The same count is what placement's "two choices" reads, so there is one
//! in-flight figure per node, not two.
//!
//! Where it must be called: [`super::Cluster::reserve`] places and reserves in one step, before
//! the upload session is recorded and before any byte moves; the upload keeps the
//! [`Reservation`] until it ends. Commit → [`Reservation::acknowledged`] (the bytes then count
//! as used until the node's own report includes them); anything else → drop it (released at
//! once). A part writer may also take its own [`PartHold`] ([`Reservation::into_parts`]) and
//! settle it when its node acknowledges.

use std::sync::Arc;

use uuid::Uuid;

use super::Cluster;
use crate::placement::{PlacementError, PlacementOptions};
use crate::split::PartRange;

/// One part's claim on one node, as the registry accounts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub node: Uuid,
    pub len: u64,
}

/// How a hold ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The node acknowledged the part durable.
    Acknowledged,
    /// The part will not be (or was not) stored: the upload failed or was aborted.
    Released,
}

/// Whoever keeps the books of holds (the registry behind [`super::Cluster`], or a test store).
pub trait Ledger: Send + Sync + 'static {
    fn settle(&self, hold: Hold, how: Settle);
}

/// One part's hold; released when dropped unless it was acknowledged.
pub struct PartHold {
    ledger: Arc<dyn Ledger>,
    hold: Hold,
    settled: bool,
}

impl std::fmt::Debug for PartHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartHold")
            .field("hold", &self.hold)
            .field("settled", &self.settled)
            .finish()
    }
}

impl PartHold {
    pub fn node(&self) -> Uuid {
        self.hold.node
    }

    pub fn len(&self) -> u64 {
        self.hold.len
    }

    pub fn is_empty(&self) -> bool {
        self.hold.len == 0
    }

    /// The node acknowledged the part durable: the slot is free, the bytes count as used until
    /// the node's own report includes them.
    pub fn acknowledged(mut self) {
        self.settled = true;
        self.ledger.settle(self.hold, Settle::Acknowledged);
    }
}

impl Drop for PartHold {
    fn drop(&mut self) {
        if !self.settled {
            self.ledger.settle(self.hold, Settle::Released);
        }
    }
}

/// The holds of every part of one upload, in plan order.
#[derive(Debug)]
pub struct Reservation {
    parts: Vec<PartHold>,
}

impl Reservation {
    /// Wraps holds the ledger has already counted.
    pub fn new(ledger: Arc<dyn Ledger>, holds: Vec<Hold>) -> Self {
        let parts = holds
            .into_iter()
            .map(|hold| PartHold {
                ledger: Arc::clone(&ledger),
                hold,
                settled: false,
            })
            .collect();
        Reservation { parts }
    }

    /// The node of each part, in plan order.
    pub fn nodes(&self) -> Vec<Uuid> {
        self.parts.iter().map(PartHold::node).collect()
    }

    /// Every part was acknowledged (the upload committed).
    pub fn acknowledged(self) {
        for part in self.parts {
            part.acknowledged();
        }
    }

    /// The holds one by one, for callers that settle each part as its ack arrives.
    pub fn into_parts(self) -> Vec<PartHold> {
        self.parts
    }
}

impl Cluster {
    /// Places the parts of `file_id` and reserves each part's bytes and an in-flight slot on
    /// its node, all or nothing (see the module docs for where this must be called). Refused
    /// before any byte moves: too few nodes up, too little free space once every other
    /// upload's reservations count, or nodes at `node_max_parts` ([`PlacementError::Busy`]).
    pub fn reserve(
        &self,
        file_id: &Uuid,
        parts: &[PartRange],
    ) -> Result<Reservation, PlacementError> {
        let options = PlacementOptions {
            max_in_flight: self.config().node_max_parts,
            ..PlacementOptions::default()
        };
        let holds = self.write().reserve(file_id, parts, options)?;
        Ok(Reservation::new(Arc::new(self.clone()), holds))
    }
}

impl Ledger for Cluster {
    fn settle(&self, hold: Hold, how: Settle) {
        self.write().settle(hold, how);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Book(Mutex<Vec<(Hold, Settle)>>);

    impl Ledger for Book {
        fn settle(&self, hold: Hold, how: Settle) {
            self.0.lock().unwrap().push((hold, how));
        }
    }

    fn holds() -> Vec<Hold> {
        (1..=3)
            .map(|n| Hold {
                node: Uuid::from_u128(n),
                len: 100 * n as u64,
            })
            .collect()
    }

    #[test]
    fn a_dropped_reservation_releases_every_part_once() {
        let book = Arc::new(Book::default());
        let r = Reservation::new(book.clone(), holds());
        assert_eq!(
            r.nodes(),
            holds().iter().map(|h| h.node).collect::<Vec<_>>()
        );
        assert!(
            book.0.lock().unwrap().is_empty(),
            "nothing settles while held"
        );
        drop(r);
        let seen = book.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|(_, how)| *how == Settle::Released));
    }

    #[test]
    fn acknowledged_parts_are_not_released_again() {
        let book = Arc::new(Book::default());
        Reservation::new(book.clone(), holds()).acknowledged();
        let mut parts = Reservation::new(book.clone(), holds()).into_parts();
        let last = parts.pop().unwrap();
        last.acknowledged();
        drop(parts);
        let seen = book.0.lock().unwrap().clone();
        let how: Vec<Settle> = seen.iter().map(|(_, how)| *how).collect();
        assert_eq!(
            how,
            [
                Settle::Acknowledged,
                Settle::Acknowledged,
                Settle::Acknowledged,
                Settle::Acknowledged,
                Settle::Released,
                Settle::Released
            ]
        );
        assert_eq!(seen[3].0.len, 300);
    }
}
