//! The S3 operations over sixfold's files: s3s parses and authenticates the request, these
//! methods call the domain (upload, download, meta) and answer with S3's types. Operations not
//! implemented here answer s3s's default, `501 NotImplemented`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, TrailingHeaders};
use uuid::Uuid;

use super::body::{CheckedBody, Digests, Expected, digests, failure_or};
use super::errors;
use super::names::{
    decode_token, encode_token, etag, listed, multipart_etag, timestamp, unquote, valid_bucket_name,
};
use crate::admission::Permit;
use crate::download::open_object;
use crate::http::AppState;
use crate::meta::s3_records::MAX_PART_NUMBER;
use crate::meta::{
    CompletedPartRef, FileRecord, HIDDEN_NAME_PREFIX, ListEntry, ListQuery, MetaStore,
    MultipartRecord, ObjectRecord, ObjectStoreError, Segment, UploadedPart, unix_ms_now,
};
use crate::metrics::UploadOutcome;
use crate::upload::FileInfo;

/// Largest part (S3's limit).
const MAX_PART_SIZE: u64 = 5 << 30;
/// Most keys, parts or uploads in one listing page (S3's limit).
const MAX_PAGE: usize = 1000;

/// The S3 API over one gateway's domain.
#[derive(Clone)]
pub struct SixfoldS3 {
    app: AppState,
}

impl SixfoldS3 {
    pub fn new(app: AppState) -> Self {
        SixfoldS3 { app }
    }

    /// The metadata, whose S3 errors callers map with [`errors::from_store`].
    fn store(&self) -> &dyn MetaStore {
        self.app.meta().as_ref()
    }

    /// Deletes one object (DeleteObject and each key of DeleteObjects); whether it was there.
    /// The caller wakes the cleanup, once per request.
    async fn remove_object(&self, bucket: &str, key: &str) -> S3Result<bool> {
        let removed = self
            .store()
            .delete_object(bucket, key)
            .await
            .map_err(errors::from_store)?;
        if removed {
            tracing::info!(%bucket, %key, "s3: object deleted");
        }
        Ok(removed)
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let name = bucket.to_owned();
        match self
            .store()
            .get_bucket(&name)
            .await
            .map_err(errors::from_store)?
        {
            Some(_) => Ok(()),
            None => Err(errors::from_store(ObjectStoreError::NoSuchBucket(
                bucket.to_owned(),
            ))),
        }
    }

