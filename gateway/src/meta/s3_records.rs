//! Records, key layouts and the listing logic of the S3 tables (buckets, objects, multipart
//! uploads). The S3 listener (`crate::s3`) is their only user, but they know nothing of S3's
//! wire format: they are sixfold's model of buckets and of objects made of segments.
//!
//! Key layouts (all tables created on open, so older databases gain them empty):
//! - `s3_buckets`: bucket name -> [`BucketRecord`];
//! - `s3_objects`: bucket name ‖ `0x00` ‖ object key -> [`ObjectRecord`]. Bucket names never
//!   contain `0x00`, so one bucket's objects are one key range, in the byte order of their keys
//!   (S3 lists in UTF-8 binary order too);
//! - `s3_uploads`: upload id (16 bytes) -> [`MultipartRecord`];
//! - `s3_parts`: upload id ‖ part number (u32, big endian) -> [`UploadedPart`], so one upload's
//!   parts are one range, in part number order;
//! - `s3_object_ids`: an object's own file id (16 bytes) -> its `s3_objects` key, for objects of
//!   several segments, which `/files/{id}` serves by that id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{FileRecord, MetaError};

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_unix_ms: u64,
}

/// A piece of an object: one sixfold file (itself split across up to six nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub file_id: Uuid,
    pub size: u64,
}

/// An object: its bytes are its segments' bytes, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    /// Without quotes: the hex MD5 of the bytes (single PUT), or `<hex>-<parts>` (multipart).
    pub etag: String,
    pub content_type: Option<String>,
    pub last_modified_unix_ms: u64,
    pub segments: Vec<Segment>,
    /// `x-amz-meta-*` values, names in lower case without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// The id `/files/{id}` serves the object by, when it is not its one segment's file id: a
    /// completed multipart upload's object takes the upload's id. Absent in records of
    /// objects completed before this field existed (reachable by S3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

/// An object found by its file id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectById {
    pub bucket: String,
    pub key: String,
    pub record: ObjectRecord,
    /// The segments' files, in order.
    pub files: Vec<FileRecord>,
}

impl ObjectRecord {
    /// The id `/files/{id}` serves this object by: its own, or its single segment's.
    pub fn file_id(&self) -> Option<Uuid> {
        match (self.id, self.segments.as_slice()) {
            (Some(id), _) => Some(id),
            (None, [only]) => Some(only.file_id),
            _ => None,
        }
    }

    /// The file ids of the segments.
    pub fn file_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.segments.iter().map(|s| s.file_id)
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartRecord {
    pub upload_id: Uuid,
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub initiated_unix_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
}

impl MultipartRecord {
    /// Uploads in ListMultipartUploads order: by key, then by start, then by id.
    pub fn sort_for_listing(uploads: &mut [MultipartRecord]) {
        uploads.sort_by(|a, b| {
            (a.key.as_str(), a.initiated_unix_ms, a.upload_id).cmp(&(
                b.key.as_str(),
                b.initiated_unix_ms,
                b.upload_id,
            ))
        });
    }
}

/// One uploaded part of a multipart upload: a committed (hidden) sixfold file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    pub part_number: u32,
    pub file_id: Uuid,
    pub size: u64,
    /// Hex MD5 of the part's bytes, without quotes.
    pub etag: String,
    pub last_modified_unix_ms: u64,
}

/// A part as CompleteMultipartUpload names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPartRef {
    pub part_number: u32,
    /// Without quotes; `None`: not checked.
    pub etag: Option<String>,
}

/// Smallest part of a multipart upload, except the last (S3's rule).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Highest part number (S3's rule).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Why an operation on buckets or objects was refused. Each maps to one S3 error code, in
/// `crate::s3::errors`.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("the bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("the bucket {0} already exists")]
    BucketExists(String),
    #[error("the bucket {0} is not empty")]
    BucketNotEmpty(String),
    #[error("the object {0} does not exist")]
    NoSuchKey(String),
    #[error("the multipart upload {0} does not exist")]
    NoSuchUpload(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error("the parts are not in ascending order of part number")]
    InvalidPartOrder,
    #[error(
        "part {part_number} is {size} bytes; every part but the last needs at least {MIN_PART_SIZE}"
    )]
    EntityTooSmall { part_number: u32, size: u64 },
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
}

// redb's per-operation error types, folded into `MetaError` as `super::error` does.
macro_rules! object_store_from_redb {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ObjectStoreError {
            fn from(e: $t) -> Self {
                ObjectStoreError::Meta(MetaError::from(e))
            }
        }
    )*};
}

object_store_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);

