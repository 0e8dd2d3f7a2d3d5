//! S3 objects (see `crate::meta::s3_objects`).

use std::ops::Bound;

use super::buckets::remove_files_in;
use super::files::decode_file;
use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::buckets::OBJECTS_NAME;
use crate::meta::codec::{decode, encode};
use uuid::Uuid;

use crate::meta::s3_records::{
    ListPage, ListQuery, ObjectById, ObjectRecord, ObjectStoreError, bucket_range_end, list_start,
    object_key, paginate, split_object_key, split_stored_key,
};
use crate::meta::{FileRecord, MetaError};

/// Objects read per statement while a listing fills its page.
const LIST_BATCH: usize = 1000;

fn decode_object(bytes: &[u8]) -> Result<ObjectRecord, ObjectStoreError> {
    Ok(decode(bytes).map_err(MetaError::corrupt(OBJECTS_NAME))?)
}

/// Stores `record` under `bucket`/`key` inside `tx` (see `crate::meta::s3_objects`).
pub(super) async fn put_object_in(
    tx: &Tx<'_>,
    bucket: &str,
    key: &str,
    record: &ObjectRecord,
    now: u64,
) -> Result<Option<ObjectRecord>, ObjectStoreError> {
    if !tx.contains(Table::Buckets, bucket.as_bytes()).await? {
        return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
    }
    let value = encode(record).map_err(MetaError::corrupt(OBJECTS_NAME))?;
    let stored_key = object_key(bucket, key);
    let old = match tx.insert(Table::Objects, &stored_key, &value).await? {
        Some(old) => Some(decode_object(&old)?),
        None => None,
    };
    if let Some(old_id) = old.as_ref().and_then(|o| o.id) {
        tx.delete(Table::ObjectIds, old_id.as_bytes()).await?;
    }
    if let Some(id) = record.id {
        tx.put(Table::ObjectIds, id.as_bytes(), &stored_key).await?;
    }
    if let Some(old) = &old {
        let kept: Vec<_> = record.file_ids().collect();
        remove_files_in(
            tx,
            old.file_ids().filter(|id| !kept.contains(id)).collect(),
            now,
        )
        .await?;
    }
    Ok(old)
}

async fn segment_files_in(
    tx: &Tx<'_>,
    record: &ObjectRecord,
) -> Result<Vec<FileRecord>, ObjectStoreError> {
    let mut segments = Vec::with_capacity(record.segments.len());
    for segment in &record.segments {
        let Some(value) = tx.get(Table::Files, segment.file_id.as_bytes()).await? else {
            return Err(MetaError::InvalidRecord(format!(
                "an object's segment file {} is missing",
                segment.file_id
            ))
            .into());
        };
        segments.push(decode_file(&value)?);
    }
    Ok(segments)
}

async fn object_in(tx: &Tx<'_>, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectStoreError> {
    if !tx.contains(Table::Buckets, bucket.as_bytes()).await? {
        return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
    }
    match tx.get(Table::Objects, &object_key(bucket, key)).await? {
        Some(v) => decode_object(&v),
        None => Err(ObjectStoreError::NoSuchKey(key.to_owned())),
    }
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::put_object`].
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Option<ObjectRecord>, ObjectStoreError> {
        let now = self.now();
        let result = pg_write!(self, ObjectStoreError, |tx| {
            put_object_in(&tx, bucket, key, record, now).await
        });
        if let Err(ObjectStoreError::NoSuchBucket(_)) = &result {
            pg_write!(self, MetaError, |tx| {
                remove_files_in(&tx, record.file_ids().collect(), now).await
            })?;
        }
        result
    }

    /// See [`crate::meta::Meta::get_object`].
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Vec<FileRecord>), ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            let record = object_in(&tx, bucket, key).await?;
            let segments = segment_files_in(&tx, &record).await?;
            Ok((record, segments))
        })
    }

    /// See [`crate::meta::Meta::object_by_id`].
    pub async fn object_by_id(&self, id: &Uuid) -> Result<Option<ObjectById>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            let Some(stored) = tx.get(Table::ObjectIds, id.as_bytes()).await? else {
                return Ok(None);
            };
            let (bucket, key) = split_stored_key(&stored).ok_or_else(|| {
                MetaError::InvalidRecord("an object id names a key that is not UTF-8".into())
            })?;
            let Some(value) = tx.get(Table::Objects, &stored).await? else {
                return Ok(None);
            };
            let record = decode_object(&value)?;
            let files = segment_files_in(&tx, &record).await?;
            Ok(Some(ObjectById {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                record,
                files,
            }))
        })
    }

    /// See [`crate::meta::Meta::head_object`].
    pub async fn head_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectRecord, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            object_in(&tx, bucket, key).await
        })
    }

    /// See [`crate::meta::Meta::delete_object`].
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError> {
        let now = self.now();
        pg_write!(self, ObjectStoreError, |tx| {
            if !tx.contains(Table::Buckets, bucket.as_bytes()).await? {
                return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
            }
            match tx.remove(Table::Objects, &object_key(bucket, key)).await? {
                Some(v) => {
                    let record = decode_object(&v)?;
                    if let Some(id) = record.id {
                        tx.delete(Table::ObjectIds, id.as_bytes()).await?;
                    }
                    remove_files_in(&tx, record.file_ids().collect(), now).await?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    /// See [`crate::meta::Meta::list_objects`]: the rows are read a batch at a time until
    /// [`paginate`] has its page or the bucket's range ends.
    pub async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage<ObjectRecord>, ObjectStoreError> {
        pg_read!(self, ObjectStoreError, |tx| {
            if !tx.contains(Table::Buckets, bucket.as_bytes()).await? {
                return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
            }
            let start = object_key(bucket, &list_start(query));
            let end = bucket_range_end(bucket);
            let mut rows: Vec<(String, ObjectRecord)> = Vec::new();
            let mut cursor: Option<Vec<u8>> = None;
            loop {
                let lo = match &cursor {
                    Some(c) => Bound::Excluded(&c[..]),
                    None => Bound::Included(&start[..]),
                };
                let batch = tx
                    .range(
                        Table::Objects,
                        lo,
                        Bound::Excluded(&end[..]),
                        Some(LIST_BATCH),
                    )
                    .await?;
                let exhausted = batch.len() < LIST_BATCH;
                let mut past_prefix = false;
                for (k, v) in &batch {
                    let name = split_object_key(bucket, k)
                        .ok_or_else(|| {
                            MetaError::InvalidRecord("an object key is not UTF-8".into())
                        })?
                        .to_owned();
                    past_prefix |=
                        !name.starts_with(&query.prefix) && name.as_str() > query.prefix.as_str();
                    rows.push((name, decode_object(v)?));
                }
                cursor = batch.last().map(|(k, _)| k.clone());
                let page = paginate(
                    rows.iter()
                        .map(|(k, v)| Ok::<_, ObjectStoreError>((k.clone(), v.clone()))),
                    query,
                )?;
                if page.truncated || exhausted || past_prefix {
                    return Ok(page);
                }
            }
        })
    }
}