    /// Streams `body` (of `len` bytes if known) into a new committed file named `name`,
    /// checking it against `expected` as it passes. Runs in its own task, as native uploads
    /// do, so that a client going away cannot cancel it half-way.
    async fn store_body<S, E>(
        &self,
        permit: Permit,
        name: String,
        content_type: Option<String>,
        incoming: Incoming<S>,
    ) -> S3Result<(FileRecord, Digests)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let Incoming {
            body,
            len,
            expected,
            trailers,
        } = incoming;
        let checked = CheckedBody::new(body, expected, trailers);
        let outcome = checked.outcome();
        let uploader = self.app.uploader().clone();
        let metrics = Arc::clone(self.app.metrics());
        let info = FileInfo {
            name: Some(name),
            content_type,
        };
        let task = tokio::spawn(async move {
            let _permit = permit;
            let _in_flight = metrics.upload_started();
            let result = match len {
                Some(len) => uploader.upload_sized(info, len, checked).await,
                None => uploader.upload_unsized(info, checked).await,
            };
            metrics.upload_finished(match result {
                Ok(_) => UploadOutcome::Ok,
                Err(_) => UploadOutcome::ClientError,
            });
            result
        });
        let result = task
            .await
            .map_err(|e| errors::internal(format_args!("upload task: {e}")))?;
        match result {
            Ok(file) => Ok((file, digests(&outcome)?)),
            Err(e) => {
                tracing::warn!(error = %e, "s3: upload failed");
                Err(failure_or(&outcome, errors::from_upload(e)))
            }
        }
    }

    /// An upload slot, taken before anything else of the upload is held.
    async fn upload_slot(&self) -> S3Result<Permit> {
        self.app
            .uploads()
            .admit()
            .await
            .map_err(errors::from_refused)
    }

    /// Reads bytes `start..start + len` of an object made of `files` as a stream, holding a
    /// download slot while it runs (`admit`), or none: a copy holds the upload slot of its
    /// destination only, so that it never holds one slot while it waits for another.
    async fn object_body(
        &self,
        files: Vec<FileRecord>,
        start: u64,
        len: u64,
        admit: bool,
    ) -> S3Result<StreamingBlob> {
        self.refuse_damaged(&files, start, len).await?;
        let permit = if admit {
            Some(
                self.app
                    .downloads()
                    .admit()
                    .await
                    .map_err(errors::from_refused)?,
            )
        } else {
            None
        };
        let body = open_object(
            self.app.store().clone(),
            Arc::clone(self.app.metrics()),
            files,
            start,
            len,
            permit,
        )
        .await
        .map_err(errors::from_download)?;
        Ok(StreamingBlob::wrap(super::read::SyncStream::new(body)))
    }

    /// A read that needs a part a node found corrupt or unreadable is refused before any
    /// header of success (`503 ServiceUnavailable`), as on the native API.
    async fn refuse_damaged(&self, files: &[FileRecord], start: u64, len: u64) -> S3Result<()> {
        let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        for read in crate::download::plan_reads(&sizes, start, len) {
            let file = &files[read.index];
            let Some(damage) = self
                .app
                .meta()
                .get_damage(&file.id)
                .await
                .map_err(errors::from_meta)?
            else {
                continue;
            };
            let fetches = crate::download::plan_fetches(file, read.start, read.len);
            if let Some(fetch) = crate::download::damaged_fetch(&fetches, &damage) {
                return Err(S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    format!(
                        "part {} of file {} was found corrupt or unreadable on node {}; it is \
                         not served",
                        fetch.index, file.id, fetch.node
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Copies bytes of object `source` into a new file: streamed through the gateway (a
    /// sixfold file is immutable and owned by one object, so its chunks are not shared).
    async fn copy_range(
        &self,
        source: &CopySource,
        range: Option<&str>,
        name: String,
        content_type: Option<String>,
    ) -> S3Result<(ObjectRecord, FileRecord, Digests)> {
        let CopySource::Bucket { bucket, key, .. } = source else {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "copies from access points are not supported",
            ));
        };
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let (record, files) = self
            .store()
            .get_object(&bucket, &key)
            .await
            .map_err(errors::from_store)?;
        let (start, len) = match range {
            None => (0, record.size),
            Some(text) => {
                let r = Range::parse(text)
                    .map_err(|_| errors::invalid_argument("bad x-amz-copy-source-range"))?;
                let r = r.check(record.size).map_err(|_| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRange,
                        "the copy range is not satisfiable",
                    )
                })?;
                (r.start, r.end - r.start)
            }
        };
        let permit = self.upload_slot().await?;
        let body = self.object_body(files, start, len, false).await?;
        let (file, digests) = self
            .store_body(
                permit,
                name,
                content_type,
                Incoming {
                    body,
                    len: Some(len),
                    expected: Expected::default(),
                    trailers: None,
                },
            )
            .await?;
        Ok((record, file, digests))
    }

    fn wake_cleanup(&self) {
        self.app.store().wake_cleanup();
    }
}

/// A request body on its way into a file: its announced length and what it must match.
struct Incoming<S> {
    body: S,
    len: Option<u64>,
    expected: Expected,
    trailers: Option<TrailingHeaders>,
}

fn checksum_of(d: &Digests, algo: super::body::Algo) -> Option<String> {
    d.checksums
        .iter()
        .find(|(a, _)| *a == algo)
        .map(|(_, v)| v.clone())
}

fn user_metadata(metadata: Option<Metadata>) -> BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn metadata_out(m: &BTreeMap<String, String>) -> Option<Metadata> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn parse_upload_id(id: &str) -> S3Result<Uuid> {
    Uuid::try_parse(id).map_err(|_| errors::no_such_upload(id))
}

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            errors::invalid_argument(format!(
                "part number must be an integer between 1 and {MAX_PART_NUMBER}"
            ))
        })
}

