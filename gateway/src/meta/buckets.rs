//! S3 buckets in the metadata, and the tables of the S3 model (see [`super::s3_records`] for the
//! key layouts). The tables are created on open: older databases gain them empty.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{decode, encode};
use super::files::remove_file_in;
use super::s3_records::{BucketRecord, MultipartRecord, ObjectStoreError, bucket_range_end};
use super::{Meta, MetaError};

/// Bucket name -> encoded [`BucketRecord`].
pub(crate) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("s3_buckets");
pub(crate) const BUCKETS_NAME: &str = "s3_buckets";
/// `bucket ‖ 0x00 ‖ key` -> encoded [`super::ObjectRecord`].
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("s3_objects");
pub(crate) const OBJECTS_NAME: &str = "s3_objects";
/// Upload id -> encoded [`MultipartRecord`].
pub(crate) const UPLOADS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("s3_uploads");
pub(crate) const UPLOADS_NAME: &str = "s3_uploads";
/// `upload id ‖ part number` -> encoded [`super::UploadedPart`].
pub(crate) const PARTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("s3_parts");
pub(crate) const PARTS_NAME: &str = "s3_parts";

pub(super) const OBJECT_IDS: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("s3_object_ids");

/// Creates the S3 tables if they are missing (called from [`Meta::open`]).
pub(super) fn create_s3_tables(txn: &WriteTransaction) -> Result<(), MetaError> {
    txn.open_table(BUCKETS)?;
    txn.open_table(OBJECTS)?;
    txn.open_table(UPLOADS)?;
    txn.open_table(PARTS)?;
    txn.open_table(OBJECT_IDS)?;
    Ok(())
}

impl Meta {
    /// Makes bucket `name` (already validated as an S3 bucket name).
    pub fn create_bucket(
        &self,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<BucketRecord, ObjectStoreError> {
        let record = BucketRecord {
            name: name.to_owned(),
            created_unix_ms: now_unix_ms,
        };
        let value = encode(&record).map_err(MetaError::corrupt(BUCKETS_NAME))?;
        self.write_as(|txn| {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.get(name)?.is_some() {
                return Err(ObjectStoreError::BucketExists(name.to_owned()));
            }
            buckets.insert(name, value.as_slice())?;
            Ok(record)
        })
    }

    pub fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, ObjectStoreError> {
        self.read_as(|txn| {
            let buckets = txn.open_table(BUCKETS)?;
            let Some(value) = buckets.get(name)? else {
                return Ok(None);
            };
            Ok(Some(
                decode(value.value()).map_err(MetaError::corrupt(BUCKETS_NAME))?,
            ))
        })
    }

    /// Every bucket, in name order.
    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>, ObjectStoreError> {
        self.read_as(|txn| {
            let buckets = txn.open_table(BUCKETS)?;
            let mut out = Vec::new();
            for row in buckets.iter()? {
                let (_, value) = row?;
                out.push(decode(value.value()).map_err(MetaError::corrupt(BUCKETS_NAME))?);
            }
            Ok(out)
        })
    }

    /// Removes bucket `name` if it holds no object; its multipart uploads in progress are
    /// aborted in the same transaction (their part files queued for deletion).
    pub fn delete_bucket(&self, name: &str) -> Result<(), ObjectStoreError> {
        let now = self.clock.unix_ms();
        self.write_as(|txn| {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.remove(name)?.is_none() {
                return Err(ObjectStoreError::NoSuchBucket(name.to_owned()));
            }
            let objects = txn.open_table(OBJECTS)?;
            let start = super::s3_records::object_key(name, "");
            let end = bucket_range_end(name);
            if objects
                .range(start.as_slice()..end.as_slice())?
                .next()
                .is_some()
            {
                return Err(ObjectStoreError::BucketNotEmpty(name.to_owned()));
            }
            let uploads = txn.open_table(UPLOADS)?;
            let mut aborted = Vec::new();
            for row in uploads.iter()? {
                let (_, value) = row?;
                let upload: MultipartRecord =
                    decode(value.value()).map_err(MetaError::corrupt(UPLOADS_NAME))?;
                if upload.bucket == name {
                    aborted.push(upload.upload_id);
                }
            }
            drop(uploads);
            for upload_id in aborted {
                super::multipart::abort_in(txn, &upload_id, now)?;
            }
            Ok(())
        })
    }
}

/// Removes the files `ids` (segments of a replaced or deleted object) inside `txn`.
pub(super) fn remove_files_in(
    txn: &WriteTransaction,
    ids: impl IntoIterator<Item = uuid::Uuid>,
    now: u64,
) -> Result<usize, MetaError> {
    let mut removed = 0;
    for id in ids {
        if remove_file_in(txn, &id, now)?.is_some() {
            removed += 1;
        } else {
            tracing::warn!(file_id = %id, "segment file of an S3 object was already gone");
        }
    }
    Ok(removed)
}
