//! systemd service notifications for `sixfold-gateway serve` under a `Type=notify` unit:
//! `READY=1`, `STOPPING=1` and the watchdog keep-alive. Without `NOTIFY_SOCKET` in the
//! environment (not started by systemd) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

/// Tells the service manager the gateway serves: metadata open, HTTP port bound.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tells the service manager the gateway is stopping (draining requests).
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(state: &[NotifyState], what: &str) {
    // A lost notification must not stop the gateway: systemd then times the unit out, which
    // is the visible failure the operator needs.
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, notification = what, "cannot notify systemd");
    }
}

/// Starts the keep-alive task when the unit has `WatchdogSec=` (systemd sets `WATCHDOG_USEC`
/// for this process); `None` otherwise. It runs on the runtime that serves requests, so a
/// wedged runtime stops the keep-alives and systemd restarts the gateway. Must be called
/// inside a tokio runtime.
pub fn spawn_watchdog() -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let interval = keepalive_interval(period);
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog], "WATCHDOG=1");
        }
    }))
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
