//! What the HTTP data path needs from the node cluster, as a trait: candidates for placement,
//! writing a part as a stream of `Bytes`, reading a part back as a stream, and waking the
//! cleanup. [`crate::cluster::Cluster`] implements it over QUIC; tests use an in-memory store.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sixfold_wire::{ChunkId, ChunkMark, ChunkMeta, FileFacts};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cluster::Reservation;
use crate::metrics::NodeGauge;
use crate::placement::{Candidate, PlacementError};
use crate::split::PartRange;

mod cluster;
#[cfg(test)]
pub mod memory;

pub use cluster::state_label;

/// A node's acknowledgement of a durable part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutAck {
    pub length: u64,
    pub crc32c: u32,
}

/// A request to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: {message}")]
pub struct StoreError {
    pub node: Uuid,
    /// Short stable name (`unavailable`, `timeout`, `checksum_mismatch`, ...), for logs.
    pub kind: &'static str,
    pub message: String,
}

/// The bytes of one part (or a range of it), in order.
pub type ChunkStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// The node cluster as the data path sees it.
pub trait ChunkStore: Send + Sync + 'static {
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
    ) -> BoxFuture<'static, Result<PutAck, StoreError>>;

    /// Records commit marks on a node, durably once `Ok`; how many it recorded (it skips
    /// chunks it does not hold).
    fn mark_chunks(
        &self,
        node: Uuid,
        marks: Vec<ChunkMark>,
    ) -> BoxFuture<'static, Result<usize, StoreError>>;

    /// Deletes a chunk now, durably once `Ok`; a chunk the node does not hold counts as
    /// deleted.
    fn delete_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Opens `len` bytes of a part from `offset`; the stream reads ahead a bounded amount.
    fn get_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<ChunkStream, StoreError>>;

    /// Asks the cleanup to process the delete queue now.
    fn wake_cleanup(&self);

    /// `GET /nodes`.
    fn nodes_json(&self) -> serde_json::Value;

    /// Per-node figures for `/metrics`.
    fn node_gauges(&self) -> Vec<NodeGauge>;
}

/// Shared handle on the store.
pub type SharedStore = Arc<dyn ChunkStore>;
