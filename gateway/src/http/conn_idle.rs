//! When a connection has been quiet for too long, from what it is doing:
//! - waiting for a request's headers (from the accept, or from the first byte after an idle
//!   keep-alive): `header_timeout`;
//! - idle between requests (no request in progress, no byte received): `keepalive_timeout`;
//! - serving a request (its body still being read or its response still being written): no
//!   connection deadline; an upload's idle body has its own (`upload::idle`).
//!
//! hyper's own `header_read_timeout` cannot express this: its timer starts as soon as the
//! connection is ready for the next request (see `poll_read_head` in hyper's `proto/h1/conn.rs`),
//! so it also bounds the idle time between requests by the header timeout.
//!
//! [`Activity`] is updated by the connection's socket ([`WatchedIo`]: bytes read) and by the
//! request and response bodies ([`TrackedBody`]: a request is in progress until both are
//! dropped); [`expired`] sleeps on one timer that is re-armed only when it fires.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::metrics::TimeoutKind;

/// The connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    pub header: Duration,
    pub keepalive: Duration,
}

/// No time recorded.
const NEVER: u64 = u64::MAX;

/// What one connection is doing, as milliseconds since it was accepted.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    /// Requests whose request or response body is still alive.
    open: AtomicU32,
    /// Since when a request's headers are awaited (some bytes arrived, or the connection is
    /// new); [`NEVER`] while a request is open or the connection is idle.
    head_since: AtomicU64,
    /// When the last open request ended; [`NEVER`] before the first one.
    idle_since: AtomicU64,
}

impl Activity {
    /// A connection accepted now: its first request's headers are awaited from now on.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            accepted: Instant::now(),
            open: AtomicU32::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(NEVER),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// Bytes arrived: on an idle connection, they start the next request's headers.
    fn bytes_read(&self) {
        if self.open.load(Ordering::SeqCst) == 0 {
            let _ = self.head_since.compare_exchange(
                NEVER,
                self.now_ms(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// A request's headers were read: it is open until every clone of the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> Arc<OpenRequest> {
        // Open first, so that a check in between sees a busy connection.
        self.open.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(NEVER, Ordering::SeqCst);
        Arc::new(OpenRequest {
            activity: Arc::clone(self),
        })
    }

    /// The next deadline and what it is for, `None` while a request is open.
    fn deadline(&self, timeouts: ConnTimeouts) -> Option<(TimeoutKind, u64)> {
        if self.open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::SeqCst);
        if head != NEVER {
            return Some((
                TimeoutKind::Header,
                head.saturating_add(ms(timeouts.header)),
            ));
        }
        let idle = self.idle_since.load(Ordering::SeqCst);
        if idle != NEVER {
            return Some((
                TimeoutKind::KeepAlive,
                idle.saturating_add(ms(timeouts.keepalive)),
            ));
        }
        // Between a request's end and its idle time being stored: look again soon.
        None
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(NEVER - 1)
}

/// Keeps its request open; shared by the request's body and its response's body.
#[derive(Debug)]
pub struct OpenRequest {
    activity: Arc<Activity>,
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let a = &self.activity;
        // The idle time is stored before the request closes, so a check that sees no request
        // open never sees the idle time of an earlier one.
        a.idle_since.store(a.now_ms(), Ordering::SeqCst);
        a.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves when the connection has been quiet past its deadline, with the kind of timeout.
pub async fn expired(activity: &Activity, timeouts: ConnTimeouts) -> TimeoutKind {
    // While a request is open there is no deadline; look again this often.
    let recheck = timeouts.header.min(timeouts.keepalive);
    let timer = tokio::time::sleep(timeouts.header);
    tokio::pin!(timer);
    loop {
        timer.as_mut().await;
        let now = activity.now_ms();
        match activity.deadline(timeouts) {
            Some((kind, at)) if at <= now => return kind,
            Some((_, at)) => timer
                .as_mut()
                .reset(Instant::now() + Duration::from_millis(at - now)),
            None => timer.as_mut().reset(Instant::now() + recheck),
        }
    }
}

/// A connection's socket, telling [`Activity`] when bytes arrive.
pub struct WatchedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        WatchedIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request or response body that keeps its request open while it lives.
pub struct TrackedBody<B> {
    inner: B,
    _open: Arc<OpenRequest>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, open: Arc<OpenRequest>) -> Self {
        TrackedBody { inner, _open: open }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const TIMEOUTS: ConnTimeouts = ConnTimeouts {
        header: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
    };

    /// Runs [`expired`] in the background; returns when it fired, measured from now.
    fn watch(activity: &Arc<Activity>) -> tokio::task::JoinHandle<(TimeoutKind, Duration)> {
        let activity = Arc::clone(activity);
        let started = Instant::now();
        tokio::spawn(async move {
            let kind = expired(&activity, TIMEOUTS).await;
            (kind, started.elapsed())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_gets_the_header_timeout() {
        let activity = Activity::new();
        let (kind, after) = watch(&activity).await.expect("watch");
        assert_eq!((kind, after), (TimeoutKind::Header, 10 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_of_a_first_request_do_not_extend_its_header_timeout() {
        let activity = Activity::new();
        let watcher = watch(&activity);
        for _ in 0..20 {
            tokio::time::sleep(SECOND).await;
            if watcher.is_finished() {
                break;
            }
            activity.bytes_read();
        }
        let (kind, after) = watcher.await.expect("watch");
        assert_eq!((kind, after), (TimeoutKind::Header, 10 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_has_no_deadline_then_keepalive_then_header() {
        let activity = Activity::new();
        let watcher = watch(&activity);
        tokio::time::sleep(SECOND).await;
        let open = activity.request_started();
        let body_clone = Arc::clone(&open);
        // A request much longer than both timeouts.
        tokio::time::sleep(300 * SECOND).await;
        assert!(!watcher.is_finished());
        drop(open);
        tokio::time::sleep(100 * SECOND).await;
        assert!(!watcher.is_finished(), "the response body still lives");
        drop(body_clone);
        // Idle from now: 59 s pass, then a byte of the next request starts its 10 s.
        tokio::time::sleep(59 * SECOND).await;
        assert!(!watcher.is_finished());
        activity.bytes_read();
        let (kind, after) = watcher.await.expect("watch");
        assert_eq!(kind, TimeoutKind::Header);
        assert_eq!(after, (1 + 300 + 100 + 59 + 10) * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keepalive_is_closed_after_keepalive_timeout() {
        let activity = Activity::new();
        let watcher = watch(&activity);
        tokio::time::sleep(2 * SECOND).await;
        drop(activity.request_started());
        let (kind, after) = watcher.await.expect("watch");
        assert_eq!((kind, after), (TimeoutKind::KeepAlive, 62 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_during_a_request_do_not_start_a_header_timeout() {
        let activity = Activity::new();
        let watcher = watch(&activity);
        let open = activity.request_started();
        activity.bytes_read();
        tokio::time::sleep(30 * SECOND).await;
        drop(open);
        let (kind, after) = watcher.await.expect("watch");
        assert_eq!((kind, after), (TimeoutKind::KeepAlive, 90 * SECOND));
    }
}
