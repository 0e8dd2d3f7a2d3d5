//! S3 objects in the metadata: object key -> ordered list of segment files, per bucket.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::buckets::{BUCKETS, OBJECT_IDS, OBJECTS, OBJECTS_NAME, remove_files_in};
use super::codec::{decode, encode};
use super::records::FileRecord;
use super::s3_records::{
    ListPage, ListQuery, ObjectById, ObjectRecord, ObjectStoreError, bucket_range_end, list_start,
    object_key, paginate, split_object_key, split_stored_key,
};
use super::tables::{FILES, FILES_NAME};
use uuid::Uuid;

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
    now: u64,
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
    let mut ids = txn.open_table(OBJECT_IDS)?;
    if let Some(old_id) = old.as_ref().and_then(|o| o.id) {
        ids.remove(old_id.as_bytes())?;
    }
    if let Some(id) = record.id {
        ids.insert(id.as_bytes(), stored_key.as_slice())?;
    }
    drop(ids);
    if let Some(old) = &old {
        let kept: Vec<_> = record.file_ids().collect();
        remove_files_in(txn, old.file_ids().filter(|id| !kept.contains(id)), now)?;
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
        let now = self.clock.unix_ms();
        let result = self.write_as(|txn| put_object_in(txn, bucket, key, record, now));
        if let Err(ObjectStoreError::NoSuchBucket(_)) = &result {
            self.write_as(|txn| remove_files_in(txn, record.file_ids(), now))?;
        }
        result
    }

    /// Object `bucket`/`key` and its segments' files, from one snapshot.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Vec<FileRecord>), ObjectStoreError> {
        self.read_as(|txn| {
            let record = object_in(txn, bucket, key)?;
            let segments = segment_files_in(txn, &record)?;
            Ok((record, segments))
        })
    }

    /// Object `bucket`/`key` without its files.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectStoreError> {
        self.read_as(|txn| object_in(txn, bucket, key))
    }

    /// Removes object `bucket`/`key` and its files. Returns whether there was one; a missing
    /// bucket is an error, a missing key is not (as in S3).
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError> {
        let now = self.clock.unix_ms();
        self.write_as(|txn| {
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
                    if let Some(id) = record.id {
                        txn.open_table(OBJECT_IDS)?.remove(id.as_bytes())?;
                    }
                    remove_files_in(txn, record.file_ids(), now)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    /// The object whose own file id is `id` (a multipart object), with its segments' files.
    pub fn object_by_id(&self, id: &Uuid) -> Result<Option<ObjectById>, ObjectStoreError> {
        self.read_as(|txn| {
            let ids = txn.open_table(OBJECT_IDS)?;
            let Some(stored) = ids.get(id.as_bytes())? else {
                return Ok(None);
            };
            let stored = stored.value().to_vec();
            let (bucket, key) = split_stored_key(&stored).ok_or_else(|| {
                MetaError::InvalidRecord("an object id names a key that is not UTF-8".into())
            })?;
            let objects = txn.open_table(OBJECTS)?;
            let Some(value) = objects.get(stored.as_slice())? else {
                return Ok(None);
            };
            let record: ObjectRecord =
                decode(value.value()).map_err(MetaError::corrupt(OBJECTS_NAME))?;
            let files = segment_files_in(txn, &record)?;
            Ok(Some(ObjectById {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                record,
                files,
            }))
        })
    }

    /// One page of `bucket`'s objects (see [`paginate`]).
    pub fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage<ObjectRecord>, ObjectStoreError> {
        self.read_as(|txn| {
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

/// The files of `record`'s segments, in order.
fn segment_files_in(
    txn: &ReadTransaction,
    record: &ObjectRecord,
) -> Result<Vec<FileRecord>, ObjectStoreError> {
    let files = txn.open_table(FILES)?;
    let mut segments = Vec::with_capacity(record.segments.len());
    for segment in &record.segments {
        let Some(value) = files.get(segment.file_id.as_bytes())? else {
            return Err(MetaError::InvalidRecord(format!(
                "an object's segment file {} is missing",
                segment.file_id
            ))
            .into());
        };
        segments.push(decode(value.value()).map_err(MetaError::corrupt(FILES_NAME))?);
    }
    Ok(segments)
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

#[cfg(test)]
mod tests {

    use uuid::Uuid;

    use super::super::{PlannedPart, UploadSession};
    use super::*;
    use crate::split::{SplitPolicy, plan};

    fn fresh() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
        (dir, meta)
    }

    /// Commits a file of `size` bytes, as an upload would.
    fn file(meta: &Meta, size: u64) -> FileRecord {
        let ranges = plan(size, &SplitPolicy::default());
        let nodes: Vec<Uuid> = ranges.iter().map(|_| Uuid::new_v4()).collect();
        let session = UploadSession {
            file_id: Uuid::new_v4(),
            name: "f".into(),
            content_type: None,
            size: Some(size),
            created_unix_ms: 1,
            expires_unix_ms: u64::MAX,
            parts: PlannedPart::plan(&ranges, &nodes).expect("plan"),
            multipart: false,
            owner: None,
        };
        meta.begin_session(&session).expect("begin");
        let acks = session
            .parts
            .iter()
            .map(|p| p.verify_ack(p.len, 7, 7).expect("ack"))
            .collect();
        meta.commit_session(
            &session.file_id,
            acks,
            "0123456789abcdef0123456789abcdef".into(),
            size,
        )
        .expect("commit")
    }

    #[test]
    fn hidden_segment_files_are_not_listed_but_pages_stay_full() {
        let (_dir, meta) = fresh();
        let mut visible = Vec::new();
        for i in 0..20 {
            let f = file(&meta, 1);
            if i % 3 == 0 {
                // What the S3 layer names its segments.
                meta.write(|txn| {
                    let mut files = txn.open_table(FILES)?;
                    let mut hidden = f.clone();
                    hidden.name = format!("{}x/{i}", super::super::HIDDEN_NAME_PREFIX);
                    let value = encode(&hidden).map_err(MetaError::corrupt(FILES_NAME))?;
                    files.insert(f.id.as_bytes(), value.as_slice())?;
                    Ok(())
                })
                .expect("hide");
            } else {
                visible.push(f.id);
            }
        }
        visible.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = meta.list_listed_files(after, 4).expect("list");
            assert!(
                page.len() == 4 || (page.len() < 4 && seen.len() + page.len() == visible.len())
            );
            seen.extend(page.iter().map(|f| f.id));
            match page.last() {
                Some(last) if page.len() == 4 => after = Some(last.id),
                _ => break,
            }
        }
        assert_eq!(seen, visible);
        assert_eq!(meta.list_files(None, 100).expect("all").len(), 20);
    }
}
