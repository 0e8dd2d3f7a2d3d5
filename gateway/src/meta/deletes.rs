//! The chunk delete queue and the chunk reference index used for orphan reconciliation.

use std::collections::HashSet;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use super::records::{ChunkId, DeleteEntry, DeleteReason, PendingDelete};
use super::tables::{CHUNK_REFS, DELETE_QUEUE, chunk_key, node_key_bounds, split_chunk_key};
use super::{Meta, MetaError};

/// Up to `limit` rows of `node_id` in `table` (keyed node id ‖ chunk id: the delete queue,
/// the pending marks), in chunk id order, each made by `row` from its node, chunk and value.
pub(super) fn node_rows<T>(
    txn: &ReadTransaction,
    table: TableDefinition<&'static [u8; 32], &'static [u8]>,
    node_id: &Uuid,
    limit: usize,
    row: fn(Uuid, ChunkId, &[u8]) -> Result<T, MetaError>,
) -> Result<Vec<T>, MetaError> {
    let (lo, hi) = node_key_bounds(node_id);
    let table = txn.open_table(table)?;
    let mut out = Vec::with_capacity(limit.min(1024));
    for entry in table.range::<&[u8; 32]>(&lo..=&hi)?.take(limit) {
        let (key, value) = entry?;
        let (node_id, chunk_id) = split_chunk_key(key.value());
        out.push(row(node_id, chunk_id, value.value())?);
    }
    Ok(out)
}

impl Meta {
    /// Up to `limit` chunks queued for deletion on `node_id`, in chunk id order.
    pub fn pending_deletes(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError> {
        self.read(|txn| node_rows(txn, DELETE_QUEUE, node_id, limit, PendingDelete::from_row))
    }

    /// Drops a chunk from the queue once its node has deleted it (or reported it absent).
    /// Returns whether it was queued.
    pub fn complete_delete(&self, node_id: &Uuid, chunk_id: &ChunkId) -> Result<bool, MetaError> {
        let key = chunk_key(node_id, chunk_id);
        self.write(|txn| Ok(txn.open_table(DELETE_QUEUE)?.remove(&key)?.is_some()))
    }

    /// Queues chunks found on `node_id` for deletion, skipping any that a file or live session
    /// references (checked in the same transaction, so a live chunk is never queued). Returns
    /// how many were queued.
    pub fn enqueue_deletes(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
        reason: DeleteReason,
    ) -> Result<usize, MetaError> {
        let entry = DeleteEntry::encoded(None, reason, self.clock.unix_ms())?;
        self.write(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let mut queue = txn.open_table(DELETE_QUEUE)?;
            let mut queued = 0;
            for chunk_id in chunk_ids {
                let key = chunk_key(node_id, chunk_id);
                // An entry already queued keeps its reason and file.
                if refs.get(&key)?.is_some() || queue.get(&key)?.is_some() {
                    continue;
                }
                queue.insert(&key, entry.as_slice())?;
                queued += 1;
            }
            Ok(queued)
        })
    }

    /// Number of chunks waiting for deletion on all nodes.
    pub fn delete_queue_len(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(DELETE_QUEUE)?.len()?))
    }

    /// Which of `chunk_ids` on `node_id` a committed file or a live upload session references
    /// (point lookups, so the answer is bounded by the question).
    pub fn referenced_among(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<HashSet<ChunkId>, MetaError> {
        self.read(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let mut out = HashSet::new();
            for chunk_id in chunk_ids {
                if refs.get(&chunk_key(node_id, chunk_id))?.is_some() {
                    out.insert(*chunk_id);
                }
            }
            Ok(out)
        })
    }

    /// How many chunks on `node_id` a committed file or a live upload session references,
    /// counted without holding them (bounded memory whatever the node holds).
    pub fn referenced_count(&self, node_id: &Uuid) -> Result<u64, MetaError> {
        let (lo, hi) = node_key_bounds(node_id);
        self.read(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let mut count = 0u64;
            for row in refs.range::<&[u8; 32]>(&lo..=&hi)? {
                row?;
                count += 1;
            }
            Ok(count)
        })
    }

    /// Every chunk on `node_id` that a file or a live session references: loads the node's whole
    /// set, so only tests use it.
    #[cfg(test)]
    pub fn referenced_chunks(&self, node_id: &Uuid) -> Result<HashSet<ChunkId>, MetaError> {
        let (lo, hi) = node_key_bounds(node_id);
        self.read(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let mut out = HashSet::new();
            for row in refs.range::<&[u8; 32]>(&lo..=&hi)? {
                let (key, _) = row?;
                out.insert(split_chunk_key(key.value()).1);
            }
            Ok(out)
        })
    }
}
