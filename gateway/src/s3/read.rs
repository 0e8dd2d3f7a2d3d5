//! The S3 listener's side of reading an object: its bytes are read by
//! [`crate::download::segments`] (a range of the concatenation of its segments' files), which
//! the native `/files/{id}` serves objects by too; s3s wants the body `Sync` as well.

use futures_util::Stream;

/// Makes a `Send` stream `Sync` (s3s's body type asks for both): the stream is only ever
/// polled through `&mut`, so the mutex around it is never locked (`get_mut`).
pub struct SyncStream<S>(std::sync::Mutex<S>);

impl<S> SyncStream<S> {
    pub fn new(inner: S) -> Self {
        SyncStream(std::sync::Mutex::new(inner))
    }
}

impl<S: Stream + Unpin> Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        match self.0.get_mut() {
            Ok(inner) => std::pin::Pin::new(inner).poll_next(cx),
            // A panic while polling poisoned it; the stream ends.
            Err(_) => std::task::Poll::Ready(None),
        }
    }
}
