//! Down detection: a node that stops heartbeating is marked down within a fraction of
//! `down_after`, so placement stops choosing it.

use std::sync::Weak;
use std::time::Duration;

use super::{Cluster, Inner};

/// How often silence is checked: a quarter of `down_after`, within sane bounds.
pub fn sweep_interval(down_after: Duration) -> Duration {
    (down_after / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// Runs until the cluster shuts down or is dropped.
pub(super) async fn run(inner: Weak<Inner>) {
    let Some((shutdown, every)) = inner
        .upgrade()
        .map(|i| (i.shutdown.clone(), sweep_interval(i.cfg.down_after)))
    else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(cluster) = inner.upgrade().map(|inner| Cluster { inner }) else {
            return;
        };
        cluster.sweep().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_often_enough_to_notice_silence_promptly() {
        assert_eq!(
            sweep_interval(Duration::from_secs(6)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(400)),
            Duration::from_millis(100)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(1)),
            Duration::from_millis(20)
        );
    }
}