/// `bucket ‖ 0x00 ‖ key`.
pub fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 1 + key.len());
    out.extend_from_slice(bucket.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The bucket and object key of an [`object_key`], if it is one (valid UTF-8).
pub fn split_stored_key(stored: &[u8]) -> Option<(&str, &str)> {
    let at = stored.iter().position(|&b| b == 0)?;
    let bucket = std::str::from_utf8(&stored[..at]).ok()?;
    let key = std::str::from_utf8(&stored[at + 1..]).ok()?;
    Some((bucket, key))
}

/// The object key part of an [`object_key`] of `bucket`, if it is one (valid UTF-8).
pub fn split_object_key<'a>(bucket: &str, stored: &'a [u8]) -> Option<&'a str> {
    let rest = stored
        .strip_prefix(bucket.as_bytes())?
        .strip_prefix(&[0u8])?;
    std::str::from_utf8(rest).ok()
}

/// The end (exclusive) of `bucket`'s range in `s3_objects`: `bucket ‖ 0x01`.
pub fn bucket_range_end(bucket: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 1);
    out.extend_from_slice(bucket.as_bytes());
    out.push(1);
    out
}

/// `upload id ‖ part number` (big endian, so parts sort by number).
pub fn part_key(upload_id: &Uuid, part_number: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..16].copy_from_slice(upload_id.as_bytes());
    out[16..].copy_from_slice(&part_number.to_be_bytes());
    out
}

/// What a listing asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// List only what sorts after this (a key or a common prefix given back as a marker).
    pub after: Option<String>,
    pub max_keys: usize,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry<T> {
    Object { key: String, value: T },
    CommonPrefix(String),
}

