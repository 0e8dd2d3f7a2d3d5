//! S3 objects in the metadata: object key -> ordered list of segment files, per bucket.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::buckets::{BUCKETS, OBJECTS, OBJECTS_NAME, remove_files_in};
use super::codec::{decode, encode};
use super::records::FileRecord;
use super::s3_records::{
    ListPage, ListQuery, ObjectRecord, ObjectStoreError, bucket_range_end, list_start, object_key,
    paginate, split_object_key,
};
use super::tables::{FILES, FILES_NAME};
use super::{Meta, MetaError};

fn bucket_exists(
    txn_buckets: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
) -> Result<bool, MetaError> {
    Ok(txn_buckets.get(bucket)?.is_some())
}

/// Stores `record` under `bucket`/`key` inside `txn`, replacing (and removing the files of) any
/// object there. If the bucket is gone, the record's own files are removed and the call fails.
pub(super) fn put_object_in(
    txn: &WriteTransaction,
    bucket: &str,
    key: &str,
    record: &ObjectRecord,
) -> Result<Option<ObjectRecord>, ObjectStoreError> {
    let buckets = txn.open_table(BUCKETS)?;
    if !bucket_exists(&buckets, bucket)? {
        return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
    }
    drop(buckets);
    let value = encode(record).map_err(MetaError::corrupt(OBJECTS_NAME))?;
    let mut objects = txn.open_table(OBJECTS)?;
    let stored_key = object_key(bucket, key);
    let old = match objects.insert(stored_key.as_slice(), value.as_slice())? {
        Some(old) => {
            Some(decode::<ObjectRecord>(old.value()).map_err(MetaError::corrupt(OBJECTS_NAME))?)
        }
        None => None,
    };
    drop(objects);
    if let Some(old) = &old {
        let kept: Vec<_> = record.file_ids().collect();
        remove_files_in(txn, old.file_ids().filter(|id| !kept.contains(id)))?;
    }
    Ok(old)
}

impl Meta {
    /// Records object `bucket`/`key` as `record` (whose segment files are committed), in one
    /// transaction that also removes the replaced object's files. A missing bucket fails with
    /// [`ObjectStoreError::NoSuchBucket`], and then the record's files are removed, so that an
    /// upload racing a bucket deletion leaves nothing behind.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Option<ObjectRecord>, ObjectStoreError> {
        let result = self.s3_write(|txn| put_object_in(txn, bucket, key, record));
        if let Err(ObjectStoreError::NoSuchBucket(_)) = &result {
            self.write(|txn| remove_files_in(txn, record.file_ids()))?;
        }
        result
    }

    /// Object `bucket`/`key` and its segments' files, from one snapshot.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Vec<FileRecord>), ObjectStoreError> {
        self.s3_read(|txn| {
            let record = object_in(txn, bucket, key)?;
            let files = txn.open_table(FILES)?;
            let mut segments = Vec::with_capacity(record.segments.len());
            for segment in &record.segments {
                let Some(value) = files.get(segment.file_id.as_bytes())? else {
                    return Err(MetaError::InvalidRecord(format!(
                        "object {bucket}/{key}: segment file {} is missing",
                        segment.file_id
                    ))
                    .into());
                };
                let file: FileRecord =
                    decode(value.value()).map_err(MetaError::corrupt(FILES_NAME))?;
                segments.push(file);
            }
            Ok((record, segments))
        })
    }

    /// Object `bucket`/`key` without its files.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectStoreError> {
        self.s3_read(|txn| object_in(txn, bucket, key))
    }

    /// Removes object `bucket`/`key` and its files. Returns whether there was one; a missing
    /// bucket is an error, a missing key is not (as in S3).
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError> {
        self.s3_write(|txn| {
            let buckets = txn.open_table(BUCKETS)?;
            if !bucket_exists(&buckets, bucket)? {
                return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
            }
            drop(buckets);
            let mut objects = txn.open_table(OBJECTS)?;
            let removed = match objects.remove(object_key(bucket, key).as_slice())? {
                Some(v) => Some(
                    decode::<ObjectRecord>(v.value()).map_err(MetaError::corrupt(OBJECTS_NAME))?,
                ),
                None => None,
            };
            drop(objects);
            match removed {
                Some(record) => {
                    remove_files_in(txn, record.file_ids())?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    /// One page of `bucket`'s objects (see [`paginate`]).
    pub fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage<ObjectRecord>, ObjectStoreError> {
        self.s3_read(|txn| {
            let buckets = txn.open_table(BUCKETS)?;
            if !bucket_exists(&buckets, bucket)? {
                return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
            }
            let objects = txn.open_table(OBJECTS)?;
            let start = object_key(bucket, &list_start(query));
            let end = bucket_range_end(bucket);
            let rows = objects.range(start.as_slice()..end.as_slice())?.map(
                |row| -> Result<(String, ObjectRecord), ObjectStoreError> {
                    let (k, v) = row.map_err(MetaError::from)?;
                    let key = split_object_key(bucket, k.value())
                        .ok_or_else(|| {
                            MetaError::InvalidRecord("an object key is not UTF-8".into())
                        })?
                        .to_owned();
                    let record = decode(v.value()).map_err(MetaError::corrupt(OBJECTS_NAME))?;
                    Ok((key, record))
                },
            );
            paginate(rows, query)
        })
    }
}

fn object_in(
    txn: &ReadTransaction,
    bucket: &str,
    key: &str,
) -> Result<ObjectRecord, ObjectStoreError> {
    let buckets = txn.open_table(BUCKETS)?;
    if !bucket_exists(&buckets, bucket)? {
        return Err(ObjectStoreError::NoSuchBucket(bucket.to_owned()));
    }
    let objects = txn.open_table(OBJECTS)?;
    let Some(value) = objects.get(object_key(bucket, key).as_slice())? else {
        return Err(ObjectStoreError::NoSuchKey(key.to_owned()));
    };
    Ok(decode(value.value()).map_err(MetaError::corrupt(OBJECTS_NAME))?)
}
