//! The pool's reconnect policy, pure (time passed in): when a pooled connection may serve a
//! request, and when a request shares a recent failure to connect instead of waiting out its
//! own timeout. [`super::pool::Pool::connection`] applies it under its locks.

use std::time::Duration;

use tokio::time::Instant;

/// After a failed connect, requests to the same shard fail at once for this long instead of
/// each waiting out its own timeout (a restart of the node clears it: new generation).
pub const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// The last failed attempt to connect to one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at: Instant,
    /// The node's generation (registration) the attempt was for.
    pub generation: u64,
    pub why: String,
}

/// Whether a pooled connection made for `pooled` generation of the node, `open` or not, may
/// serve a request routed to generation `wanted`: a node that restarted since (a newer
/// generation) needs a new connection.
pub fn reusable(pooled: u64, open: bool, wanted: u64) -> bool {
    open && pooled >= wanted
}

/// Which failures a request that arrived at `arrived` shares: on its first look, any failure
/// of the last [`FAILURE_HOLD`]; once it has waited for its turn to connect (`after_wait`),
/// only one that happened while it waited (the task before it just failed).
pub fn failures_since(arrived: Instant, after_wait: bool) -> Option<Instant> {
    if after_wait {
        Some(arrived)
    } else {
        arrived.checked_sub(FAILURE_HOLD)
    }
}

/// The reason to fail at once, if `last` is a failure for the same `generation` at or after
/// `since`.
pub fn shared_failure(
    last: Option<&Failure>,
    generation: u64,
    since: Option<Instant>,
) -> Option<&str> {
    match (last, since) {
        (Some(f), Some(since)) if f.generation == generation && f.at >= since => Some(&f.why),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(at: Instant, generation: u64) -> Failure {
        Failure {
            at,
            generation,
            why: "refused".into(),
        }
    }

    #[test]
    fn a_connection_serves_its_generation_and_later_ones_while_open() {
        assert!(reusable(3, true, 3));
        assert!(reusable(4, true, 3), "routed before the node re-registered");
        assert!(
            !reusable(3, true, 4),
            "the node restarted: a new connection is needed"
        );
        assert!(!reusable(3, false, 3), "closed");
    }

    #[test]
    fn a_recent_failure_is_shared_only_for_the_same_generation() {
        let t0 = Instant::now();
        let f = failure(t0, 7);
        let arrived = t0 + Duration::from_millis(500);
        let since = failures_since(arrived, false);
        assert_eq!(shared_failure(Some(&f), 7, since), Some("refused"));
        assert_eq!(shared_failure(Some(&f), 8, since), None, "node restarted");
        assert_eq!(shared_failure(None, 7, since), None);
        // Older than the hold: try again.
        let late = t0 + FAILURE_HOLD + Duration::from_millis(1);
        assert_eq!(
            shared_failure(Some(&f), 7, failures_since(late, false)),
            None
        );
    }

    #[test]
    fn after_waiting_its_turn_a_request_shares_only_what_failed_meanwhile() {
        let t0 = Instant::now();
        let arrived = t0 + Duration::from_millis(100);
        let before = failure(t0, 1);
        let meanwhile = failure(arrived + Duration::from_millis(5), 1);
        let since = failures_since(arrived, true);
        assert_eq!(shared_failure(Some(&before), 1, since), None);
        assert_eq!(shared_failure(Some(&meanwhile), 1, since), Some("refused"));
    }
}
