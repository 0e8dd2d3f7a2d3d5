//! Admission control at the API edge: at most `limit` requests of one kind (uploads, downloads)
//! run at once; up to `queue` more wait, first come first served, for at most `max_wait`; any
//! other is refused at once. A refusal becomes `503 busy` with `Retry-After`, decided before
//! a byte of the body is read or any node is asked, so that overload never turns into a hang.
//!
//! A request takes its permit before it holds anything else (no session, no node stream, no
//! buffer), so waiting here can never be part of a cycle of waits.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits of one kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Requests running at once.
    pub limit: usize,
    /// Requests waiting for a slot at once; beyond it a request is refused without waiting.
    pub queue: usize,
    /// Longest a request waits for a slot.
    pub max_wait: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{kind}: all {limit} slots are taken and {queue} requests already wait")]
    QueueFull {
        kind: &'static str,
        limit: usize,
        queue: usize,
    },
    #[error("{kind}: no slot of {limit} came free within {waited:?}")]
    WaitedTooLong {
        kind: &'static str,
        limit: usize,
        waited: Duration,
    },
}

impl Refused {
    /// Seconds a client should wait before trying again: long enough for a share of the
    /// running requests to finish, never zero.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refused::QueueFull { .. } => 1,
            Refused::WaitedTooLong { waited, .. } => (waited.as_secs() / 4).clamp(1, 30),
        }
    }

    fn reason(&self) -> usize {
        match self {
            Refused::QueueFull { .. } => 0,
            Refused::WaitedTooLong { .. } => 1,
        }
    }
}

const REFUSAL_REASONS: [&str; 2] = ["queue_full", "waited_too_long"];

/// One kind of request's slots and queue. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Admission {
    kind: &'static str,
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    admitted: AtomicU64,
    refused: [AtomicU64; REFUSAL_REASONS.len()],
    /// Total time admitted requests waited, in microseconds.
    waited_us: AtomicU64,
}

/// A running request's slot; the next waiter gets it when this is dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

/// Counts a waiting request for as long as it waits, however the wait ends (a client that
/// goes away drops the future).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// `kind` names the requests in errors and metrics (`upload`, `download`).
    pub fn new(kind: &'static str, limits: AdmissionLimits) -> Self {
        let limit = limits.limit.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            kind,
            limits: AdmissionLimits { limit, ..limits },
            slots: Arc::new(Semaphore::new(limit)),
            waiting: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            refused: Default::default(),
            waited_us: AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.limits.limit - self.slots.available_permits()
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A slot, at once if one is free, else after waiting in line (FIFO: tokio's semaphore is
    /// fair) for at most `max_wait`.
    pub async fn admit(&self) -> Result<Permit, Refused> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            self.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(Permit { _slot: slot });
        }
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if before >= self.limits.queue {
            return Err(self.refuse(Refused::QueueFull {
                kind: self.kind,
                limit: self.limits.limit,
                queue: self.limits.queue,
            }));
        }
        let started = Instant::now();
        let acquired = tokio::time::timeout(
            self.limits.max_wait,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await;
        let waited = started.elapsed();
        match acquired {
            Ok(Ok(slot)) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
                self.waited_us.fetch_add(us, Ordering::Relaxed);
                Ok(Permit { _slot: slot })
            }
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(self.refuse(Refused::WaitedTooLong {
                kind: self.kind,
                limit: self.limits.limit,
                waited,
            })),
        }
    }

    fn refuse(&self, refused: Refused) -> Refused {
        self.refused[refused.reason()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(kind = self.kind, error = %refused, "request not admitted");
        refused
    }

    /// The Prometheus lines of this admission (`sixfold_admission_*{kind="..."}`); headers are
    /// written by [`render_headers`].
    pub fn render(&self, out: &mut String) {
        let kind = self.kind;
        let _ = writeln!(
            out,
            "sixfold_admission_limit{{kind=\"{kind}\"}} {}",
            self.limits.limit
        );
        let _ = writeln!(
            out,
            "sixfold_admission_queue_limit{{kind=\"{kind}\"}} {}",
            self.limits.queue
        );
        let _ = writeln!(
            out,
            "sixfold_admission_running{{kind=\"{kind}\"}} {}",
            self.running()
        );
        let _ = writeln!(
            out,
            "sixfold_admission_waiting{{kind=\"{kind}\"}} {}",
            self.waiting()
        );
        let _ = writeln!(
            out,
            "sixfold_admission_admitted_total{{kind=\"{kind}\"}} {}",
            self.admitted.load(Ordering::Relaxed)
        );
        for (i, reason) in REFUSAL_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "sixfold_admission_refused_total{{kind=\"{kind}\",reason=\"{reason}\"}} {}",
                self.refused[i].load(Ordering::Relaxed)
            );
        }
        let waited = self.waited_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "sixfold_admission_wait_seconds_total{{kind=\"{kind}\"}} {waited}"
        );
    }
}

