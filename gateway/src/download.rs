//! Downloads (DESIGN §5, §6): the parts a byte range touches are read from their nodes in
//! order, the next part's stream being opened while the current one is sent (at most two open),
//! each with the node's own bounded read-ahead. Every whole part's crc32c is checked as it
//! passes, and its last frame is held back until the check is done: a mismatch (or a node
//! failing) ends the body with an error, so the client sees an incomplete response and never a
//! complete bad one. Ranges that cover part of a part rely on the node's per-block checks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sixfold_wire::ChunkId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::chunk_store::{ChunkStream, SharedStore, StoreError};
use crate::meta::FileRecord;
use crate::metrics::{DownloadOutcome, Metrics};
use crate::split::parts_for_range;

/// Frames queued between the part reader and the HTTP connection.
const RESPONSE_CHANNEL_FRAMES: usize = 8;

/// Why a download stream was cut off.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("part {index}: {source}")]
    Node {
        index: u32,
        #[source]
        source: StoreError,
    },
    #[error("part {index}: checksum mismatch (stored {expected:08x}, read {actual:08x})")]
    ChecksumMismatch {
        index: u32,
        expected: u32,
        actual: u32,
    },
    #[error("part {index}: node sent {got} bytes, {expected} were asked for")]
    Length { index: u32, expected: u64, got: u64 },
    #[error("internal: {0}")]
    Internal(String),
}

/// One read from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub index: u32,
    pub node: Uuid,
    pub chunk_id: ChunkId,
    pub offset: u64,
    pub len: u64,
    /// Set when the read covers the whole part: its stored crc32c, checked on the way out.
    pub whole_crc: Option<u32>,
}

/// The reads that bytes `start..start + len` of `file` need, in order.
pub fn plan_fetches(file: &FileRecord, start: u64, len: u64) -> Vec<Fetch> {
    if len == 0 {
        return Vec::new();
    }
    let ranges = file.ranges();
    parts_for_range(&ranges, start, start + len - 1)
        .filter_map(|slice| {
            let part = file.parts.get(slice.index as usize)?;
            // The stored crc32c can check a read of the whole part only if it covers exactly
            // the file's bytes (not a part that also stores the end of a multipart form).
            let whole =
                slice.offset_in_part == 0 && slice.len == part.len && part.crc_covers_file_bytes();
            Some(Fetch {
                index: part.index,
                node: part.node_id,
                chunk_id: part.chunk_id,
                offset: slice.offset_in_part,
                len: slice.len,
                whole_crc: whole.then_some(part.crc32c),
            })
        })
        .collect()
}

/// The response body for bytes `start..start + len` of `file`, once the first part's stream
/// is open (so that a node that cannot serve it fails the request before any header of success
/// is sent): a stream fed by a task that stops as soon as the stream is dropped (client gone).
/// `permit` (the download's admission slot) is held until the task ends.
pub async fn open_body<P: Send + 'static>(
    store: SharedStore,
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

fn open(store: &SharedStore, fetch: &Fetch) -> AbortOnDrop<Result<ChunkStream, StoreError>> {
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
    store: &SharedStore,
    metrics: &Metrics,
    fetches: &[Fetch],
    first: Option<ChunkStream>,
    tx: &Sender,
    sent: &mut u64,
) -> DownloadOutcome {
    let mut opened = first;
    let mut next: Option<AbortOnDrop<Result<ChunkStream, StoreError>>> = None;
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
                crc = crc32c::crc32c_append(crc, &bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::PartRecord;

    fn file(lens: &[u64]) -> FileRecord {
        let mut offset = 0;
        let parts = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let p = PartRecord {
                    index: i as u32,
                    offset,
                    len,
                    node_id: Uuid::new_v4(),
                    chunk_id: [i as u8; 16],
                    crc32c: 100 + i as u32,
                    stored_len: None,
                };
                offset += len;
                p
            })
            .collect();
        FileRecord {
            id: Uuid::new_v4(),
            name: "f".into(),
            content_type: None,
            size: offset,
            created_unix_ms: 0,
            checksum: "0".repeat(32),
            parts,
        }
    }

    #[test]
    fn whole_file_reads_whole_parts_with_their_crc() {
        let f = file(&[10, 10, 5]);
        let fetches = plan_fetches(&f, 0, 25);
        assert_eq!(fetches.len(), 3);
        for (i, fetch) in fetches.iter().enumerate() {
            assert_eq!(fetch.index, i as u32);
            assert_eq!(fetch.offset, 0);
            assert_eq!(fetch.len, f.parts[i].len);
            assert_eq!(fetch.whole_crc, Some(100 + i as u32));
            assert_eq!(
                (fetch.node, fetch.chunk_id),
                (f.parts[i].node_id, f.parts[i].chunk_id)
            );
        }
    }

    #[test]
    fn ranges_read_only_what_they_touch() {
        let f = file(&[10, 10, 5]);
        let fetches = plan_fetches(&f, 8, 14);
        let shape: Vec<_> = fetches
            .iter()
            .map(|x| (x.index, x.offset, x.len, x.whole_crc))
            .collect();
        assert_eq!(
            shape,
            vec![(0, 8, 2, None), (1, 0, 10, Some(101)), (2, 0, 2, None)]
        );
        assert!(plan_fetches(&f, 0, 0).is_empty());
        assert_eq!(plan_fetches(&f, 24, 1)[0].offset, 4);
    }

    #[test]
    fn parts_storing_more_than_the_file_are_read_without_the_whole_part_crc() {
        // A streamed form: the file ends 3 bytes into part 2, whose chunk also holds the
        // form's trailer; part 3 holds only trailer.
        let mut f = file(&[10, 10, 5, 4]);
        f.parts = f.parts.into_iter().map(|p| p.clipped_to(23)).collect();
        f.size = 23;
        let shape: Vec<_> = plan_fetches(&f, 0, 23)
            .iter()
            .map(|x| (x.index, x.offset, x.len, x.whole_crc))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 0, 10, Some(100)),
                (1, 0, 10, Some(101)),
                (2, 0, 3, None)
            ]
        );
        let shape: Vec<_> = plan_fetches(&f, 21, 2)
            .iter()
            .map(|x| (x.index, x.offset, x.len, x.whole_crc))
            .collect();
        assert_eq!(shape, vec![(2, 1, 2, None)]);
    }
}
