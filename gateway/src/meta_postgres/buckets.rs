//! S3 buckets (see `crate::meta::buckets`).

use std::ops::Bound;

use uuid::Uuid;

use super::files::remove_file_in;
use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::MetaError;
use crate::meta::buckets::{BUCKETS_NAME, UPLOADS_NAME};
use crate::meta::codec::{decode, encode};
use crate::meta::s3_records::{
    BucketRecord, MultipartRecord, ObjectStoreError, bucket_range_end, object_key,
};

fn decode_bucket(bytes: &[u8]) -> Result<BucketRecord, ObjectStoreError> {
    Ok(decode(bytes).map_err(MetaError::corrupt(BUCKETS_NAME))?)
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::create_bucket`].
    pub async fn create_bucket(
        &self,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<BucketRecord, ObjectStoreError> {
        let record = BucketRecord {
            name: name.to_owned(),
            created_unix_ms: now_unix_ms,
        };
        let value = encode(&record).map_err(MetaError::corrupt(BUCKETS_NAME))?;
        pg_write!(self, ObjectStoreError, |tx| {
            if !tx
                .insert_new(Table::Buckets, name.as_bytes(), &value)
                .await?
            {
                return Err(ObjectStoreError::BucketExists(name.to_owned()));
            }
            Ok(record.clone())
        })
    }

    /// See [`crate::meta::Meta::get_bucket`].
    pub async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            match tx.get(Table::Buckets, name.as_bytes()).await? {
                Some(v) => Ok(Some(decode_bucket(&v)?)),
                None => Ok(None),
            }
        })
    }

    /// See [`crate::meta::Meta::list_buckets`].
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            tx.all(Table::Buckets)
                .await?
                .iter()
                .map(|(_, v)| decode_bucket(v))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::delete_bucket`].
    pub async fn delete_bucket(&self, name: &str) -> Result<(), ObjectStoreError> {
        let now = self.now();
        pg_write!(self, ObjectStoreError, |tx| {
            if !tx.delete(Table::Buckets, name.as_bytes()).await? {
                return Err(ObjectStoreError::NoSuchBucket(name.to_owned()));
            }
            let start = object_key(name, "");
            let end = bucket_range_end(name);
            let any = tx
                .range(
                    Table::Objects,
                    Bound::Included(&start[..]),
                    Bound::Excluded(&end[..]),
                    Some(1),
                )
                .await?;
            if !any.is_empty() {
                return Err(ObjectStoreError::BucketNotEmpty(name.to_owned()));
            }
            let mut aborted = Vec::new();
            for (_, v) in tx.all(Table::Uploads).await? {
                let upload: MultipartRecord =
                    decode(&v).map_err(MetaError::corrupt(UPLOADS_NAME))?;
                if upload.bucket == name {
                    aborted.push(upload.upload_id);
                }
            }
            for upload_id in aborted {
                super::multipart::abort_in(&tx, &upload_id, now).await?;
            }
            Ok(())
        })
    }
}

/// Removes the files `ids` (segments of a replaced or deleted object) inside `tx`.
pub(super) async fn remove_files_in(
    tx: &Tx<'_>,
    ids: Vec<Uuid>,
    now: u64,
) -> Result<usize, MetaError> {
    let mut removed = 0;
    for id in ids {
        if remove_file_in(tx, &id, now).await?.is_some() {
            removed += 1;
        } else {
            tracing::warn!(file_id = %id, "segment file of an S3 object was already gone");
        }
    }
    Ok(removed)
}
