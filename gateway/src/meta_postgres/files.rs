//! Committed files (see `crate::meta::files`).

use std::ops::Bound;

use uuid::Uuid;

use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::codec::decode;
use crate::meta::records::DeleteEntry;
use crate::meta::tables::{FILES_NAME, chunk_key};
use crate::meta::{DeleteReason, FileRecord, HIDDEN_NAME_PREFIX, MetaError};

pub(super) fn decode_file(bytes: &[u8]) -> Result<FileRecord, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(FILES_NAME))
}

/// Files scanned per statement while `list_listed_files` fills a page.
const SCAN_BATCH: usize = 256;

impl PostgresMeta {
    /// See [`crate::meta::Meta::get_file`].
    pub async fn get_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            match tx.get(Table::Files, id.as_bytes()).await? {
                Some(v) => Ok(Some(decode_file(&v)?)),
                None => Ok(None),
            }
        })
    }

    /// See [`crate::meta::Meta::list_files`].
    pub async fn list_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        let after = after.map(Uuid::into_bytes);
        let lo = after
            .as_ref()
            .map_or(Bound::Unbounded, |a| Bound::Excluded(&a[..]));
        pg_read!(self, MetaError, |tx| {
            tx.range(Table::Files, lo, Bound::Unbounded, Some(limit))
                .await?
                .iter()
                .map(|(_, v)| decode_file(v))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::list_listed_files`].
    pub async fn list_listed_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            let mut page = Vec::with_capacity(limit.min(1024));
            let mut cursor: Option<Vec<u8>> = after.map(|a| a.as_bytes().to_vec());
            while page.len() < limit {
                let lo = cursor.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let rows = tx
                    .range(Table::Files, lo, Bound::Unbounded, Some(SCAN_BATCH))
                    .await?;
                let exhausted = rows.len() < SCAN_BATCH;
                for (k, v) in &rows {
                    if page.len() >= limit {
                        break;
                    }
                    let file = decode_file(v)?;
                    if !file.name.starts_with(HIDDEN_NAME_PREFIX) {
                        page.push(file);
                    }
                    cursor = Some(k.clone());
                }
                if exhausted {
                    break;
                }
            }
            Ok(page)
        })
    }

    /// See [`crate::meta::Meta::delete_file`].
    pub async fn delete_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        let now = self.now();
        pg_write!(self, MetaError, |tx| { remove_file_in(&tx, id, now).await })
    }

    /// See [`crate::meta::Meta::file_count`].
    pub async fn file_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| { Ok(tx.count(Table::Files).await?) })
    }
}

/// Removes file `id` and queues its chunks for deletion, inside `tx`.
pub(super) async fn remove_file_in(
    tx: &Tx<'_>,
    id: &Uuid,
    now: u64,
) -> Result<Option<FileRecord>, MetaError> {
    let Some(value) = tx.remove(Table::Files, id.as_bytes()).await? else {
        return Ok(None);
    };
    let file = decode_file(&value)?;
    let entry = DeleteEntry::encoded(Some(*id), DeleteReason::FileDeleted, now)?;
    for p in &file.parts {
        let key = chunk_key(&p.node_id, &p.chunk_id);
        tx.delete(Table::ChunkRefs, &key).await?;
        tx.put(Table::DeleteQueue, &key, &entry).await?;
    }
    super::marks::forget_for_delete(tx, &file).await?;
    super::damaged::forget_in(tx, id).await?;
    Ok(Some(file))
}
