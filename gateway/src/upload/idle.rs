//! The idle request body: an upload whose client stops sending must not hold its session, its
//! nodes' preallocated space and a connection for as long as the client keeps the socket open.
//! [`IdleBody`] wraps a request body and ends it with [`BodyError::Idle`] once the gateway has
//! waited `timeout` for a byte without getting one; the upload then fails with `408` and its
//! session is aborted like any other failure before the commit.
//!
//! Only time spent *waiting* counts: while the consumer does not ask for bytes (the nodes are
//! slow, the part channels are full) the client is held back by TCP flow control, not idle.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::Uploader;
use super::pipeline::FeedError;
use crate::metrics::{Metrics, TimeoutKind};

/// Why an [`IdleBody`] ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent no byte for the whole timeout while the gateway was waiting for one.
    #[error("no body bytes for {}", humantime::format_duration(*after))]
    Idle { after: Duration },
    /// The body itself failed (disconnect, malformed chunking).
    #[error("{0}")]
    Failed(String),
}

impl From<BodyError> for FeedError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Idle { after } => FeedError::BodyIdle { after },
            BodyError::Failed(message) => FeedError::Body(message),
        }
    }
}

impl Uploader {
    /// `body`, ended after the configured `body_idle_timeout` without a byte.
    pub(super) fn idle_body<S>(&self, body: S) -> IdleBody<S> {
        IdleBody::new(
            body,
            self.settings.body_idle_timeout,
            Some(Arc::clone(&self.metrics)),
        )
    }
}

/// A request body that fails with [`BodyError::Idle`] after `timeout` without a byte.
///
/// One timer per body, re-armed only when it fires: arming one per frame would cost more than
/// many small frames do.
pub struct IdleBody<S> {
    inner: S,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// Since when the consumer has been waiting for the next byte; `None` while it is not.
    waiting_since: Option<Instant>,
    metrics: Option<Arc<Metrics>>,
    ended: bool,
}

impl<S> IdleBody<S> {
    /// Wraps `inner`; a timeout is counted in `metrics`, if given.
    pub fn new(inner: S, timeout: Duration, metrics: Option<Arc<Metrics>>) -> Self {
        IdleBody {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            waiting_since: None,
            metrics,
            ended: false,
        }
    }
}

impl<S, E> Stream for IdleBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if !frame.is_empty() {
                    this.waiting_since = None;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                return Poll::Ready(Some(Err(BodyError::Failed(e.to_string()))));
            }
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let deadline = since + this.timeout;
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer was armed for an older wait (or the first one): a deadline still ahead
            // re-arms it, which also registers this task with it.
            if Instant::now() < deadline {
                this.timer.as_mut().reset(deadline);
                continue;
            }
            this.ended = true;
            if let Some(metrics) = &this.metrics {
                metrics.timed_out(TimeoutKind::Body);
            }
            return Poll::Ready(Some(Err(BodyError::Idle {
                after: this.timeout,
            })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    /// A body fed by hand: frames, or errors, sent when the test says so.
    struct Frames(mpsc::Receiver<Result<Bytes, String>>);

    impl Stream for Frames {
        type Item = Result<Bytes, String>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }

    fn body(timeout: Duration) -> (Feeder, IdleBody<Frames>) {
        let (tx, rx) = mpsc::channel(16);
        (tx, IdleBody::new(Frames(rx), timeout, None))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_times_out_after_the_timeout_not_before() {
        let (_tx, mut body) = body(30 * SECOND);
        let started = Instant::now();
        match body.next().await {
            Some(Err(BodyError::Idle { after })) => assert_eq!(after, 30 * SECOND),
            other => panic!("expected an idle error, got {other:?}"),
        }
        assert_eq!(started.elapsed(), 30 * SECOND);
        assert!(body.next().await.is_none(), "the body ends after its error");
    }

    #[tokio::test(start_paused = true)]
    async fn every_byte_restarts_the_wait() {
        let (tx, mut body) = body(10 * SECOND);
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(9 * SECOND).await;
                tx.send(Ok(Bytes::from_static(b"x"))).await.expect("send");
            }
            // Then silence, with the sender kept open.
            tx
        });
        let started = Instant::now();
        for _ in 0..5 {
            let frame = body.next().await.expect("frame").expect("ok");
            assert_eq!(&frame[..], b"x");
        }
        assert!(matches!(
            body.next().await,
            Some(Err(BodyError::Idle { .. }))
        ));
        // Five frames 9 s apart, then the full 10 s of silence.
        assert_eq!(started.elapsed(), 55 * SECOND);
        drop(feeder.await.expect("feeder"));
    }

    #[tokio::test(start_paused = true)]
    async fn empty_frames_are_not_progress() {
        let (tx, mut body) = body(10 * SECOND);
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(4 * SECOND).await;
                tx.send(Ok(Bytes::new())).await.expect("send");
            }
            tx
        });
        let started = Instant::now();
        loop {
            match body.next().await {
                Some(Ok(frame)) => assert!(frame.is_empty()),
                Some(Err(BodyError::Idle { .. })) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(started.elapsed(), 10 * SECOND);
        drop(feeder.await.expect("feeder"));
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_consumer_does_not_ask_is_not_idle() {
        let (tx, mut body) = body(10 * SECOND);
        tx.send(Ok(Bytes::from_static(b"a"))).await.expect("send");
        assert!(body.next().await.expect("frame").is_ok());
        // The consumer is busy for far longer than the timeout (slow nodes) ...
        tokio::time::sleep(100 * SECOND).await;
        // ... and the client's next byte comes 5 s after the consumer asks again.
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(5 * SECOND).await;
            tx.send(Ok(Bytes::from_static(b"b"))).await.expect("send");
            tx
        });
        let frame = body.next().await.expect("frame").expect("not idle");
        assert_eq!(&frame[..], b"b");
        drop(feeder.await.expect("feeder"));
    }

    #[tokio::test(start_paused = true)]
    async fn end_and_errors_pass_through() {
        let (tx, mut body) = body(10 * SECOND);
        tx.send(Ok(Bytes::from_static(b"abc"))).await.expect("send");
        drop(tx);
        assert_eq!(&body.next().await.expect("frame").expect("ok")[..], b"abc");
        assert!(body.next().await.is_none());

        let (tx, mut body) = body_with_metrics(10 * SECOND);
        tx.send(Err("connection reset".into())).await.expect("send");
        match body.0.next().await {
            Some(Err(BodyError::Failed(m))) => assert!(m.contains("reset"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(body.0.next().await.is_none());
        assert_eq!(body.1.timeouts(TimeoutKind::Body), 0);
    }

    type Feeder = mpsc::Sender<Result<Bytes, String>>;

    fn body_with_metrics(timeout: Duration) -> (Feeder, (IdleBody<Frames>, Arc<Metrics>)) {
        let (tx, rx) = mpsc::channel(16);
        let metrics = Arc::new(Metrics::new());
        let body = IdleBody::new(Frames(rx), timeout, Some(Arc::clone(&metrics)));
        (tx, (body, metrics))
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_counted() {
        let (_tx, (mut body, metrics)) = body_with_metrics(SECOND);
        assert!(matches!(
            body.next().await,
            Some(Err(BodyError::Idle { .. }))
        ));
        assert_eq!(metrics.timeouts(TimeoutKind::Body), 1);
    }
}