impl<T> ListEntry<T> {
    /// The key, or the common prefix: what a next page starts after.
    pub fn name(&self) -> &str {
        match self {
            ListEntry::Object { key, .. } => key,
            ListEntry::CommonPrefix(p) => p,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage<T> {
    pub entries: Vec<ListEntry<T>>,
    /// More entries follow; the next page starts after the last entry's name.
    pub truncated: bool,
}

impl<T> ListPage<T> {
    /// Where the next page starts (after), when truncated.
    pub fn next_marker(&self) -> Option<&str> {
        if self.truncated {
            self.entries.last().map(ListEntry::name)
        } else {
            None
        }
    }
}

/// The first key a listing has to look at: the prefix, or just after the marker.
pub fn list_start(query: &ListQuery) -> String {
    match &query.after {
        Some(after) if after.as_str() >= query.prefix.as_str() => after.clone(),
        _ => query.prefix.clone(),
    }
}

/// Cuts one page out of `rows` (keys in ascending order, starting at [`list_start`]): keys
/// outside the prefix end the listing, keys sharing a common prefix (up to and including the
/// delimiter after the prefix) fold into one entry, and entries up to the marker are skipped.
/// Pure: the unit of the listing tests.
pub fn paginate<T, E, I>(rows: I, query: &ListQuery) -> Result<ListPage<T>, E>
where
    I: IntoIterator<Item = Result<(String, T), E>>,
{
    let mut entries: Vec<ListEntry<T>> = Vec::new();
    let mut truncated = false;
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    for row in rows {
        let (key, value) = row?;
        if !key.starts_with(&query.prefix) {
            if key.as_str() > query.prefix.as_str() {
                break;
            }
            continue;
        }
        if query
            .after
            .as_deref()
            .is_some_and(|after| key.as_str() <= after)
        {
            continue;
        }
        let entry = match delimiter.and_then(|d| {
            key[query.prefix.len()..]
                .find(d)
                .map(|i| key[..query.prefix.len() + i + d.len()].to_owned())
        }) {
            Some(common) => {
                let seen = entries.last().is_some_and(|e| e.name() == common);
                let passed = query.after.as_deref().is_some_and(|a| common.as_str() <= a);
                if seen || passed {
                    continue;
                }
                ListEntry::CommonPrefix(common)
            }
            None => ListEntry::Object { key, value },
        };
        if entries.len() >= query.max_keys {
            truncated = true;
            break;
        }
        entries.push(entry);
    }
    Ok(ListPage { entries, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_list_by_key_then_start_then_id() {
        let upload = |key: &str, at: u64, id: u128| MultipartRecord {
            upload_id: Uuid::from_u128(id),
            bucket: "b".into(),
            key: key.into(),
            content_type: None,
            initiated_unix_ms: at,
            user_metadata: BTreeMap::new(),
        };
        let mut all = vec![
            upload("b", 1, 1),
            upload("a", 5, 2),
            upload("a", 5, 1),
            upload("a", 2, 9),
        ];
        MultipartRecord::sort_for_listing(&mut all);
        let order: Vec<(&str, u64, u128)> = all
            .iter()
            .map(|u| (u.key.as_str(), u.initiated_unix_ms, u.upload_id.as_u128()))
            .collect();
        assert_eq!(order, [("a", 2, 9), ("a", 5, 1), ("a", 5, 2), ("b", 1, 1)]);
    }

    fn rows(keys: &[&str]) -> Vec<Result<(String, ()), ()>> {
        let mut keys: Vec<&str> = keys.to_vec();
        keys.sort_unstable();
        keys.into_iter().map(|k| Ok((k.to_owned(), ()))).collect()
    }

    fn names(page: &ListPage<()>) -> Vec<String> {
        page.entries
            .iter()
            .map(|e| match e {
                ListEntry::Object { key, .. } => key.clone(),
                ListEntry::CommonPrefix(p) => format!("{p}*"),
            })
            .collect()
    }

    /// Runs a listing the way the store does: rows from `list_start` on.
    fn list(keys: &[&str], query: &ListQuery) -> ListPage<()> {
        let start = list_start(query);
        let rows: Vec<_> = rows(keys)
            .into_iter()
            .filter(|r| r.as_ref().is_ok_and(|(k, _)| k.as_str() >= start.as_str()))
            .collect();
        paginate(rows, query).expect("page")
    }

    const KEYS: &[&str] = &["a", "b/1", "b/2", "b/c/3", "c", "d/4", "e"];

    #[test]
    fn flat_listing_pages_through_everything_once() {
        let mut query = ListQuery {
            max_keys: 3,
            ..ListQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = list(KEYS, &query);
            seen.extend(names(&page));
            match page.next_marker() {
                Some(m) => query.after = Some(m.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, KEYS);
    }

    #[test]
    fn delimiter_folds_common_prefixes_across_pages() {
        let query = ListQuery {
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..ListQuery::default()
        };
        assert_eq!(names(&list(KEYS, &query)), ["a", "b/*", "c", "d/*", "e"]);
        let mut query = ListQuery {
            max_keys: 2,
            ..query
        };
        let mut seen = Vec::new();
        loop {
            let page = list(KEYS, &query);
            assert!(page.entries.len() <= 2);
            seen.extend(names(&page));
            match page.next_marker() {
                Some(m) => query.after = Some(m.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ["a", "b/*", "c", "d/*", "e"]);
    }

    #[test]
    fn prefix_and_delimiter_list_one_level() {
        let query = ListQuery {
            prefix: "b/".into(),
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..ListQuery::default()
        };
        let page = list(KEYS, &query);
        assert_eq!(names(&page), ["b/1", "b/2", "b/c/*"]);
        assert!(!page.truncated);
    }

    #[test]
    fn start_after_and_exact_page_size() {
        let query = ListQuery {
            after: Some("b/2".into()),
            max_keys: 4,
            ..ListQuery::default()
        };
        let page = list(KEYS, &query);
        assert_eq!(names(&page), ["b/c/3", "c", "d/4", "e"]);
        // Exactly full, nothing after: not truncated.
        assert!(!page.truncated);
        let query = ListQuery {
            max_keys: 0,
            ..ListQuery::default()
        };
        let page = list(KEYS, &query);
        assert!(page.entries.is_empty() && page.truncated);
    }

    #[test]
    fn object_keys_group_by_bucket() {
        let k = object_key("photos", "a/b.jpg");
        assert_eq!(split_object_key("photos", &k), Some("a/b.jpg"));
        assert_eq!(split_object_key("photo", &k), None);
        assert!(k.as_slice() < bucket_range_end("photos").as_slice());
        assert!(object_key("photos", "").as_slice() < k.as_slice());
        // "photos-2"'s objects sort after the whole range of "photos".
        assert!(object_key("photos-2", "a").as_slice() > bucket_range_end("photos").as_slice());
        let p = part_key(&Uuid::nil(), 2);
        assert!(part_key(&Uuid::nil(), 1) < p && p < part_key(&Uuid::nil(), 10));
    }

    #[test]
    fn records_round_trip_through_the_codec() {
        use super::super::codec::{decode, encode};
        let object = ObjectRecord {
            size: 11,
            etag: "0123456789abcdef0123456789abcdef-2".into(),
            content_type: Some("text/plain".into()),
            last_modified_unix_ms: 5,
            segments: vec![Segment {
                file_id: Uuid::new_v4(),
                size: 11,
            }],
            user_metadata: BTreeMap::from([("a".into(), "b".into())]),
            id: None,
        };
        let bytes = encode(&object).expect("encode");
        assert_eq!(decode::<ObjectRecord>(&bytes).expect("decode"), object);
    }
}
