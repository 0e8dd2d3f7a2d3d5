//! `/files` handlers: upload, download (GET and HEAD, ranges), metadata, delete, list.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::disposition::content_disposition;
use super::error::{ApiError, ErrorCode};
use super::range::{RangeDecision, decide};
use super::request_log::{LoggedByStream, RequestSummary};
use super::{AppState, parse_id, served};
use crate::auth::presign::{self, READ_METHOD_CLASS};
use crate::auth::{AuthError, Principal};
use crate::download;
use crate::meta::{FileRecord, unix_ms_now};
use crate::metrics::UploadOutcome;
use crate::time_fmt::rfc3339_from_unix_ms;
use crate::upload::drain::RequestBody;
use crate::upload::form::{boundary_from_content_type, percent_decode};
use crate::upload::multipart::MULTIPART_OVERHEAD_ALLOWANCE;
use crate::upload::{FileInfo, UploadError};

/// Header naming an uploaded raw body.
pub const FILE_NAME_HEADER: &str = "x-file-name";
/// Longest accepted file name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Default page size of `GET /files`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Largest page size of `GET /files`.
pub const MAX_LIST_LIMIT: usize = 1000;

/// `201` body of an upload.
#[derive(Debug, Serialize, Deserialize)]
pub struct UploadResponse {
    pub id: Uuid,
    pub name: String,
    pub size: u64,
    /// Number of parts.
    pub parts: usize,
    /// xxh3-128 of the file, 32 hex digits.
    pub checksum: String,
    pub content_type: Option<String>,
    pub created: String,
}

/// One part in `GET /files/{id}/meta`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartView {
    pub index: u32,
    pub offset: u64,
    pub length: u64,
    pub node_id: Uuid,
    pub chunk_id: String,
    /// crc32c of the stored chunk.
    pub crc32c: u32,
    /// Bytes in the stored chunk, present only when more than `length`: the part of a streamed
    /// multipart upload that also holds the end of the form after the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_length: Option<u64>,
}

/// `GET /files/{id}/meta`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: Uuid,
    pub name: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub created: String,
    /// xxh3-128 of the file; for an S3 object of several segments, its S3 ETag (each
    /// segment's xxh3-128 is in `object.segments`).
    pub checksum: String,
    /// Empty for an S3 object of several segments: each segment is a file with parts of its own.
    pub parts: Vec<PartView>,
    /// Present for an S3 object of several segments (a completed multipart upload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<served::ObjectView>,
    /// Set when a node found a part corrupt or unreadable: the file is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<super::admin_scrub::DamageView>,
}

/// An entry of `GET /files`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileSummary {
    pub id: Uuid,
    pub name: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub created: String,
    pub checksum: String,
    pub parts: usize,
}

/// `GET /files`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileList {
    pub files: Vec<FileSummary>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_after: Option<Uuid>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl From<&FileRecord> for FileMeta {
    fn from(f: &FileRecord) -> Self {
        FileMeta {
            id: f.id,
            name: f.name.clone(),
            size: f.size,
            content_type: f.content_type.clone(),
            created: rfc3339_from_unix_ms(f.created_unix_ms),
            checksum: f.checksum.clone(),
            parts: f
                .parts
                .iter()
                .map(|p| PartView {
                    index: p.index,
                    offset: p.offset,
                    length: p.len,
                    node_id: p.node_id,
                    chunk_id: hex(&p.chunk_id),
                    crc32c: p.crc32c,
                    stored_length: p.stored_len,
                })
                .collect(),
            object: None,
            damaged: None,
        }
    }
}

