//! What `/files/{id}` names: a file, or an S3 object made of several segment files (a completed
//! multipart upload), which is served by its own id as one file whose bytes are its segments'
//! bytes in order. No byte is copied to make it one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::download::{self, Fetch};
use crate::meta::{FileRecord, ObjectById, ObjectStoreError};
use crate::time_fmt::rfc3339_from_unix_ms;

/// A file, or an object of several segments.
pub enum Served {
    File(FileRecord),
    Object(ObjectById),
}

/// One segment of an object in `GET /files/{id}/meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    /// The segment's own file (`GET /files/{file_id}` serves that segment alone).
    pub file_id: Uuid,
    /// Where the segment starts in the object.
    pub offset: u64,
    pub size: u64,
    /// xxh3-128 of the segment's bytes.
    pub checksum: String,
}

/// The S3 name of an object in `GET /files/{id}/meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectView {
    pub bucket: String,
    pub key: String,
    /// The S3 ETag (`md5 of the part md5s-N` for a multipart object), without quotes.
    pub etag: String,
    pub segments: Vec<SegmentView>,
}

/// Looks `id` up as a file, then as an object's own id.
pub async fn find(app: &AppState, id: Uuid) -> Result<Served, ApiError> {
    if let Some(file) = app.meta().get_file(&id).await? {
        return Ok(Served::File(file));
    }
    match app.meta().object_by_id(&id).await {
        Ok(Some(object)) => Ok(Served::Object(object)),
        Ok(None) => Err(ApiError::not_found(format!("no file {id}"))),
        Err(e) => Err(object_error(id, e)),
    }
}

/// An object lookup that failed: gone meanwhile is a 404, anything else the metadata's fault.
fn object_error(id: Uuid, e: ObjectStoreError) -> ApiError {
    match e {
        ObjectStoreError::NoSuchBucket(_) | ObjectStoreError::NoSuchKey(_) => {
            ApiError::not_found(format!("no file {id}"))
        }
        ObjectStoreError::Meta(e) => e.into(),
        other => ApiError::internal(format!("object {id}: {other}")),
    }
}

impl Served {
    pub fn size(&self) -> u64 {
        match self {
            Served::File(f) => f.size,
            Served::Object(o) => o.record.size,
        }
    }

    /// The name downloads are offered under: an object's is its key's last path segment.
    pub fn name(&self) -> &str {
        match self {
            Served::File(f) => &f.name,
            Served::Object(o) => o.key.rsplit('/').next().unwrap_or(&o.key),
        }
    }

    pub fn content_type(&self) -> Option<&str> {
        match self {
            Served::File(f) => f.content_type.as_deref(),
            Served::Object(o) => o.record.content_type.as_deref(),
        }
    }

    /// What the `ETag` says: a file's xxh3-128, an object's S3 ETag.
    pub fn etag(&self) -> &str {
        match self {
            Served::File(f) => &f.checksum,
            Served::Object(o) => &o.record.etag,
        }
    }

    /// The files holding the bytes, in order.
    pub fn files(&self) -> &[FileRecord] {
        match self {
            Served::File(f) => std::slice::from_ref(f),
            Served::Object(o) => &o.files,
        }
    }

    /// Every part read that bytes `start..start + len` need, across the segments.
    pub fn fetches(&self, start: u64, len: u64) -> Vec<Fetch> {
        let files = self.files();
        let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        download::plan_reads(&sizes, start, len)
            .into_iter()
            .flat_map(|read| download::plan_fetches(&files[read.index], read.start, read.len))
            .collect()
    }

    /// The object's view for `/files/{id}/meta` (`None` for a plain file).
    pub fn object_view(&self) -> Option<ObjectView> {
        let Served::Object(o) = self else {
            return None;
        };
        let mut offset = 0;
        let segments = o
            .files
            .iter()
            .map(|f| {
                let view = SegmentView {
                    file_id: f.id,
                    offset,
                    size: f.size,
                    checksum: f.checksum.clone(),
                };
                offset += f.size;
                view
            })
            .collect();
        Some(ObjectView {
            bucket: o.bucket.clone(),
            key: o.key.clone(),
            etag: o.record.etag.clone(),
            segments,
        })
    }

    /// When the file was committed (an object: completed).
    pub fn created(&self) -> String {
        match self {
            Served::File(f) => rfc3339_from_unix_ms(f.created_unix_ms),
            Served::Object(o) => rfc3339_from_unix_ms(o.record.last_modified_unix_ms),
        }
    }

    /// Removes it from the metadata (an object: from its bucket, with its segment files) and
    /// returns the files whose chunks are now queued for deletion; `None` if it was gone.
    pub async fn remove(self, app: &AppState) -> Result<Option<Vec<FileRecord>>, ApiError> {
        match self {
            Served::File(f) => Ok(app.meta().delete_file(&f.id).await?.map(|f| vec![f])),
            Served::Object(o) => {
                let id = o.record.file_id().unwrap_or_default();
                match app.meta().delete_object(&o.bucket, &o.key).await {
                    Ok(true) => Ok(Some(o.files)),
                    Ok(false) => Ok(None),
                    Err(e) => Err(object_error(id, e)),
                }
            }
        }
    }
}