/// `# HELP`/`# TYPE` lines for what [`Admission::render`] writes, once per scrape.
pub fn render_all(out: &mut String, admissions: &[&Admission]) {
    for (name, kind, help) in [
        (
            "sixfold_admission_limit",
            "gauge",
            "Requests of a kind allowed to run at once.",
        ),
        (
            "sixfold_admission_queue_limit",
            "gauge",
            "Requests of a kind allowed to wait for a slot.",
        ),
        (
            "sixfold_admission_running",
            "gauge",
            "Requests of a kind running now.",
        ),
        (
            "sixfold_admission_waiting",
            "gauge",
            "Requests of a kind waiting for a slot now.",
        ),
        (
            "sixfold_admission_admitted_total",
            "counter",
            "Requests admitted.",
        ),
        (
            "sixfold_admission_refused_total",
            "counter",
            "Requests refused with 503 busy, by reason.",
        ),
        (
            "sixfold_admission_wait_seconds_total",
            "counter",
            "Time admitted requests spent waiting for a slot.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for a in admissions {
            let mut lines = String::new();
            a.render(&mut lines);
            for line in lines.lines().filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
            }) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limit: usize, queue: usize, wait_ms: u64) -> Arc<Admission> {
        Arc::new(Admission::new(
            "upload",
            AdmissionLimits {
                limit,
                queue,
                max_wait: Duration::from_millis(wait_ms),
            },
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn within_the_limit_admits_at_once() {
        let a = admission(2, 0, 10);
        let one = a.admit().await.expect("first");
        let _two = a.admit().await.expect("second");
        assert_eq!(a.running(), 2);
        // Queue of zero: the third is refused without waiting.
        assert!(matches!(a.admit().await, Err(Refused::QueueFull { .. })));
        drop(one);
        assert_eq!(a.running(), 1);
        let _three = a.admit().await.expect("a slot came free");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_next_free_slot() {
        let a = admission(1, 4, 60_000);
        let held = a.admit().await.expect("first");
        let waiter = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.admit().await.map(|_| ()) }
        });
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        waiter
            .await
            .expect("task")
            .expect("admitted after the release");
        assert_eq!(a.waiting(), 0);
        assert_eq!(a.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_past_max_wait_is_refused_with_a_retry_hint() {
        let a = admission(1, 4, 8_000);
        let _held = a.admit().await.expect("first");
        let refused = a.admit().await.expect_err("must time out");
        assert!(
            matches!(refused, Refused::WaitedTooLong { .. }),
            "{refused}"
        );
        assert_eq!(refused.retry_after_secs(), 2);
        assert_eq!(a.waiting(), 0, "the waiter left the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_is_bounded_and_served_in_order() {
        let a = admission(1, 2, 60_000);
        let held = a.admit().await.expect("first");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..2 {
            let queued = Arc::clone(&a);
            let tx = tx.clone();
            tokio::spawn(async move {
                let permit = queued.admit().await.expect("queued, then admitted");
                let _ = tx.send(i);
                drop(permit);
            });
            while a.waiting() <= i {
                tokio::task::yield_now().await;
            }
        }
        // Two wait: a third is refused at once.
        let refused = a.admit().await.expect_err("queue full");
        assert_eq!(
            refused,
            Refused::QueueFull {
                kind: "upload",
                limit: 1,
                queue: 2
            }
        );
        assert_eq!(refused.retry_after_secs(), 1);
        drop(held);
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_the_queue() {
        let a = admission(1, 1, 60_000);
        let _held = a.admit().await.expect("first");
        let waiter = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.admit().await.map(|_| ()) }
        });
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn metrics_name_every_kind_and_reason() {
        let up = Admission::new(
            "upload",
            AdmissionLimits {
                limit: 3,
                queue: 5,
                max_wait: Duration::from_secs(1),
            },
        );
        let down = Admission::new(
            "download",
            AdmissionLimits {
                limit: 7,
                queue: 0,
                max_wait: Duration::from_secs(1),
            },
        );
        let mut out = String::new();
        render_all(&mut out, &[&up, &down]);
        for line in [
            "# TYPE sixfold_admission_limit gauge",
            "sixfold_admission_limit{kind=\"upload\"} 3",
            "sixfold_admission_limit{kind=\"download\"} 7",
            "sixfold_admission_queue_limit{kind=\"upload\"} 5",
            "sixfold_admission_running{kind=\"download\"} 0",
            "sixfold_admission_waiting{kind=\"upload\"} 0",
            "sixfold_admission_refused_total{kind=\"download\",reason=\"queue_full\"} 0",
            "sixfold_admission_refused_total{kind=\"upload\",reason=\"waited_too_long\"} 0",
            "sixfold_admission_wait_seconds_total{kind=\"upload\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