impl From<&FileRecord> for FileSummary {
    fn from(f: &FileRecord) -> Self {
        FileSummary {
            id: f.id,
            name: f.name.clone(),
            size: f.size,
            content_type: f.content_type.clone(),
            created: rfc3339_from_unix_ms(f.created_unix_ms),
            checksum: f.checksum.clone(),
            parts: f.parts.len(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// Where the file's bytes come from.
enum Source {
    /// A form of known length, streamed through.
    Form {
        body: RequestBody,
        length: u64,
        boundary: String,
    },
    /// A form without a length, spooled.
    FormUnsized { body: RequestBody, boundary: String },
    /// A raw body and its length, if announced.
    Body(RequestBody, Option<u64>),
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The client's name for the file: `X-File-Name`, else `?name=`.
///
/// The header is taken as UTF-8 bytes, except in the RFC 8187 form `UTF-8''<percent-encoded>`
/// (what clients that can only send ASCII headers use), which is decoded.
fn requested_name(headers: &HeaderMap, query: UploadQuery) -> Result<Option<String>, ApiError> {
    let name = match headers.get(FILE_NAME_HEADER) {
        Some(value) => Some(header_file_name(value.as_bytes())?),
        None => query.name,
    };
    match name {
        Some(n) if n.len() > MAX_NAME_BYTES => Err(ApiError::bad_request(format!(
            "the file name is longer than {MAX_NAME_BYTES} bytes"
        ))),
        Some(n) if n.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn header_file_name(raw: &[u8]) -> Result<String, ApiError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad_request("X-File-Name is not valid UTF-8"))?
        .trim();
    let prefix = "utf-8''";
    // `get`, not slicing: a name such as "résumé.pdf" has no char boundary at 7.
    if let Some(encoded) = text
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| text.get(prefix.len()..))
    {
        return percent_decode(encoded).ok_or_else(|| {
            ApiError::bad_request("X-File-Name: bad percent-encoding after UTF-8''")
        });
    }
    Ok(text.to_owned())
}

/// The type of a raw body. `application/x-www-form-urlencoded` is what `curl --data-binary`
/// sends by default, not a statement about the file, so it is dropped.
fn raw_content_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.trim();
    if ct.is_empty() || ct.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return None;
    }
    Some(ct.to_owned())
}

/// `POST /files` (and `POST /upload`).
pub async fn upload(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let announced = body.size_hint().exact();
    // From here on, a refusal leaves the body to a bounded background drain so that the client
    // gets the error response rather than a reset connection.
    let body = RequestBody::new(body);
    let query = Query::<UploadQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let headers = &parts.headers;
    let multipart = is_multipart(headers);
    let info = FileInfo {
        name: requested_name(headers, query)?,
        content_type: if multipart {
            None
        } else {
            raw_content_type(headers)
        },
    };
    let max = app.uploader().settings().max_file_size;
    // Decided before any byte of the body is read.
    if let Some(len) = announced {
        let allowed = if multipart {
            max.saturating_add(MULTIPART_OVERHEAD_ALLOWANCE)
        } else {
            max
        };
        if len > allowed {
            app.metrics().upload_finished(UploadOutcome::ClientError);
            return Err(ApiError::too_large(max));
        }
    }
    // Taken before the body is read or anything else is held: a refused upload costs nothing.
    let permit = app.uploads().admit().await?;
    let source = if multipart {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let boundary = boundary_from_content_type(content_type)
            .map_err(|e| ApiError::bad_request(format!("bad multipart request: {e}")))?;
        match announced {
            Some(length) => Source::Form {
                body,
                length,
                boundary,
            },
            None => Source::FormUnsized { body, boundary },
        }
    } else {
        Source::Body(body, announced)
    };
    // The upload runs in its own task so that a client going away mid-body cannot cancel it
    // half-way: it sees the broken body, aborts the session and cleans up.
    let uploader = app.uploader().clone();
    let metrics = app.metrics().clone();
    let task = tokio::spawn(async move {
        let _permit = permit;
        let _in_flight = metrics.upload_started();
        let result = match source {
            Source::Form {
                body,
                length,
                boundary,
            } => {
                uploader
                    .upload_form_sized(info, length, &boundary, body)
                    .await
            }
            Source::FormUnsized { body, boundary } => {
                uploader.upload_form_unsized(info, &boundary, body).await
            }
            Source::Body(body, Some(len)) => uploader.upload_sized(info, len, body).await,
            Source::Body(body, None) => uploader.upload_unsized(info, body).await,
        };
        let outcome = match &result {
            Ok(_) => UploadOutcome::Ok,
            Err(e) => super::upload_errors::outcome_of(super::upload_errors::code_of(e)),
        };
        metrics.upload_finished(outcome);
        result
    });
    let result = task
        .await
        .unwrap_or_else(|e| Err(UploadError::Internal(format!("upload task: {e}"))));
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(file) => {
            tracing::debug!(file_id = %file.id, size = file.size, elapsed_ms, "upload committed");
            let location = HeaderValue::from_str(&format!("/files/{}", file.id))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let body = UploadResponse {
                id: file.id,
                name: file.name.clone(),
                size: file.size,
                parts: file.parts.len(),
                checksum: file.checksum.clone(),
                content_type: file.content_type.clone(),
                created: rfc3339_from_unix_ms(file.created_unix_ms),
            };
            let mut response = (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response();
            response.extensions_mut().insert(RequestSummary {
                file_id: Some(file.id),
                size: Some(file.size),
            });
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(error = %e, elapsed_ms, "upload failed");
            Err(e.into())
        }
    }
}

/// `GET`/`HEAD /files/{id}` (and `/download/{id}`).
pub async fn download(
    State(app): State<AppState>,
    Path(raw_id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let served = served::find(&app, id).await?;
    let size = served.size();
    let etag = format!("\"{}\"", served.etag());
    let range = headers
        .get(header::RANGE)
        .filter(|_| if_range_allows(&headers, &etag))
        .map(HeaderValue::as_bytes);
    let (status, start, len) = match decide(range, size) {
        RangeDecision::Full => (StatusCode::OK, 0, size),
        RangeDecision::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeDecision::Unsatisfiable => return Err(ApiError::unsatisfiable_range(size)),
    };
    refuse_damaged(&app, &served, start, len).await?;
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_DISPOSITION,
            content_disposition(served.name()),
        )
        .header(
            header::CONTENT_TYPE,
            content_type_value(served.content_type()),
        );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response = response.header(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let fetches = served.fetches(start, len);
        if let Some(fetch) = fetches.iter().find(|f| app.store().is_down(f.node)) {
            return Err(ApiError::new(
                ErrorCode::NodeUnavailable,
                format!(
                    "part {} of the file is on node {}, which is down; retry later",
                    fetch.index, fetch.node
                ),
            )
            .with_retry_after(NODE_DOWN_RETRY_SECS));
        }
        let permit = app.downloads().admit().await?;
        let (store, metrics) = (app.store().clone(), app.metrics().clone());
        match served {
            served::Served::File(file) => Body::from_stream(
                download::open_body(store, metrics, &file, start, len, permit)
                    .await
                    .map_err(download_refused)?,
            ),
            served::Served::Object(object) => Body::from_stream(
                download::open_object(store, metrics, object.files, start, len, permit)
                    .await
                    .map_err(download_refused)?,
            ),
        }
    };
    let mut response = response
        .body(body)
        .map_err(|e| ApiError::internal(format!("response: {e}")))?;
    if method == Method::HEAD {
        response.extensions_mut().insert(RequestSummary {
            file_id: Some(id),
            size: Some(size),
        });
    } else {
        response.extensions_mut().insert(LoggedByStream);
    }
    Ok(response)
}

/// A read of a part a node found corrupt or unreadable is refused before any header of
/// success: `503 file_damaged`, instead of a `200` cut off where the bad block starts.
async fn refuse_damaged(
    app: &AppState,
    served: &served::Served,
    start: u64,
    len: u64,
) -> Result<(), ApiError> {
    let files = served.files();
    let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
    for read in download::plan_reads(&sizes, start, len) {
        let file = &files[read.index];
        let Some(damage) = app.meta().get_damage(&file.id).await? else {
            continue;
        };
        let fetches = download::plan_fetches(file, read.start, read.len);
        if let Some(fetch) = download::damaged_fetch(&fetches, &damage) {
            return Err(damaged_error(file, fetch));
        }
    }
    Ok(())
}

fn damaged_error(file: &FileRecord, fetch: &download::Fetch) -> ApiError {
    ApiError::new(
        ErrorCode::FileDamaged,
        format!(
            "part {} of file {} was found corrupt or unreadable on node {}; it is not served. \
             Replace the file from a source copy (upload it again) or delete it",
            fetch.index, file.id, fetch.node
        ),
    )
}

/// `Retry-After` of a download refused because a node it needs is down or not answering: about
/// the time a restarted node needs to register again.
const NODE_DOWN_RETRY_SECS: u64 = 5;

/// A download that failed before its first byte: a node that cannot be reached is a `503` the
/// client may retry, any other failure of the node a `502`.
fn download_refused(e: download::DownloadError) -> ApiError {
    tracing::warn!(error = %e, "download refused before the first byte");
    match &e {
        download::DownloadError::Node { source, .. }
            if matches!(
                source.kind,
                "unavailable" | "timeout" | "stream" | "unknown_node"
            ) =>
        {
            ApiError::new(ErrorCode::NodeUnavailable, e.to_string())
                .with_retry_after(NODE_DOWN_RETRY_SECS)
        }
        download::DownloadError::Node { .. } => ApiError::new(ErrorCode::NodeError, e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

/// `If-Range` with our ETag keeps the range; any other value (an old ETag, a date) asks for the
/// whole file.
fn if_range_allows(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(value) => value.as_bytes() == etag.as_bytes(),
    }
}

fn content_type_value(stored: Option<&str>) -> HeaderValue {
    stored
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"))
}

async fn get_file(app: &AppState, id: Uuid) -> Result<FileRecord, ApiError> {
    app.meta()
        .get_file(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no file {id}")))
}

/// `GET /files/{id}/meta`.
pub async fn file_meta(
    State(app): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let served = served::find(&app, id).await?;
    let mut meta = match &served {
        served::Served::File(file) => FileMeta::from(file),
        served::Served::Object(_) => FileMeta {
            id,
            name: served.name().to_owned(),
            size: served.size(),
            content_type: served.content_type().map(str::to_owned),
            created: served.created(),
            checksum: served.etag().to_owned(),
            parts: Vec::new(),
            object: served.object_view(),
            damaged: None,
        },
    };
    // An object is damaged when one of its segments is: the first one found is shown.
    for file in served.files() {
        if let Some(damage) = app.meta().get_damage(&file.id).await? {
            meta.damaged = Some(super::admin_scrub::DamageView::from(&damage));
            break;
        }
    }
    let mut response = Json(meta).into_response();
    response.extensions_mut().insert(RequestSummary {
        file_id: Some(id),
        size: Some(served.size()),
    });
    Ok(response)
}

/// `DELETE /files/{id}`: the file disappears at once; its chunks are deleted from their nodes
/// before the answer (for a bounded time, see [`crate::deletion`]), and those that could not be
/// stay queued for the cleanup (nodes that are down).
pub async fn delete(
    State(app): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let served = served::find(&app, id).await?;
    let size = served.size();
    let Some(files) = served.remove(&app).await? else {
        return Err(ApiError::not_found(format!("no file {id}")));
    };
    for file in &files {
        crate::deletion::delete_chunks_now(
            app.meta().as_ref(),
            app.store(),
            file,
            crate::deletion::DELETE_WAIT,
        )
        .await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(RequestSummary {
        file_id: Some(id),
        size: Some(size),
    });
    Ok(response)
}

/// `POST /files/{id}/presign` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresignRequest {
    /// humantime duration, default 1h, at most 7 days.
    expires_in: Option<String>,
}

/// `POST /files/{id}/presign` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PresignedUrl {
    /// Relative to the gateway: `/files/{id}?X-Sixfold-Key=..&X-Sixfold-Expires=..&X-Sixfold-Signature=..`.
    pub url: String,
    pub expires_at: String,
}

/// `POST /files/{id}/presign`: a URL that lets anyone GET/HEAD this file until it expires,
/// signed with the caller's key (so revoking the key kills it). Needs a bearer token: an
/// anonymous request has no key to sign with.
pub async fn presign(
    State(app): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    Path(raw_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let Some(key) = principal.as_deref().and_then(Principal::key).cloned() else {
        return Err(AuthError::NeedsKey.into());
    };
    let request: PresignRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PresignRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("expected JSON {{\"expires_in\": \"1h\"}}: {e}"))
        })?
    };
    let expires_in = presign::parse_expires_in(request.expires_in.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Only an existing file gets a URL (it may still be deleted before the URL is used).
    get_file(&app, id).await?;
    let expires = unix_ms_now() / 1000 + expires_in.as_secs();
    let path = format!("/files/{id}");
    let signature = presign::sign(&key.secret, &key.id, READ_METHOD_CLASS, &path, expires)?;
    let body = PresignedUrl {
        url: presign::url(&path, &key.id, expires, &signature),
        expires_at: rfc3339_from_unix_ms(expires.saturating_mul(1000)),
    };
    let mut response = ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
    response.extensions_mut().insert(RequestSummary {
        file_id: Some(id),
        size: None,
    });
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// `GET /files?limit=&after=`: files in id order, `limit` (default 100, at most 1000) at a time.
pub async fn list(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let query = Query::<ListQuery>::try_from_uri(request.uri())
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_LIST_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "limit {text:?} is not a positive integer"
                )));
            }
            Ok(n) => n.min(MAX_LIST_LIMIT),
        },
    };
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_id(text)?),
    };
    let page = app.meta().list_listed_files(after, limit).await?;
    let next_after = if page.len() == limit {
        page.last().map(|f| f.id)
    } else {
        None
    };
    Ok(Json(FileList {
        files: page.iter().map(FileSummary::from).collect(),
        next_after,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_header_forms() {
        assert_eq!(header_file_name(b"plain.txt").expect("plain"), "plain.txt");
        assert_eq!(
            header_file_name("é.txt".as_bytes()).expect("utf-8"),
            "é.txt"
        );
        assert_eq!(
            header_file_name(b"UTF-8''%C3%A9%20x.txt").expect("ext"),
            "é x.txt"
        );
        assert_eq!(header_file_name(b"utf-8''a%2Fb").expect("ext"), "a/b");
        // Multi-byte characters around the prefix's length must not panic.
        assert_eq!(
            header_file_name("résumé.pdf".as_bytes()).expect("utf-8"),
            "résumé.pdf"
        );
        assert_eq!(header_file_name("ééé".as_bytes()).expect("utf-8"), "ééé");
        // Without the prefix, percent signs are part of the name.
        assert_eq!(
            header_file_name(b"100%25.txt").expect("literal"),
            "100%25.txt"
        );
        for bad in [
            &b"UTF-8''%zz"[..],
            b"UTF-8''%C3",
            b"UTF-8''%FF",
            b"\xff\xfe",
        ] {
            assert!(header_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
