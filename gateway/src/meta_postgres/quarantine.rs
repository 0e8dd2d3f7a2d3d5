//! The orphan quarantine (see `crate::meta::quarantine`).

use std::ops::Bound;

use uuid::Uuid;

use super::marks::split_key;
use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::records::{ChunkId, DeleteEntry};
use crate::meta::tables::{QUARANTINE_NAME, chunk_key, node_key_bounds};
use crate::meta::{DeleteReason, MetaError, QuarantineMark};

fn decode_mark(bytes: &[u8]) -> Result<QuarantineMark, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(QUARANTINE_NAME))
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::quarantined`].
    pub async fn quarantined(
        &self,
        node_id: &Uuid,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        let (lo, hi) = node_key_bounds(node_id);
        let after_key = after.map(|c| chunk_key(node_id, &c));
        let lo = match &after_key {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Included(&lo[..]),
        };
        pg_read!(self, MetaError, |tx| {
            let rows = tx
                .range(Table::Quarantine, lo, Bound::Included(&hi[..]), Some(limit))
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for (k, v) in rows {
                out.push((split_key(QUARANTINE_NAME, &k)?.1, decode_mark(&v)?));
            }
            Ok(out)
        })
    }

    /// See [`crate::meta::Meta::update_quarantine`].
    pub async fn update_quarantine(
        &self,
        node_id: &Uuid,
        add: &[(ChunkId, QuarantineMark)],
        release: &[ChunkId],
    ) -> Result<usize, MetaError> {
        pg_write!(self, MetaError, |tx| {
            for chunk_id in release {
                tx.delete(Table::Quarantine, &chunk_key(node_id, chunk_id))
                    .await?;
            }
            let mut marked = 0;
            for (chunk_id, mark) in add {
                let key = chunk_key(node_id, chunk_id);
                if tx.contains(Table::ChunkRefs, &key).await? {
                    continue;
                }
                let value = encode(mark).map_err(MetaError::corrupt(QUARANTINE_NAME))?;
                if tx.insert_new(Table::Quarantine, &key, &value).await? {
                    marked += 1;
                }
            }
            Ok(marked)
        })
    }

    /// See [`crate::meta::Meta::delete_quarantined`].
    pub async fn delete_quarantined(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        let now = self.now();
        pg_write!(self, MetaError, |tx| {
            let mut queued = Vec::new();
            for chunk_id in chunk_ids {
                let key = chunk_key(node_id, chunk_id);
                if tx.contains(Table::ChunkRefs, &key).await? {
                    continue;
                }
                let Some(value) = tx.remove(Table::Quarantine, &key).await? else {
                    continue;
                };
                let mark = decode_mark(&value)?;
                let entry = encode(&DeleteEntry {
                    file_id: Some(mark.file_id),
                    reason: DeleteReason::Orphan,
                    enqueued_unix_ms: now,
                })
                .map_err(MetaError::corrupt(QUARANTINE_NAME))?;
                tx.insert_new(Table::DeleteQueue, &key, &entry).await?;
                queued.push((*chunk_id, mark));
            }
            Ok(queued)
        })
    }

    /// See [`crate::meta::Meta::quarantine_len`].
    pub async fn quarantine_len(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::Quarantine).await?)
        })
    }
}
