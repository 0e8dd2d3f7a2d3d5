//! An in-memory [`NodeClient`] for tests: nodes that keep chunks in a map, with switches to
//! make a node fail writes, lie in its acknowledgement, or hand back corrupted bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use sixfold_wire::{ChunkId, ChunkMeta};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ChunkStream, NodeCallError, NodeClient, PutAck};
use crate::cluster::{Hold, Ledger, Reservation, Settle};
use crate::placement::{Candidate, PlacementError, PlacementOptions, place};
use crate::split::PartRange;

/// How a node misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Fails every write after reading its first frame.
    FailWrites,
    /// Acknowledges a crc32c one off from the real one.
    WrongAckCrc,
    /// Serves reads with the first byte flipped.
    CorruptReads,
    /// Fails reads after the first frame.
    FailReadsMidway,
    /// Stores the whole chunk, then fails instead of acknowledging it (an ack lost on the way).
    LoseAck,
}

#[derive(Debug, Default)]
struct NodeState {
    up: bool,
    fault: Fault,
    capacity: u64,
    chunks: HashMap<ChunkId, Bytes>,
    /// What each chunk's header says (listed by the orphan scan).
    metas: HashMap<ChunkId, ChunkMeta>,
    marks: HashMap<ChunkId, sixfold_wire::Mark>,
}

#[derive(Debug, Default)]
struct Shared {
    nodes: Vec<(Uuid, NodeState)>,
}

/// See the module docs. Clones share the nodes.
#[derive(Debug, Clone, Default)]
pub struct MemoryNodes {
    shared: Arc<Mutex<Shared>>,
    wakes: Arc<AtomicUsize>,
    /// Frame size of reads.
    read_frame: usize,
}

impl MemoryNodes {
    /// `n` up nodes of 1 TiB each.
    pub fn with_nodes(n: usize) -> Self {
        Self::with_node_ids((0..n).map(|_| Uuid::new_v4()))
    }

    /// Up nodes of 1 TiB each with the given ids (fixed ids make placement reproducible).
    pub fn with_node_ids(ids: impl IntoIterator<Item = Uuid>) -> Self {
        let store = MemoryNodes {
            read_frame: 4096,
            ..Self::default()
        };
        {
            let mut s = store.lock();
            for id in ids {
                s.nodes.push((
                    id,
                    NodeState {
                        up: true,
                        capacity: 1 << 40,
                        ..NodeState::default()
                    },
                ));
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn node_ids(&self) -> Vec<Uuid> {
        self.lock().nodes.iter().map(|(id, _)| *id).collect()
    }

    pub fn set_up(&self, node: Uuid, up: bool) {
        if let Some((_, n)) = self.lock().nodes.iter_mut().find(|(id, _)| *id == node) {
            n.up = up;
        }
    }

    pub fn set_fault(&self, node: Uuid, fault: Fault) {
        if let Some((_, n)) = self.lock().nodes.iter_mut().find(|(id, _)| *id == node) {
            n.fault = fault;
        }
    }

    pub fn set_capacity_all(&self, capacity: u64) {
        for (_, n) in self.lock().nodes.iter_mut() {
            n.capacity = capacity;
        }
    }

    /// Chunks stored across all nodes.
    pub fn chunk_count(&self) -> usize {
        self.lock().nodes.iter().map(|(_, n)| n.chunks.len()).sum()
    }

    /// Every stored chunk, as (node, chunk id).
    pub fn all_chunks(&self) -> Vec<(Uuid, ChunkId)> {
        let s = self.lock();
        s.nodes
            .iter()
            .flat_map(|(id, n)| n.chunks.keys().map(move |c| (*id, *c)))
            .collect()
    }

    /// The stored bytes of a chunk.
    pub fn chunk(&self, node: Uuid, chunk_id: &ChunkId) -> Option<Bytes> {
        self.lock()
            .nodes
            .iter()
            .find(|(id, _)| *id == node)
            .and_then(|(_, n)| n.chunks.get(chunk_id).cloned())
    }

    /// Puts a chunk on `node` that no upload wrote through this store: what a lost metadata
    /// write or a crash between a node's write and the gateway's record leaves behind.
    pub fn put_stray(&self, node: Uuid, chunk_id: ChunkId, meta: ChunkMeta, bytes: Bytes) {
        if let Some((_, n)) = self.lock().nodes.iter_mut().find(|(id, _)| *id == node) {
            n.chunks.insert(chunk_id, bytes);
            n.metas.insert(chunk_id, meta);
        }
    }

    /// Removes a chunk (what the cleanup would do).
    pub fn remove_chunk(&self, node: Uuid, chunk_id: &ChunkId) -> bool {
        self.lock()
            .nodes
            .iter_mut()
            .find(|(id, _)| *id == node)
            .is_some_and(|(_, n)| {
                n.metas.remove(chunk_id);
                n.chunks.remove(chunk_id).is_some()
            })
    }

    /// How often the cleanup was woken.
    /// Runs `f` on node `node` if it is known and up; the errors a real node call would give
    /// otherwise.
    fn with_up_node<T>(
        &self,
        node: Uuid,
        f: impl FnOnce(&mut NodeState) -> T,
    ) -> Result<T, NodeCallError> {
        let mut s = self.lock();
        let Some((_, n)) = s.nodes.iter_mut().find(|(id, _)| *id == node) else {
            return Err(Self::error(node, "unknown_node", "unknown node"));
        };
        if !n.up {
            return Err(Self::error(node, "unavailable", "node is down"));
        }
        Ok(f(n))
    }

    /// Each node: id, up, capacity, chunks, bytes held (for the HTTP layer's views).
    pub fn node_summaries(&self) -> Vec<(Uuid, bool, u64, usize, u64)> {
        self.lock()
            .nodes
            .iter()
            .map(|(id, n)| {
                (
                    *id,
                    n.up,
                    n.capacity,
                    n.chunks.len(),
                    n.chunks.values().map(|c| c.len() as u64).sum(),
                )
            })
            .collect()
    }

    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::Relaxed)
    }

    fn error(node: Uuid, kind: &'static str, message: &str) -> NodeCallError {
        NodeCallError {
            node,
            kind,
            message: message.to_owned(),
        }
    }
}

/// A ledger that keeps no books.
struct Unaccounted;

impl Ledger for Unaccounted {
    fn settle(&self, _hold: Hold, _how: Settle) {}
}

impl NodeClient for MemoryNodes {
    fn candidates(&self) -> Vec<Candidate> {
        self.lock()
            .nodes
            .iter()
            .map(|(id, n)| Candidate {
                id: *id,
                capacity: n.capacity,
                used: n.chunks.values().map(|c| c.len() as u64).sum(),
                in_flight: 0,
                eligible: n.up,
            })
            .collect()
    }

