//! The chunk delete queue and the chunk reference index (see `crate::meta::deletes`).

use std::collections::HashSet;

use uuid::Uuid;

use super::marks::{node_rows, split_key};
use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::meta::records::{ChunkId, DeleteEntry};
use crate::meta::tables::{chunk_key, node_key_bounds};
use crate::meta::{DeleteReason, MetaError, PendingDelete};

impl PostgresMeta {
    /// See [`crate::meta::Meta::pending_deletes`].
    pub async fn pending_deletes(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            node_rows(
                &tx,
                Table::DeleteQueue,
                node_id,
                limit,
                PendingDelete::from_row,
            )
            .await
        })
    }

    /// See [`crate::meta::Meta::complete_delete`].
    pub async fn complete_delete(
        &self,
        node_id: &Uuid,
        chunk_id: &ChunkId,
    ) -> Result<bool, MetaError> {
        let key = chunk_key(node_id, chunk_id);
        pg_write!(self, MetaError, |tx| {
            Ok(tx.delete(Table::DeleteQueue, &key).await?)
        })
    }

    /// See [`crate::meta::Meta::enqueue_deletes`].
    pub async fn enqueue_deletes(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
        reason: DeleteReason,
    ) -> Result<usize, MetaError> {
        let entry = DeleteEntry::encoded(None, reason, self.now())?;
        pg_write!(self, MetaError, |tx| {
            let mut queued = 0;
            for chunk_id in chunk_ids {
                let key = chunk_key(node_id, chunk_id);
                // An entry already queued keeps its reason and file.
                if tx.contains(Table::ChunkRefs, &key).await? {
                    continue;
                }
                if tx.insert_new(Table::DeleteQueue, &key, &entry).await? {
                    queued += 1;
                }
            }
            Ok(queued)
        })
    }

    /// See [`crate::meta::Meta::delete_queue_len`].
    pub async fn delete_queue_len(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::DeleteQueue).await?)
        })
    }

    /// See [`crate::meta::Meta::referenced_among`].
    pub async fn referenced_among(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<HashSet<ChunkId>, MetaError> {
        let keys: Vec<Vec<u8>> = chunk_ids
            .iter()
            .map(|c| chunk_key(node_id, c).to_vec())
            .collect();
        pg_read!(self, MetaError, |tx| {
            let mut out = HashSet::new();
            for key in tx.present_among(Table::ChunkRefs, &keys).await? {
                out.insert(split_key("chunk_refs", &key)?.1);
            }
            Ok(out)
        })
    }

    /// See [`crate::meta::Meta::referenced_count`]: counted by the server, nothing loaded.
    pub async fn referenced_count(&self, node_id: &Uuid) -> Result<u64, MetaError> {
        let (lo, hi) = node_key_bounds(node_id);
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count_between(Table::ChunkRefs, &lo, &hi).await?)
        })
    }
}
