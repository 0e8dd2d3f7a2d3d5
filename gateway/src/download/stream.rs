//! The response body of a download: the first part's stream is opened before any header, then
//! a task feeds the parts in order, the next one opened (read-ahead) while the current one is
//! sent, each whole part's crc32c checked before its last frame goes out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::DownloadError;
use super::plan::{Fetch, plan_fetches};
use crate::meta::FileRecord;
use crate::metrics::{DownloadOutcome, Metrics};
use crate::node_client::{ChunkStream, NodeCallError, SharedNodeClient};

/// Frames queued between the part reader and the HTTP connection.
const RESPONSE_CHANNEL_FRAMES: usize = 8;

/// The response body for bytes `start..start + len` of `file`, once the first part's stream
/// is open (so that a node that cannot serve it fails the request before any header of success
/// is sent): a stream fed by a task that stops as soon as the stream is dropped (client gone).
/// `permit` (the download's admission slot) is held until the task ends.
pub async fn open_body<P: Send + 'static>(
    store: SharedNodeClient,
    metrics: Arc<Metrics>,
    file: &FileRecord,
    start: u64,
    len: u64,
    permit: P,
) -> Result<impl Stream<Item = Result<Bytes, DownloadError>> + Send + 'static, DownloadError> {
    let fetches = plan_fetches(file, start, len);
    let first = match fetches.first() {
        Some(fetch) => match open(&store, fetch).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(source)) => {
                let index = fetch.index;
                return Err(DownloadError::Node { index, source });
            }
            Err(e) => return Err(DownloadError::Internal(format!("open task: {e}"))),
        },
        None => None,
    };
    let (tx, rx) = mpsc::channel(RESPONSE_CHANNEL_FRAMES);
    let file_id = file.id;
    tokio::spawn(async move {
        let _permit = permit;
        let started = Instant::now();
        let guard = metrics.download_started();
        let mut sent = 0u64;
        let outcome = produce(&store, &metrics, &fetches, first, &tx, &mut sent).await;
        drop(guard);
        metrics.download_finished(outcome);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if outcome == DownloadOutcome::Ok {
            tracing::info!(%file_id, start, size = len, bytes = sent, elapsed_ms, outcome = outcome.label(), "download");
        } else {
            tracing::warn!(%file_id, start, size = len, bytes = sent, elapsed_ms, outcome = outcome.label(), "download cut off");
        }
    });
    Ok(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

fn open(
    store: &SharedNodeClient,
    fetch: &Fetch,
) -> AbortOnDrop<Result<ChunkStream, NodeCallError>> {
    let opening = store.get_chunk(fetch.node, fetch.chunk_id, fetch.offset, fetch.len);
    AbortOnDrop(tokio::spawn(opening))
}

type Sender = mpsc::Sender<Result<Bytes, DownloadError>>;

/// Hands one frame to the connection; `false` when the client is gone.
async fn send(tx: &Sender, metrics: &Metrics, sent: &mut u64, bytes: Bytes) -> bool {
    let n = bytes.len() as u64;
    if tx.send(Ok(bytes)).await.is_err() {
        return false;
    }
    *sent += n;
    metrics.add_bytes_out(n);
    true
}

async fn fail(tx: &Sender, error: DownloadError) -> DownloadOutcome {
    let outcome = match &error {
        DownloadError::ChecksumMismatch { .. } => DownloadOutcome::ChecksumMismatch,
        _ => DownloadOutcome::NodeError,
    };
    tracing::warn!(error = %error, "download failed mid-stream");
    // If the client is already gone there is nobody to tell.
    let _ = tx.send(Err(error)).await;
    outcome
}

async fn produce(
    store: &SharedNodeClient,
    metrics: &Metrics,
    fetches: &[Fetch],
    first: Option<ChunkStream>,
    tx: &Sender,
    sent: &mut u64,
) -> DownloadOutcome {
    let mut opened = first;
    let mut next: Option<AbortOnDrop<Result<ChunkStream, NodeCallError>>> = None;
    for (i, fetch) in fetches.iter().enumerate() {
        let mut stream = match (opened.take(), next.take()) {
            (Some(stream), _) => stream,
            (None, Some(opening)) => match opening.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => {
                    let index = fetch.index;
                    return fail(tx, DownloadError::Node { index, source }).await;
                }
                Err(e) => {
                    return fail(tx, DownloadError::Internal(format!("open task: {e}"))).await;
                }
            },
            (None, None) => {
                return fail(tx, DownloadError::Internal("part stream not opened".into())).await;
            }
        };
        // Read-ahead: the next part opens (and fills its bounded buffer) while this one is sent.
        next = fetches.get(i + 1).map(|f| open(store, f));
        let mut got = 0u64;
        let mut crc = 0u32;
        let mut held: Option<Bytes> = None;
        while let Some(item) = stream.next().await {
            let bytes = match item {
                Ok(bytes) => bytes,
                Err(source) => {
                    let index = fetch.index;
                    return fail(tx, DownloadError::Node { index, source }).await;
                }
            };
            got += bytes.len() as u64;
            if got > fetch.len {
                let error = DownloadError::Length {
                    index: fetch.index,
                    expected: fetch.len,
                    got,
                };
                return fail(tx, error).await;
            }
            if fetch.whole_crc.is_some() {
                crc = sixfold_wire::crc::crc32c_append(crc, &bytes);
                if let Some(previous) = held.replace(bytes)
                    && !send(tx, metrics, sent, previous).await
                {
                    return DownloadOutcome::ClientGone;
                }
            } else if !send(tx, metrics, sent, bytes).await {
                return DownloadOutcome::ClientGone;
            }
        }
        if got != fetch.len {
            let error = DownloadError::Length {
                index: fetch.index,
                expected: fetch.len,
                got,
            };
            return fail(tx, error).await;
        }
        if let Some(expected) = fetch.whole_crc
            && crc != expected
        {
            metrics.checksum_mismatch();
            let error = DownloadError::ChecksumMismatch {
                index: fetch.index,
                expected,
                actual: crc,
            };
            return fail(tx, error).await;
        }
        if let Some(last) = held
            && !send(tx, metrics, sent, last).await
        {
            return DownloadOutcome::ClientGone;
        }
    }
    DownloadOutcome::Ok
}
