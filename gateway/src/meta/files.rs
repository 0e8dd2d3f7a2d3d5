//! Committed files: lookup, listing, deletion.

use std::ops::Bound;

use redb::{ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::codec::decode;
use super::records::{DeleteEntry, DeleteReason, FileRecord};
use super::tables::{CHUNK_REFS, DELETE_QUEUE, FILES, FILES_NAME, chunk_key};
use super::{Meta, MetaError};

/// Files whose name starts with this are not listed by `GET /files` (they are still served by
/// id): the S3 layer names its multipart segments so.
pub const HIDDEN_NAME_PREFIX: &str = ".s3-multipart/";

impl Meta {
    /// The committed file `id`, if any.
    pub fn get_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        self.read(|txn| {
            let files = txn.open_table(FILES)?;
            let Some(value) = files.get(id.as_bytes())? else {
                return Ok(None);
            };
            decode(value.value())
                .map(Some)
                .map_err(MetaError::corrupt(FILES_NAME))
        })
    }

    /// Up to `limit` files with ids above `after` (from the start if `None`), in id order. Feed
    /// the last id of a page back as `after` for the next page; every file is listed once.
    pub fn list_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        self.read(|txn| {
            let files = txn.open_table(FILES)?;
            let after = after.map(Uuid::into_bytes);
            let start = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            let mut page = Vec::with_capacity(limit.min(1024));
            for row in files
                .range::<&[u8; 16]>((start, Bound::Unbounded))?
                .take(limit)
            {
                let (_, value) = row?;
                page.push(decode(value.value()).map_err(MetaError::corrupt(FILES_NAME))?);
            }
            Ok(page)
        })
    }

    /// [`Meta::list_files`] without the files named with [`HIDDEN_NAME_PREFIX`] (the S3
    /// layer's multipart segments): what `GET /files` lists. Pages stay full and `after` works
    /// the same, the hidden files are skipped as the range is read.
    pub fn list_listed_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        self.read(|txn| {
            let files = txn.open_table(FILES)?;
            let after = after.map(Uuid::into_bytes);
            let start = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            let mut page = Vec::with_capacity(limit.min(1024));
            for row in files.range::<&[u8; 16]>((start, Bound::Unbounded))? {
                if page.len() >= limit {
                    break;
                }
                let (_, value) = row?;
                let file: FileRecord =
                    decode(value.value()).map_err(MetaError::corrupt(FILES_NAME))?;
                if !file.name.starts_with(HIDDEN_NAME_PREFIX) {
                    page.push(file);
                }
            }
            Ok(page)
        })
    }

    /// Removes file `id` and queues its chunks for deletion, in one transaction. Returns the
    /// removed record (its parts say which chunks to delete now), or `None` if there was none.
    pub fn delete_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        let now = self.clock.unix_ms();
        self.write(|txn| remove_file_in(txn, id, now))
    }

    /// Number of committed files.
    pub fn file_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(FILES)?.len()?))
    }
}

/// Removes file `id` and queues its chunks for deletion, inside `txn` (so that callers can join
/// it with other changes, as S3 objects made of several files do).
pub(super) fn remove_file_in(
    txn: &WriteTransaction,
    id: &Uuid,
    now: u64,
) -> Result<Option<FileRecord>, MetaError> {
    let mut files = txn.open_table(FILES)?;
    let Some(value) = files.remove(id.as_bytes())? else {
        return Ok(None);
    };
    let file: FileRecord = decode(value.value()).map_err(MetaError::corrupt(FILES_NAME))?;
    drop(value);
    let entry = DeleteEntry::encoded(Some(*id), DeleteReason::FileDeleted, now)?;
    let mut refs = txn.open_table(CHUNK_REFS)?;
    let mut queue = txn.open_table(DELETE_QUEUE)?;
    for p in &file.parts {
        let key = chunk_key(&p.node_id, &p.chunk_id);
        refs.remove(&key)?;
        queue.insert(&key, entry.as_slice())?;
    }
    super::marks::forget_for_delete(txn, &file)?;
    super::damaged::forget_in(txn, id)?;
    Ok(Some(file))
}