fn content_length(len: Option<i64>) -> S3Result<Option<u64>> {
    len.map(|l| u64::try_from(l).map_err(|_| errors::invalid_argument("negative Content-Length")))
        .transpose()
}

fn max_items(requested: Option<i32>) -> usize {
    requested.map_or(MAX_PAGE, |n| usize::try_from(n).unwrap_or(0).min(MAX_PAGE))
}

fn matches(condition: &ETagCondition, stored: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == stored,
    }
}

fn unix_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// The conditional request headers of GET and HEAD (RFC 9110 §13.2.2 order).
fn check_conditions(
    record: &ObjectRecord,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified = i64::try_from(record.last_modified_unix_ms / 1000).unwrap_or(i64::MAX);
    let failed = || S3Error::with_message(S3ErrorCode::PreconditionFailed, "a precondition failed");
    let not_modified = || S3Error::new(S3ErrorCode::NotModified);
    if let Some(c) = if_match {
        if !matches(c, &record.etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_unmodified_since
        && modified > unix_secs(t)
    {
        return Err(failed());
    }
    if let Some(c) = if_none_match {
        if matches(c, &record.etag) {
            return Err(not_modified());
        }
    } else if let Some(t) = if_modified_since
        && modified <= unix_secs(t)
    {
        return Err(not_modified());
    }
    Ok(())
}

/// The byte range a GET or HEAD asks for (`Range` or `partNumber`), as (start, len, ranged).
fn requested_range(
    record: &ObjectRecord,
    range: Option<&Range>,
    part: Option<i32>,
) -> S3Result<(u64, u64, bool)> {
    if let Some(n) = part {
        let n = part_number(n)?;
        let index = (n - 1) as usize;
        let Some(segment) = record.segments.get(index) else {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("the object has {} parts", record.segments.len()),
            ));
        };
        let start: u64 = record.segments[..index].iter().map(|s| s.size).sum();
        return Ok((start, segment.size, record.segments.len() > 1));
    }
    match range {
        None => Ok((0, record.size, false)),
        Some(r) => {
            let r = r.check(record.size).map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidRange,
                    "the requested range is not satisfiable",
                )
            })?;
            Ok((r.start, r.end - r.start, true))
        }
    }
}

fn content_range(start: u64, len: u64, size: u64) -> String {
    if len == 0 {
        format!("bytes */{size}")
    } else {
        format!("bytes {start}-{}/{size}", start + len - 1)
    }
}

fn parts_count(record: &ObjectRecord) -> Option<i32> {
    (record.etag.contains('-')).then(|| i32::try_from(record.segments.len()).unwrap_or(i32::MAX))
}

/// Entries of a listing page as S3 objects and common prefixes.
fn listing(entries: Vec<ListEntry<ObjectRecord>>, url: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut contents = Vec::new();
    let mut prefixes = Vec::new();
    for entry in entries {
        match entry {
            ListEntry::Object { key, value } => contents.push(Object {
                key: Some(listed(&key, url)),
                e_tag: Some(etag(&value.etag)),
                size: Some(i64::try_from(value.size).unwrap_or(i64::MAX)),
                last_modified: Some(timestamp(value.last_modified_unix_ms)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Object::default()
            }),
            ListEntry::CommonPrefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(listed(&p, url)),
            }),
        }
    }
    (contents, prefixes)
}

fn wants_url(encoding: Option<&EncodingType>) -> bool {
    encoding.is_some_and(|e| e.as_str() == EncodingType::URL)
}

