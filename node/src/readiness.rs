//! systemd service notifications for `Type=notify` units: `READY=1`, `STOPPING=1` and the
//! watchdog keep-alive. Without `NOTIFY_SOCKET` in the environment (not started by systemd)
//! every call is a no-op, so the node behaves the same everywhere else.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells the service manager the node can take work.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tells the service manager the node is stopping (so a slow drain is not mistaken for a hang
/// at start, and `systemctl status` shows it).
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(state: &[NotifyState], what: &str) {
    // A lost notification must not stop the node: systemd then times the unit out, which is
    // the visible failure the operator needs.
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, notification = what, "cannot notify systemd");
    }
}

/// Starts the watchdog thread when the unit has `WatchdogSec=` (systemd sets `WATCHDOG_USEC`
/// for this process); returns `None` otherwise. The thread sends `WATCHDOG=1` every half
/// period while `healthy` holds, and stops sending once it is cleared, so a node whose shards
/// died but which fails to exit is killed and restarted by systemd.
pub fn spawn_watchdog(healthy: Arc<AtomicBool>) -> io::Result<Option<JoinHandle<()>>> {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return Ok(None);
    };
    let interval = keepalive_interval(period);
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            while healthy.load(Ordering::Acquire) {
                send(&[NotifyState::Watchdog], "WATCHDOG=1");
                std::thread::sleep(interval);
            }
            tracing::warn!("node unhealthy: systemd watchdog keep-alives stopped");
        })
        .map(Some)
}

/// Half the watchdog period, as sd_watchdog_enabled(3) recommends, but never a busy loop.
fn keepalive_interval(period: Duration) -> Duration {
    (period / 2).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_half_the_period_with_a_floor() {
        assert_eq!(
            keepalive_interval(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            keepalive_interval(Duration::from_micros(1)),
            Duration::from_millis(10)
        );
    }
}
