//! Commit marks waiting to reach their nodes (see `crate::meta::marks`, whose value layout
//! these are).

use std::ops::Bound;

use uuid::Uuid;

use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::marks::encode;
use crate::meta::records::ChunkId;
use crate::meta::tables::{chunk_key, node_key_bounds, split_chunk_key};
use crate::meta::{CommitMark, FileRecord, MetaError, PendingMark};

/// Records the marks of a file being committed, inside its commit transaction.
pub(super) async fn record_for_commit(tx: &Tx<'_>, file: &FileRecord) -> Result<(), MetaError> {
    let Some(mark) = CommitMark::of(file) else {
        return Err(MetaError::InvalidRecord(format!(
            "file {} has no valid checksum to mark",
            file.id
        )));
    };
    let value = encode(&mark);
    for p in &file.parts {
        tx.put(
            Table::PendingMarks,
            &chunk_key(&p.node_id, &p.chunk_id),
            &value,
        )
        .await?;
    }
    Ok(())
}

/// Drops the marks of a file being deleted, inside its delete transaction.
pub(super) async fn forget_for_delete(tx: &Tx<'_>, file: &FileRecord) -> Result<(), MetaError> {
    for p in &file.parts {
        tx.delete(Table::PendingMarks, &chunk_key(&p.node_id, &p.chunk_id))
            .await?;
    }
    Ok(())
}

/// Splits a stored 32-byte chunk key.
pub(super) fn split_key(table: &'static str, key: &[u8]) -> Result<(Uuid, ChunkId), MetaError> {
    let key: &[u8; 32] = key.try_into().map_err(|_| {
        MetaError::from(super::PgError::Row {
            table,
            what: format!("a key of {} bytes, not 32", key.len()),
        })
    })?;
    Ok(split_chunk_key(key))
}

/// Up to `limit` rows of `node_id` in `table` (keyed node id ‖ chunk id: the delete queue,
/// the pending marks), in chunk id order, each made by `row` from its node, chunk and value.
pub(super) async fn node_rows<T>(
    tx: &Tx<'_>,
    table: Table,
    node_id: &Uuid,
    limit: usize,
    row: fn(Uuid, ChunkId, &[u8]) -> Result<T, MetaError>,
) -> Result<Vec<T>, MetaError> {
    let (lo, hi) = node_key_bounds(node_id);
    let rows = tx
        .range(
            table,
            Bound::Included(&lo[..]),
            Bound::Included(&hi[..]),
            Some(limit),
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let (node_id, chunk_id) = split_key(table.name(), &k)?;
        out.push(row(node_id, chunk_id, &v)?);
    }
    Ok(out)
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::pending_marks`].
    pub async fn pending_marks(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingMark>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            node_rows(
                &tx,
                Table::PendingMarks,
                node_id,
                limit,
                PendingMark::from_row,
            )
            .await
        })
    }

    /// See [`crate::meta::Meta::marks_delivered`].
    pub async fn marks_delivered(&self, delivered: &[(Uuid, ChunkId)]) -> Result<(), MetaError> {
        if delivered.is_empty() {
            return Ok(());
        }
        pg_write!(self, MetaError, |tx| {
            for (node, chunk) in delivered {
                tx.delete(Table::PendingMarks, &chunk_key(node, chunk))
                    .await?;
            }
            Ok(())
        })
    }

    /// See [`crate::meta::Meta::pending_mark_count`].
    pub async fn pending_mark_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::PendingMarks).await?)
        })
    }
}
