//! What the data path needs from the nodes, as a trait ([`NodeClient`]): candidates for
//! placement and reservations, writing a part as a stream of `Bytes`, reading a part back as a
//! stream, commit marks, deletes, and waking the cleanup. Nothing of presentation: how nodes
//! are shown in `/nodes` and `/metrics` is the HTTP layer's
//! ([`crate::http::node_directory`]). [`crate::cluster::Cluster`] implements it over QUIC;
//! tests use in-memory nodes ([`memory::MemoryNodes`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sixfold_wire::{ChunkId, ChunkMark, ChunkMeta, FileFacts};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cluster::Reservation;
use crate::placement::{Candidate, PlacementError};
use crate::split::PartRange;

mod cluster;
#[cfg(test)]
pub mod memory;

pub use cluster::state_label;

/// A node's acknowledgement of a durable part (the QUIC layer's, unchanged).
pub use crate::cluster::PutAck;

/// A request to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: {message}")]
pub struct NodeCallError {
    pub node: Uuid,
    /// Short stable name (`unavailable`, `timeout`, `checksum_mismatch`, ...), for logs.
    pub kind: &'static str,
    pub message: String,
}

impl NodeCallError {
    /// Whether the node is not answering (rather than refusing the request): work for it waits
    /// instead of hammering it.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.kind,
            "unavailable" | "timeout" | "stream" | "unknown_node"
        )
    }
}

/// The bytes of one part (or a range of it), in order.
pub type ChunkStream = BoxStream<'static, Result<Bytes, NodeCallError>>;

/// The nodes as the data path sees them.
pub trait NodeClient: Send + Sync + 'static {
    /// Every known node as a placement candidate.
    fn candidates(&self) -> Vec<Candidate>;

    /// Nodes currently up.
    fn up_count(&self) -> usize;

    /// Whether `node` is known to be down (missed its heartbeats): reads from it would fail.
    fn is_down(&self, node: Uuid) -> bool;
    /// Places the parts of `file_id` and reserves, all or nothing, each part's bytes and an
    /// in-flight slot on its node. Call before the upload session is recorded; hold the
    /// reservation until the upload commits ([`Reservation::acknowledged`]) or fails (drop).
    fn reserve(&self, file_id: &Uuid, parts: &[PartRange]) -> Result<Reservation, PlacementError>;

    /// Writes a part: the bytes arrive on `body` (closed after the last one) and the future
    /// resolves once the node has acknowledged the part as durable. `facts` go into the
    /// chunk's header, for a rebuild of the metadata from the nodes.
    fn put_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        meta: ChunkMeta,
        facts: Option<FileFacts>,
        body: mpsc::Receiver<Bytes>,
    ) -> BoxFuture<'static, Result<PutAck, NodeCallError>>;

    /// Records commit marks on a node, durably once `Ok`; how many it recorded (it skips
    /// chunks it does not hold).
    fn mark_chunks(
        &self,
        node: Uuid,
        marks: Vec<ChunkMark>,
    ) -> BoxFuture<'static, Result<usize, NodeCallError>>;

    /// Deletes a chunk now, durably once `Ok`; a chunk the node does not hold counts as
    /// deleted.
    fn delete_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
    ) -> BoxFuture<'static, Result<(), NodeCallError>>;

    /// Opens `len` bytes of a part from `offset`; the stream reads ahead a bounded amount.
    fn get_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<ChunkStream, NodeCallError>>;

    /// Asks the cleanup to process the delete queue now.
    fn wake_cleanup(&self);
}

/// Calls every `(node, chunk)` at once, each for at most `wait`, and returns those that
/// succeeded. A failure or timeout is logged at info as `not_done` ("commit mark not
/// delivered", ...) with the file and node; the caller leaves those to the cleanup.
pub async fn on_each_part<F>(
    file_id: Uuid,
    parts: impl IntoIterator<Item = (Uuid, ChunkId)>,
    wait: std::time::Duration,
    not_done: &'static str,
    call: F,
) -> Vec<(Uuid, ChunkId)>
where
    F: Fn(Uuid, ChunkId) -> BoxFuture<'static, Result<(), NodeCallError>>,
{
    let calls = parts.into_iter().map(|(node, chunk)| {
        let sent = call(node, chunk);
        async move {
            match tokio::time::timeout(wait, sent).await {
                Ok(Ok(())) => Some((node, chunk)),
                Ok(Err(e)) => {
                    tracing::info!(%file_id, %node, error = %e, "{not_done}; the cleanup sees to it");
                    None
                }
                Err(_) => {
                    tracing::info!(%file_id, %node, waited_ms = wait.as_millis() as u64, "{not_done} in time; the cleanup sees to it");
                    None
                }
            }
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Shared handle on the nodes.
pub type SharedNodeClient = Arc<dyn NodeClient>;
