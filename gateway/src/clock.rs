//! The gateway's one clock. Everything that stamps a record (session expiry, commit time, queue
//! entries) or times a deadline (heartbeats, orphan grace) asks the [`Clock`] it was given, so a
//! test can run the upload, cleanup and reconcile flows under tokio's paused time and move wall
//! time with it ([`TokioClock`]).
//!
//! Two readings, because they answer two questions: [`Clock::now`] is monotonic, for deadlines
//! and intervals within one process; [`Clock::unix_ms`] is wall time, for what is written down
//! and compared across restarts (a session's expiry survives the process that set it).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Monotonic time, tokio's (which tests may pause and advance).
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Milliseconds since the Unix epoch.
    fn unix_ms(&self) -> u64;
}

/// How components hold the clock.
pub type SharedClock = Arc<dyn Clock>;

/// Wall time from the operating system: what `serve` and `dev` run on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        unix_ms(SystemTime::now())
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Wall time that follows tokio's clock from a fixed start: under `tokio::time::pause`, advancing
/// tokio's time advances this wall time by as much, so expiries and grace periods pass on cue.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_unix_ms: u64,
    start: Instant,
}

impl TokioClock {
    /// Wall time `start_unix_ms` now, moving with tokio's time.
    pub fn starting_at(start_unix_ms: u64) -> Self {
        TokioClock {
            start_unix_ms,
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn unix_ms(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        self.start_unix_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Milliseconds since the Unix epoch of `at` (0 before the epoch).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` as a duration (for comparing stamps with configured durations).
pub fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_with_paused_time_only() {
        let clock = TokioClock::starting_at(1_000);
        assert_eq!(clock.unix_ms(), 1_000);
        let before = clock.now();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.unix_ms(), 91_000);
        assert_eq!(clock.now() - before, Duration::from_secs(90));
    }

    #[test]
    fn unix_ms_is_zero_before_the_epoch() {
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
        assert_eq!(ms(Duration::from_secs(2)), 2000);
    }
}
