//! The part writers of one upload (one `put_chunk` per part, all running at once, each fed
//! through a bounded channel) and the loop that drives them together with whatever feeds them.

use std::future::Future;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sixfold_wire::{ChunkMeta, FileFacts};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use uuid::Uuid;

use super::UploadError;
use super::flow::{Step, UploadFlow};
use crate::chunk_store::{PutAck, SharedStore, StoreError};
use crate::meta::PlannedPart;

/// Frames queued per part between the feeder and the node writer. Small: memory per upload is
/// this times the frame size, whatever the file size.
pub const PART_CHANNEL_FRAMES: usize = 8;

/// Why feeding the parts stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The client's body failed (disconnect, malformed chunking, bad multipart).
    #[error("request body: {0}")]
    Body(String),
    /// More bytes than announced.
    #[error("request body is longer than the announced {expected} bytes")]
    TooLong { expected: u64 },
    /// Fewer bytes than announced.
    #[error("request body ended after {got} of {expected} bytes")]
    Short { expected: u64, got: u64 },
    /// The writer of this part stopped taking bytes (its node failed).
    #[error("the writer of part {0} stopped")]
    WriterGone(usize),
    /// Reading the spool failed.
    #[error("spool: {0}")]
    Spool(std::io::Error),
    /// The multipart form around the file is malformed.
    #[error("{0}")]
    Form(#[from] super::form::FormError),
    /// The client sent no body byte for `body_idle_timeout` (408).
    #[error("request body: no bytes for {}; the upload is aborted", humantime::format_duration(*after))]
    BodyIdle { after: std::time::Duration },
    /// The file inside a larger body passed the size limit.
    #[error("the file is larger than the limit of {limit} bytes")]
    FileTooLarge { limit: u64 },
}

/// What the feeder computed over the bytes it sent: the crc32c of every part, in plan order.
pub type PartCrcs = Vec<u32>;

type WriterResult = (usize, Result<PutAck, StoreError>);

/// One running `put_chunk` per planned part. Dropping this aborts the ones still running.
pub struct PartWriters {
    running: FuturesUnordered<JoinHandle<WriterResult>>,
    aborts: Vec<AbortHandle>,
    count: usize,
}

impl Drop for PartWriters {
    fn drop(&mut self) {
        for abort in &self.aborts {
            abort.abort();
        }
    }
}

/// Starts a writer per part; returns them and, in plan order, the sender feeding each.
pub fn start_writers(
    store: &SharedStore,
    file_id: Uuid,
    parts: &[PlannedPart],
    facts: &FileFacts,
) -> (PartWriters, Vec<mpsc::Sender<Bytes>>) {
    let part_count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
    let running = FuturesUnordered::new();
    let mut aborts = Vec::with_capacity(parts.len());
    let mut senders = Vec::with_capacity(parts.len());
    for (position, part) in parts.iter().enumerate() {
        let (tx, rx) = mpsc::channel(PART_CHANNEL_FRAMES);
        let meta = ChunkMeta {
            file_id: *file_id.as_bytes(),
            part_index: part.index,
            part_count,
            file_offset: part.offset,
            length: part.len,
        };
        let put = store.put_chunk(part.node_id, part.chunk_id, meta, Some(facts.clone()), rx);
        let handle = tokio::spawn(async move { (position, put.await) });
        aborts.push(handle.abort_handle());
        running.push(handle);
        senders.push(tx);
    }
    let count = parts.len();
    (
        PartWriters {
            running,
            aborts,
            count,
        },
        senders,
    )
}

/// Runs `feed` and the writers together until every part is acknowledged, or stops at the first
/// failure (dropping the writers aborts the rest). What each result means is decided by the
/// pure [`UploadFlow`]. Returns the feeder's crcs and the acks in
/// plan order.
pub async fn drive(
    feed: impl Future<Output = Result<PartCrcs, FeedError>>,
    mut writers: PartWriters,
) -> Result<(PartCrcs, Vec<PutAck>), UploadError> {
    tokio::pin!(feed);
    let mut flow = UploadFlow::new(writers.count);
    loop {
        let step = tokio::select! {
            fed = &mut feed, if flow.wants_feed() => flow.fed(fed),
            Some(done) = writers.running.next(), if flow.wants_writers() => match done {
                Ok((part, result)) => flow.writer_done(part, result),
                Err(e) => Step::Abort(UploadError::Internal(format!("part writer task: {e}"))),
            },
            else => flow.stalled(),
        };
        match step {
            Step::Continue => {}
            Step::Commit { crcs, acks } => return Ok((crcs, acks)),
            Step::Abort(e) => return Err(e),
        }
    }
}
