//! [`ChunkStore`] over the QUIC cluster layer.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use sixfold_wire::{ChunkId, ChunkMark, ChunkMeta, FileFacts};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{ChunkStore, ChunkStream, PutAck, StoreError};
use std::pin::Pin;
use std::time::Duration;

use crate::cluster::{ChunkReader, Cluster, NodeError, Reservation};
use crate::meta::NodeState;
use crate::metrics::NodeGauge;
use crate::placement::{Candidate, PlacementError};
use crate::split::PartRange;

fn store_error(node: Uuid, e: NodeError) -> StoreError {
    StoreError {
        node,
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// The label `/metrics` uses for a state.
pub fn state_label(state: NodeState) -> &'static str {
    match state {
        NodeState::Up => "up",
        NodeState::Down => "down",
        NodeState::Draining => "draining",
        NodeState::ReadOnly => "read_only",
    }
}

/// A part being read, cut off when its node is marked down or sends nothing for `stall`.
struct WatchedRead {
    reader: ChunkReader,
    down: Pin<Box<dyn Future<Output = ()> + Send>>,
    stall: Duration,
}

impl WatchedRead {
    async fn next(&mut self, node: Uuid) -> Option<Result<Bytes, NodeError>> {
        tokio::select! {
            item = tokio::time::timeout(self.stall, self.reader.next()) => match item {
                Ok(item) => item,
                Err(_) => Some(Err(NodeError::Timeout)),
            },
            () = &mut self.down => Some(Err(crate::cluster::marked_down(node))),
        }
    }
}

impl ChunkStore for Cluster {
    fn candidates(&self) -> Vec<Candidate> {
        Cluster::candidates(self)
    }

    fn up_count(&self) -> usize {
        Cluster::up_count(self)
    }

    fn is_down(&self, node: Uuid) -> bool {
        self.node_state(node) == Some(NodeState::Down)
    }

    fn reserve(&self, file_id: &Uuid, parts: &[PartRange]) -> Result<Reservation, PlacementError> {
        Cluster::reserve(self, file_id, parts)
    }

    fn put_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        meta: ChunkMeta,
        facts: Option<FileFacts>,
        body: mpsc::Receiver<Bytes>,
    ) -> BoxFuture<'static, Result<PutAck, StoreError>> {
        let cluster = self.clone();
        Box::pin(async move {
            let ack = Cluster::put_chunk(&cluster, node, chunk_id, meta, facts, body)
                .await
                .map_err(|e| store_error(node, e))?;
            Ok(PutAck {
                length: ack.length,
                crc32c: ack.crc32c,
            })
        })
    }

    fn mark_chunks(
        &self,
        node: Uuid,
        marks: Vec<ChunkMark>,
    ) -> BoxFuture<'static, Result<usize, StoreError>> {
        let cluster = self.clone();
        Box::pin(async move {
            Cluster::mark_chunks(&cluster, node, marks)
                .await
                .map_err(|e| store_error(node, e))
        })
    }

    fn delete_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let cluster = self.clone();
        Box::pin(async move {
            Cluster::delete_chunk(&cluster, node, chunk_id)
                .await
                .map_err(|e| store_error(node, e))
        })
    }

    fn get_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<ChunkStream, StoreError>> {
        let cluster = self.clone();
        Box::pin(async move {
            let opening = Cluster::get_chunk(&cluster, node, chunk_id, offset, len);
            let reader = tokio::select! {
                opened = opening => opened.map_err(|e| store_error(node, e))?,
                () = cluster.until_down(node) => {
                    return Err(store_error(node, crate::cluster::marked_down(node)));
                }
            };
            let watched = WatchedRead {
                reader,
                down: Box::pin(cluster.until_down(node)),
                stall: cluster.config().request_timeout,
            };
            let stream = futures_util::stream::unfold(watched, move |mut read| async move {
                let item = read.next(node).await?;
                Some((item.map_err(|e| store_error(node, e)), read))
            });
            let stream: ChunkStream = Box::pin(stream);
            Ok(stream)
        })
    }

    fn wake_cleanup(&self) {
        Cluster::wake_cleanup(self);
    }

    fn nodes_json(&self) -> serde_json::Value {
        serde_json::to_value(self.nodes()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize the node list");
            serde_json::Value::Array(Vec::new())
        })
    }

    fn node_gauges(&self) -> Vec<NodeGauge> {
        self.nodes()
            .into_iter()
            .map(|n| NodeGauge {
                id: n.id.to_string(),
                // As /nodes shows it: a registered node not yet verified over QUIC is
                // `joining`, not `up`.
                state: n.state_name,
                capacity: n.capacity,
                used: n.used,
            })
            .collect()
    }
}