#[async_trait::async_trait]
impl S3 for SixfoldS3 {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .store()
            .list_buckets()
            .await
            .map_err(errors::from_store)?;
        let buckets = buckets
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_unix_ms)),
                ..Bucket::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("sixfold".into()),
                id: Some("sixfold".into()),
            }),
            ..ListBucketsOutput::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket;
        if !valid_bucket_name(&name) {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidBucketName,
                "bucket names are 3-63 characters of a-z, 0-9, '.' and '-'",
            ));
        }
        let n = name.clone();
        self.store()
            .create_bucket(&n, unix_ms_now())
            .await
            .map_err(errors::from_store)?;
        tracing::info!(bucket = %name, "s3: bucket created");
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(super::REGION.into()),
            ..HeadBucketOutput::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        // us-east-1 is the empty location constraint.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket;
        let n = name.clone();
        self.store()
            .delete_bucket(&n)
            .await
            .map_err(errors::from_store)?;
        self.wake_cleanup();
        tracing::info!(bucket = %name, "s3: bucket deleted");
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let expected = Expected::from_headers(&req.headers);
        let trailers = req.trailing_headers;
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let len = content_length(input.content_length)?;
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
        });
        let permit = self.upload_slot().await?;
        let (file, digests) = self
            .store_body(
                permit,
                input.key.clone(),
                input.content_type.clone(),
                Incoming {
                    body,
                    len,
                    expected,
                    trailers,
                },
            )
            .await?;
        let record = ObjectRecord {
            size: file.size,
            etag: digests.md5_hex.clone(),
            content_type: input.content_type,
            last_modified_unix_ms: file.created_unix_ms,
            segments: vec![Segment {
                file_id: file.id,
                size: file.size,
            }],
            user_metadata: user_metadata(input.metadata),
            id: None,
        };
        let (bucket, key, stored) = (input.bucket.clone(), input.key.clone(), record.clone());
        let replaced = self
            .store()
            .put_object(&bucket, &key, &stored)
            .await
            .map_err(errors::from_store)?;
        if replaced.is_some() {
            self.wake_cleanup();
        }
        tracing::info!(bucket = %input.bucket, key = %input.key, size = file.size, file_id = %file.id, "s3: object stored");
        use super::body::Algo;
        Ok(with_file_id(
            S3Response::new(PutObjectOutput {
                e_tag: Some(etag(&record.etag)),
                checksum_crc32: checksum_of(&digests, Algo::Crc32),
                checksum_crc32c: checksum_of(&digests, Algo::Crc32c),
                checksum_crc64nvme: checksum_of(&digests, Algo::Crc64Nvme),
                checksum_sha1: checksum_of(&digests, Algo::Sha1),
                checksum_sha256: checksum_of(&digests, Algo::Sha256),
                size: Some(i64::try_from(file.size).unwrap_or(i64::MAX)),
                ..PutObjectOutput::default()
            }),
            record.file_id(),
        ))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let (record, files) = self
            .store()
            .get_object(&bucket, &key)
            .await
            .map_err(errors::from_store)?;
        check_conditions(
            &record,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (start, len, ranged) =
            requested_range(&record, input.range.as_ref(), input.part_number)?;
        let body = self.object_body(files, start, len, true).await?;
        Ok(with_file_id(
            S3Response::new(GetObjectOutput {
                body: Some(body),
                accept_ranges: Some("bytes".into()),
                content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
                content_range: ranged.then(|| content_range(start, len, record.size)),
                content_type: record.content_type.clone(),
                e_tag: Some(etag(&record.etag)),
                last_modified: Some(timestamp(record.last_modified_unix_ms)),
                metadata: metadata_out(&record.user_metadata),
                parts_count: parts_count(&record),
                ..GetObjectOutput::default()
            }),
            record.file_id(),
        ))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let record = self
            .store()
            .head_object(&bucket, &key)
            .await
            .map_err(errors::from_store)?;
        check_conditions(
            &record,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (start, len, ranged) =
            requested_range(&record, input.range.as_ref(), input.part_number)?;
        Ok(with_file_id(
            S3Response::new(HeadObjectOutput {
                accept_ranges: Some("bytes".into()),
                content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
                content_range: ranged.then(|| content_range(start, len, record.size)),
                content_type: record.content_type.clone(),
                e_tag: Some(etag(&record.etag)),
                last_modified: Some(timestamp(record.last_modified_unix_ms)),
                metadata: metadata_out(&record.user_metadata),
                parts_count: parts_count(&record),
                ..HeadObjectOutput::default()
            }),
            record.file_id(),
        ))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        if self
            .remove_object(&req.input.bucket, &req.input.key)
            .await?
        {
            self.wake_cleanup();
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket;
        self.require_bucket(&bucket).await?;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        let mut any = false;
        for object in req.input.delete.objects {
            match self.remove_object(&bucket, &object.key).await {
                Ok(removed) => {
                    any |= removed;
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            ..DeletedObject::default()
                        });
                    }
                }
                Err(e) => failed.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(object.key),
                    message: e.message().map(str::to_owned),
                    version_id: None,
                }),
            }
        }
        if any {
            self.wake_cleanup();
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!failed.is_empty()).then_some(failed),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let url = wants_url(input.encoding_type.as_ref());
        let after = match &input.continuation_token {
            Some(token) => Some(decode_token(token).ok_or_else(|| {
                errors::invalid_argument("the continuation token is not one this gateway made")
            })?),
            None => input.start_after.clone(),
        };
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            after,
            max_keys: max_items(input.max_keys),
        };
        let bucket = input.bucket.clone();
        let q = query.clone();
        let page = self
            .store()
            .list_objects(&bucket, &q)
            .await
            .map_err(errors::from_store)?;
        let next = page.next_marker().map(encode_token);
        let truncated = page.truncated;
        let count = page.entries.len();
        let (contents, prefixes) = listing(page.entries, url);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(listed(&query.prefix, url)),
            delimiter: input.delimiter.map(|d| listed(&d, url)),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(i32::MAX)),
            key_count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            start_after: input.start_after.map(|s| listed(&s, url)),
            is_truncated: Some(truncated),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..ListObjectsV2Output::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let url = wants_url(input.encoding_type.as_ref());
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys: max_items(input.max_keys),
        };
        let bucket = input.bucket.clone();
        let q = query.clone();
        let page = self
            .store()
            .list_objects(&bucket, &q)
            .await
            .map_err(errors::from_store)?;
        let next = page.next_marker().map(|m| listed(m, url));
        let truncated = page.truncated;
        let (contents, prefixes) = listing(page.entries, url);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(listed(&query.prefix, url)),
            delimiter: input.delimiter.map(|d| listed(&d, url)),
            marker: Some(input.marker.map(|m| listed(&m, url)).unwrap_or_default()),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(i32::MAX)),
            is_truncated: Some(truncated),
            next_marker: next,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..ListObjectsOutput::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let record = MultipartRecord {
            upload_id: Uuid::new_v4(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            content_type: input.content_type,
            initiated_unix_ms: unix_ms_now(),
            user_metadata: user_metadata(input.metadata),
        };
        let upload_id = record.upload_id;
        self.store()
            .create_multipart(&record)
            .await
            .map_err(errors::from_store)?;
        tracing::info!(bucket = %input.bucket, key = %input.key, %upload_id, "s3: multipart upload created");
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id.to_string()),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let expected = Expected::from_headers(&req.headers);
        let trailers = req.trailing_headers;
        let input = req.input;
        let upload_id = parse_upload_id(&input.upload_id)?;
        let number = part_number(input.part_number)?;
        let upload = self
            .store()
            .get_multipart(&upload_id)
            .await
            .map_err(errors::from_store)?
            .filter(|u| u.bucket == input.bucket && u.key == input.key)
            .ok_or_else(|| errors::no_such_upload(&input.upload_id))?;
        let len = content_length(input.content_length)?;
        if len.is_some_and(|l| l > MAX_PART_SIZE) {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooLarge,
                format!("a part is at most {MAX_PART_SIZE} bytes"),
            ));
        }
        let body = input.body.unwrap_or_else(|| {
            StreamingBlob::wrap(futures_util::stream::empty::<Result<Bytes, std::io::Error>>())
        });
        let permit = self.upload_slot().await?;
        let (file, digests) = self
            .store_body(
                permit,
                format!("{HIDDEN_NAME_PREFIX}{upload_id}/{number}"),
                upload.content_type.clone(),
                Incoming {
                    body,
                    len,
                    expected,
                    trailers,
                },
            )
            .await?;
        let part = UploadedPart {
            part_number: number,
            file_id: file.id,
            size: file.size,
            etag: digests.md5_hex.clone(),
            last_modified_unix_ms: file.created_unix_ms,
        };
        let stored = part.clone();
        self.store()
            .put_part(&upload_id, &stored)
            .await
            .map_err(errors::from_store)?;
        self.wake_cleanup();
        use super::body::Algo;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: checksum_of(&digests, Algo::Crc32),
            checksum_crc32c: checksum_of(&digests, Algo::Crc32c),
            checksum_crc64nvme: checksum_of(&digests, Algo::Crc64Nvme),
            checksum_sha1: checksum_of(&digests, Algo::Sha1),
            checksum_sha256: checksum_of(&digests, Algo::Sha256),
            ..UploadPartOutput::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let upload_id = parse_upload_id(&input.upload_id)?;
        let number = part_number(input.part_number)?;
        let upload = self
            .store()
            .get_multipart(&upload_id)
            .await
            .map_err(errors::from_store)?
            .filter(|u| u.bucket == input.bucket && u.key == input.key)
            .ok_or_else(|| errors::no_such_upload(&input.upload_id))?;
        let (_, file, digests) = self
            .copy_range(
                &input.copy_source,
                input.copy_source_range.as_deref(),
                format!("{HIDDEN_NAME_PREFIX}{upload_id}/{number}"),
                upload.content_type.clone(),
            )
            .await?;
        if file.size > MAX_PART_SIZE {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooLarge,
                format!("a part is at most {MAX_PART_SIZE} bytes"),
            ));
        }
        let part = UploadedPart {
            part_number: number,
            file_id: file.id,
            size: file.size,
            etag: digests.md5_hex.clone(),
            last_modified_unix_ms: file.created_unix_ms,
        };
        let stored = part.clone();
        self.store()
            .put_part(&upload_id, &stored)
            .await
            .map_err(errors::from_store)?;
        self.wake_cleanup();
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(timestamp(part.last_modified_unix_ms)),
                ..CopyPartResult::default()
            }),
            ..UploadPartCopyOutput::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload_id = parse_upload_id(&input.upload_id)?;
        let listed_parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                Ok(CompletedPartRef {
                    part_number: part_number(p.part_number.unwrap_or(0))?,
                    etag: p.e_tag.map(|e| unquote(e.value()).to_owned()),
                })
            })
            .collect::<S3Result<Vec<_>>>()?;
        // Objects obey the same size limit as files.
        let (_, uploaded) = self
            .store()
            .list_parts(&upload_id)
            .await
            .map_err(errors::from_store)?;
        let total: u64 = uploaded
            .iter()
            .filter(|p| listed_parts.iter().any(|l| l.part_number == p.part_number))
            .map(|p| p.size)
            .sum();
        let limit = self.app.uploader().settings().max_file_size;
        if total > limit {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooLarge,
                format!("the object would be {total} bytes; the limit is {limit}"),
            ));
        }
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let record = self
            .store()
            .complete_multipart(
                &upload_id,
                &bucket,
                &key,
                &listed_parts,
                unix_ms_now(),
                |parts| multipart_etag(parts.iter().map(|p| p.etag.as_str())),
            )
            .await
            .map_err(errors::from_store)?;
        self.wake_cleanup();
        tracing::info!(bucket = %input.bucket, key = %input.key, %upload_id, size = record.size, segments = record.segments.len(), "s3: multipart upload completed");
        Ok(with_file_id(
            S3Response::new(CompleteMultipartUploadOutput {
                bucket: Some(input.bucket.clone()),
                key: Some(input.key.clone()),
                e_tag: Some(etag(&record.etag)),
                location: Some(format!("/{}/{}", input.bucket, input.key)),
                ..CompleteMultipartUploadOutput::default()
            }),
            record.file_id(),
        ))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload_id = parse_upload_id(&req.input.upload_id)?;
        let parts = self
            .store()
            .abort_multipart(&upload_id)
            .await
            .map_err(errors::from_store)?;
        self.wake_cleanup();
        tracing::info!(%upload_id, parts, "s3: multipart upload aborted");
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload_id = parse_upload_id(&input.upload_id)?;
        let (upload, parts) = self
            .store()
            .list_parts(&upload_id)
            .await
            .map_err(errors::from_store)?;
        if upload.bucket != input.bucket || upload.key != input.key {
            return Err(errors::no_such_upload(&input.upload_id));
        }
        let after = input.part_number_marker.unwrap_or(0);
        let max = max_items(input.max_parts);
        let mut rest = parts
            .into_iter()
            .filter(|p| i64::from(p.part_number) > i64::from(after));
        let page: Vec<UploadedPart> = rest.by_ref().take(max).collect();
        let truncated = rest.next().is_some();
        let next = page
            .last()
            .filter(|_| truncated)
            .map(|p| i32::try_from(p.part_number).unwrap_or(i32::MAX));
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(truncated),
            parts: Some(
                page.into_iter()
                    .map(|p| Part {
                        part_number: Some(i32::try_from(p.part_number).unwrap_or(i32::MAX)),
                        e_tag: Some(etag(&p.etag)),
                        size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                        last_modified: Some(timestamp(p.last_modified_unix_ms)),
                        ..Part::default()
                    })
                    .collect(),
            ),
            ..ListPartsOutput::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let bucket = input.bucket.clone();
        let uploads = self
            .store()
            .list_multipart_uploads(&bucket)
            .await
            .map_err(errors::from_store)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let max = max_items(input.max_uploads);
        let mut rest = uploads.into_iter().filter(|u| {
            u.key.starts_with(&prefix)
                && (key_marker.is_empty()
                    || u.key > key_marker
                    || (u.key == key_marker
                        && !id_marker.is_empty()
                        && u.upload_id.to_string() > id_marker))
        });
        let page: Vec<MultipartRecord> = rest.by_ref().take(max).collect();
        let truncated = rest.next().is_some();
        let url = wants_url(input.encoding_type.as_ref());
        let (next_key, next_id) = match page.last().filter(|_| truncated) {
            Some(u) => (Some(listed(&u.key, url)), Some(u.upload_id.to_string())),
            None => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: Some(i32::try_from(max).unwrap_or(i32::MAX)),
            is_truncated: Some(truncated),
            uploads: Some(
                page.into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(listed(&u.key, url)),
                        upload_id: Some(u.upload_id.to_string()),
                        initiated: Some(timestamp(u.initiated_unix_ms)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..MultipartUpload::default()
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..ListMultipartUploadsOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (source, file, digests) = self
            .copy_range(&input.copy_source, None, input.key.clone(), None)
            .await?;
        let (content_type, metadata) = if replace {
            (input.content_type, user_metadata(input.metadata))
        } else {
            (source.content_type.clone(), source.user_metadata.clone())
        };
        let record = ObjectRecord {
            size: file.size,
            etag: digests.md5_hex,
            content_type,
            last_modified_unix_ms: file.created_unix_ms,
            segments: vec![Segment {
                file_id: file.id,
                size: file.size,
            }],
            user_metadata: metadata,
            id: None,
        };
        let (bucket, key, stored) = (input.bucket.clone(), input.key.clone(), record.clone());
        if self
            .store()
            .put_object(&bucket, &key, &stored)
            .await
            .map_err(errors::from_store)?
            .is_some()
        {
            self.wake_cleanup();
        }
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&record.etag)),
                last_modified: Some(timestamp(record.last_modified_unix_ms)),
                ..CopyObjectResult::default()
            }),
            ..CopyObjectOutput::default()
        }))
    }
}

/// Header naming the sixfold file id an object is served by on the native API
/// (`GET /files/{id}`): its single segment's file, or (multipart) the upload's id.
pub const FILE_ID_HEADER: &str = "x-sixfold-file-id";

fn with_file_id<T>(mut response: S3Response<T>, id: Option<uuid::Uuid>) -> S3Response<T> {
    if let Some(id) = id
        && let Ok(value) = axum::http::HeaderValue::from_str(&id.to_string())
    {
        response.headers.insert(FILE_ID_HEADER, value);
    }
    response
}