    fn up_count(&self) -> usize {
        self.lock().nodes.iter().filter(|(_, n)| n.up).count()
    }

    fn is_down(&self, node: Uuid) -> bool {
        self.lock().nodes.iter().any(|(id, n)| *id == node && !n.up)
    }

    /// Places like the cluster does; the holds are not accounted (the test nodes are huge).
    fn reserve(&self, file_id: &Uuid, parts: &[PartRange]) -> Result<Reservation, PlacementError> {
        let nodes = place(
            file_id,
            parts,
            &self.candidates(),
            PlacementOptions::default(),
        )?;
        let holds = nodes
            .into_iter()
            .zip(parts)
            .map(|(node, p)| Hold { node, len: p.len })
            .collect();
        Ok(Reservation::new(Arc::new(Unaccounted), holds))
    }

    fn put_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        meta: ChunkMeta,
        _facts: Option<sixfold_wire::FileFacts>,
        mut body: mpsc::Receiver<Bytes>,
    ) -> BoxFuture<'static, Result<PutAck, NodeCallError>> {
        let store = self.clone();
        Box::pin(async move {
            let fault = {
                let s = store.lock();
                let Some((_, n)) = s.nodes.iter().find(|(id, _)| *id == node) else {
                    return Err(Self::error(node, "unknown_node", "unknown node"));
                };
                if !n.up {
                    return Err(Self::error(node, "unavailable", "node is down"));
                }
                n.fault
            };
            let mut data = BytesMut::new();
            while let Some(frame) = body.recv().await {
                if fault == Fault::FailWrites {
                    return Err(Self::error(node, "stream", "write failed"));
                }
                data.extend_from_slice(&frame);
            }
            if data.len() as u64 != meta.length {
                return Err(Self::error(
                    node,
                    "short_body",
                    "body shorter than announced",
                ));
            }
            let crc = crc32c::crc32c(&data);
            let mut s = store.lock();
            if let Some((_, n)) = s.nodes.iter_mut().find(|(id, _)| *id == node) {
                n.chunks.insert(chunk_id, data.freeze());
                n.metas.insert(chunk_id, meta);
            }
            drop(s);
            if fault == Fault::LoseAck {
                return Err(Self::error(
                    node,
                    "stream",
                    "connection lost before the ack",
                ));
            }
            let crc32c = if fault == Fault::WrongAckCrc {
                crc ^ 1
            } else {
                crc
            };
            Ok(PutAck {
                length: meta.length,
                crc32c,
            })
        })
    }

    fn mark_chunks(
        &self,
        node: Uuid,
        marks: Vec<sixfold_wire::ChunkMark>,
    ) -> BoxFuture<'static, Result<usize, NodeCallError>> {
        let store = self.clone();
        Box::pin(async move {
            store.with_up_node(node, |n| {
                let mut recorded = 0;
                for m in marks {
                    if n.chunks.contains_key(&m.chunk_id) {
                        n.marks.insert(m.chunk_id, m.mark);
                        recorded += 1;
                    }
                }
                recorded
            })
        })
    }

    fn delete_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
    ) -> BoxFuture<'static, Result<(), NodeCallError>> {
        let store = self.clone();
        Box::pin(async move {
            store.with_up_node(node, |n| {
                n.chunks.remove(&chunk_id);
                n.metas.remove(&chunk_id);
                n.marks.remove(&chunk_id);
            })
        })
    }

    fn get_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<ChunkStream, NodeCallError>> {
        let store = self.clone();
        Box::pin(async move {
            let (fault, data) = {
                let s = store.lock();
                let Some((_, n)) = s.nodes.iter().find(|(id, _)| *id == node) else {
                    return Err(Self::error(node, "unknown_node", "unknown node"));
                };
                if !n.up {
                    return Err(Self::error(node, "unavailable", "node is down"));
                }
                let Some(data) = n.chunks.get(&chunk_id) else {
                    return Err(Self::error(node, "not_found", "no such chunk"));
                };
                (n.fault, data.clone())
            };
            let end = offset.saturating_add(len).min(data.len() as u64) as usize;
            let start = (offset as usize).min(end);
            let mut section = data.slice(start..end);
            if fault == Fault::CorruptReads && !section.is_empty() {
                let mut copy = BytesMut::from(&section[..]);
                copy[0] ^= 0xff;
                section = copy.freeze();
            }
            let frame = store.read_frame.max(1);
            let mut frames: Vec<Result<Bytes, NodeCallError>> = Vec::new();
            let mut at = 0;
            while at < section.len() {
                let to = (at + frame).min(section.len());
                frames.push(Ok(section.slice(at..to)));
                at = to;
            }
            if fault == Fault::FailReadsMidway {
                frames.truncate(1);
                frames.push(Err(Self::error(node, "stream", "read failed")));
            }
            let stream: ChunkStream = Box::pin(futures_util::stream::iter(frames));
            Ok(stream)
        })
    }

    fn wake_cleanup(&self) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
    }
}

