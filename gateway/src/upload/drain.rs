//! Lingering on a request body the gateway stopped wanting.
//!
//! When an upload is refused or fails before its body was read to the end (413 from
//! `Content-Length`, 503, a node error mid-stream), closing the connection with unread bytes in
//! the socket makes the kernel reset it, and a client still sending usually sees "broken pipe"
//! instead of the error response. Like a web server's lingering close, [`RequestBody`] keeps
//! reading and discarding the rest of the body for a bounded time and amount once it is
//! dropped, so the response reaches the client; past the bounds the connection is closed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// Longest a dropped body is drained.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// Most bytes a dropped body is drained of.
pub const LINGER_BYTES: u64 = 256 << 20;

/// A request body as a stream of frames that, if dropped before its end, drains the rest in
/// the background.
pub struct RequestBody {
    inner: Option<BodyDataStream>,
    finished: bool,
}

impl RequestBody {
    pub fn new(body: Body) -> Self {
        RequestBody {
            inner: Some(body.into_data_stream()),
            finished: false,
        }
    }
}

impl Stream for RequestBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(inner.poll_next_unpin(cx));
        if !matches!(item, Some(Ok(_))) {
            // The end, or an error after which there is nothing left to drain.
            self.finished = true;
        }
        Poll::Ready(item)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(mut body) = self.inner.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut drained = 0u64;
            let drain = async {
                while let Some(Ok(frame)) = body.next().await {
                    drained += frame.len() as u64;
                    if drained > LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_TIME, drain).await;
            tracing::debug!(drained, "drained the rest of a refused request body");
        });
    }
}