/// One shard per node, listed from the maps in chunk id order, a page at a time.
impl crate::cluster::reconcile::ChunkLister for MemoryNodes {
    fn shard_count(&self, _node: Uuid) -> Result<usize, crate::cluster::reconcile::ScanError> {
        Ok(1)
    }

    fn list_page<'a>(
        &'a self,
        node: Uuid,
        _shard: usize,
        after: Option<ChunkId>,
    ) -> BoxFuture<
        'a,
        Result<(Vec<sixfold_wire::ChunkInfo>, bool), crate::cluster::reconcile::ScanError>,
    > {
        let listed = self.with_up_node(node, |n| {
            let mut ids: Vec<ChunkId> = n
                .chunks
                .keys()
                .filter(|id| after.is_none_or(|a| **id > a))
                .copied()
                .collect();
            ids.sort_unstable();
            let more = ids.len() > LIST_PAGE;
            ids.truncate(LIST_PAGE);
            let entries = ids
                .into_iter()
                .filter_map(|id| {
                    let (bytes, meta) = (n.chunks.get(&id)?, n.metas.get(&id)?);
                    Some(sixfold_wire::ChunkInfo {
                        chunk_id: id,
                        meta: *meta,
                        durable_len: bytes.len() as u64,
                        crc32c: crc32c::crc32c(bytes),
                        state: sixfold_wire::ChunkState::Complete,
                    })
                })
                .collect();
            (entries, more)
        });
        Box::pin(async move {
            listed.map_err(|e| {
                crate::cluster::reconcile::ScanError::Node(crate::cluster::NodeError::Unavailable(
                    e.message,
                ))
            })
        })
    }
}

/// Chunks per listed page (small, so that scans page).
const LIST_PAGE: usize = 64;
