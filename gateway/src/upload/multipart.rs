//! `multipart/form-data` uploads: exactly one file field (the first field with a file name, or
//! a field named `file`), whose name and content type become the file's. Other, small fields
//! are read and ignored.
//!
//! With a `Content-Length` the form streams straight through, like a raw body
//! ([`Uploader::upload_form_sized`]):
//! 1. the head of the form, up to and including the blank line that ends the file field's
//!    headers, is read into a bounded buffer ([`MAX_PREAMBLE_BYTES`]) and parsed
//!    ([`super::form::parse_preamble`]);
//! 2. the rest of the body, `Content-Length` minus the head, is planned, placed and streamed to
//!    the nodes exactly like a raw body of that size (DESIGN §3): the stored parts hold the
//!    file and then the form's trailer (`\r\n--boundary--\r\n`, fields after the file, an
//!    epilogue), so the last part absorbs the closing boundary;
//! 3. meanwhile [`super::form::FileEnd`] finds the delimiter ending the file as the frames pass
//!    and only the file's bytes go into its xxh3-128; the trailer (at most
//!    [`MAX_TRAILER_BYTES`]) is checked at the end of the body;
//! 4. the file record says the real size, each part describing only the file's bytes in it
//!    ([`crate::meta::PartRecord::clipped_to`]); parts that also hold trailer keep their stored
//!    length, and the crc32c of what they store.
//!
//! A body that ends before the file's closing delimiter, a malformed trailer or a second file
//! field fails the upload (400) and aborts its session, as any failure before the commit does.
//!
//! Without a `Content-Length` (chunked) the file field is spooled like a body without a length
//! ([`Uploader::upload_multipart`]): the body's size is only known at its end, and the split
//! rule needs a size before the first part is sent.

use std::fmt::Display;

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use xxhash_rust::xxh3::Xxh3;

use super::feed::{BodyObserver, checksum_hex};
use super::form::{self, FieldHeaders, FileEnd, FormError, Preamble};
use super::idle::BodyError;
use super::pipeline::FeedError;
use super::{FileInfo, UploadError, Uploader};
use crate::meta::FileRecord;

/// Bytes of non-file fields accepted in one form, altogether.
pub const MAX_OTHER_FIELD_BYTES: usize = 64 * 1024;

/// Most bytes of a streamed form read before the file's contents: the small fields before it,
/// every boundary and header.
pub const MAX_PREAMBLE_BYTES: usize = 64 * 1024 + MAX_OTHER_FIELD_BYTES;

/// Most bytes of a streamed form after the file's contents: the delimiter, fields after the
/// file, the closing boundary and any epilogue. These are stored in the file's last part(s)
/// (and so count against the nodes' space), which is why they are bounded.
pub const MAX_TRAILER_BYTES: usize = 64 * 1024 + MAX_OTHER_FIELD_BYTES;

/// Frames of the form's head kept before parsing it again: parsing restarts from the start of
/// the (bounded) buffer, so it is retried only when the buffer has doubled or this many frames
/// arrived, which bounds the work a client sending tiny frames can cause.
const PREAMBLE_FRAMES_PER_PARSE: usize = 64;

/// Multipart framing overhead allowed on top of `max_file_size` when judging a request by its
/// `Content-Length` (boundaries and part headers); the file itself is held to the limit.
pub const MULTIPART_OVERHEAD_ALLOWANCE: u64 = 64 * 1024;

fn form_error(e: MultipartError) -> UploadError {
    UploadError::Feed(FeedError::Body(format!(
        "multipart body: {}",
        e.body_text()
    )))
}

/// The head of a streamed form, read and parsed.
#[derive(Debug)]
struct FormHead {
    /// Bytes of the body before the file's contents.
    len: u64,
    field: FieldHeaders,
    other_bytes: usize,
    /// What arrived after the head: the first bytes of the file.
    rest: Vec<Bytes>,
}

/// Reads frames until the file field's headers are complete, keeping at most
/// [`MAX_PREAMBLE_BYTES`] (copied, for parsing) and the frames since the last parse.
async fn read_head<S>(body: &mut S, boundary: &str) -> Result<FormHead, UploadError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    // Frames since the last parse, with their offsets in the body.
    let mut pending: Vec<(u64, Bytes)> = Vec::new();
    let mut received = 0u64;
    let mut parsed_len = 0usize;
    loop {
        let frame = match body.next().await {
            Some(frame) => frame.map_err(FeedError::from)?,
            None => {
                // The whole body is in `buf` (a longer one would have been refused).
                let parsed = form::parse_preamble(&buf, boundary, MAX_OTHER_FIELD_BYTES, true)
                    .map_err(FeedError::from)?;
                return match parsed {
                    Preamble::File {
                        len,
                        field,
                        other_bytes,
                    } => split_head(len, field, other_bytes, pending),
                    Preamble::NeedMore => Err(FeedError::from(FormError::Truncated).into()),
                };
            }
        };
        if frame.is_empty() {
            continue;
        }
        let room = MAX_PREAMBLE_BYTES - buf.len();
        buf.extend_from_slice(&frame[..frame.len().min(room)]);
        pending.push((received, frame.clone()));
        received += frame.len() as u64;
        let due = pending.len() >= PREAMBLE_FRAMES_PER_PARSE
            || buf.len() >= parsed_len.saturating_mul(2)
            || buf.len() == MAX_PREAMBLE_BYTES;
        if !due {
            continue;
        }
        parsed_len = buf.len();
        match form::parse_preamble(&buf, boundary, MAX_OTHER_FIELD_BYTES, false)
            .map_err(FeedError::from)?
        {
            Preamble::File {
                len,
                field,
                other_bytes,
            } => return split_head(len, field, other_bytes, pending),
            Preamble::NeedMore if buf.len() == MAX_PREAMBLE_BYTES => {
                return Err(FeedError::from(FormError::PreambleTooLong(MAX_PREAMBLE_BYTES)).into());
            }
            Preamble::NeedMore => {
                // The head ends after everything received so far (a longer prefix of a body
                // never makes a shorter head), so in frames still to come.
                pending.clear();
            }
        }
    }
}

/// Cuts the frames received since the last unsuccessful parse at the end of the head (`len`
/// bytes into the body): what follows is the start of the file.
fn split_head(
    len: usize,
    field: FieldHeaders,
    other_bytes: usize,
    pending: Vec<(u64, Bytes)>,
) -> Result<FormHead, UploadError> {
    let len = len as u64;
    let mut rest = Vec::with_capacity(pending.len());
    let mut found = false;
    for (start, frame) in pending {
        let end = start + frame.len() as u64;
        if found {
            rest.push(frame);
        } else if start <= len && len <= end {
            found = true;
            // `len - start` is at most the frame's length.
            let cut = usize::try_from(len - start).unwrap_or(frame.len());
            rest.push(frame.slice(cut..));
        }
    }
    if !found {
        return Err(UploadError::Internal(
            "the form's head ends outside the frames kept for it".into(),
        ));
    }
    Ok(FormHead {
        len,
        field,
        other_bytes,
        rest,
    })
}

/// Watches a streamed form after its head: the file's bytes (hashed, held to the size limit)
/// up to the delimiter, then the trailer (bounded, checked at the end).
struct FormFile {
    boundary: String,
    end: FileEnd,
    hasher: Xxh3,
    max_file_size: u64,
    other_bytes: usize,
    trailer: Vec<u8>,
}

impl FormFile {
    fn new(boundary: &str, other_bytes: usize, max_file_size: u64) -> FormFile {
        FormFile {
            boundary: boundary.to_owned(),
            end: FileEnd::new(boundary),
            hasher: Xxh3::new(),
            max_file_size,
            other_bytes,
            trailer: Vec::new(),
        }
    }
}

impl BodyObserver for FormFile {
    fn frame(&mut self, frame: &[u8]) -> Result<(), FeedError> {
        let trailer = if self.end.found() {
            frame
        } else {
            let hasher = &mut self.hasher;
            let rest = self.end.push(frame, |bytes| hasher.update(bytes));
            if self.end.file_len() > self.max_file_size {
                return Err(FeedError::FileTooLarge {
                    limit: self.max_file_size,
                });
            }
            match rest {
                Some(rest) => rest,
                None => return Ok(()),
            }
        };
        let room = MAX_TRAILER_BYTES - self.trailer.len();
        if trailer.len() > room {
            // Say what is wrong with it if that is already visible (a second file).
            self.trailer.extend_from_slice(&trailer[..room]);
            form::check_trailer(
                &self.trailer,
                &self.boundary,
                self.other_bytes,
                MAX_OTHER_FIELD_BYTES,
                false,
            )?;
            return Err(FormError::TrailerTooLong(MAX_TRAILER_BYTES).into());
        }
        self.trailer.extend_from_slice(trailer);
        Ok(())
    }

    fn end(&mut self, _body_len: u64) -> Result<(), FeedError> {
        if !self.end.found() {
            return Err(FormError::FileNotClosed.into());
        }
        form::check_trailer(
            &self.trailer,
            &self.boundary,
            self.other_bytes,
            MAX_OTHER_FIELD_BYTES,
            true,
        )?;
        Ok(())
    }

    fn file(&self) -> (u64, String) {
        (self.end.file_len(), checksum_hex(&self.hasher))
    }
}

/// The file's name and type from its field, else from the request.
fn file_info(field: &FieldHeaders, fallback: FileInfo) -> FileInfo {
    FileInfo {
        name: field
            .file_name
            .clone()
            .filter(|n| !n.is_empty())
            .or(fallback.name),
        content_type: field.content_type.clone().or(fallback.content_type),
    }
}

impl Uploader {
    /// Uploads the file field of a form of `content_length` bytes, streaming it through (see
    /// the module docs); `fallback` supplies the name and type the field lacks.
    pub async fn upload_form_sized<S, E>(
        &self,
        fallback: FileInfo,
        content_length: u64,
        boundary: &str,
        body: S,
    ) -> Result<FileRecord, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        self.check_nodes_for_unknown_size()?;
        let mut body = self.idle_body(body);
        let head = read_head(&mut body, boundary).await?;
        let planned = content_length
            .checked_sub(head.len)
            .ok_or(FeedError::TooLong {
                expected: content_length,
            })?;
        self.metrics.add_bytes_in(head.len);
        tracing::debug!(
            head = head.len,
            planned,
            boundary_len = boundary.len(),
            "streaming a multipart form"
        );
        let info = file_info(&head.field, fallback);
        let observer = FormFile::new(boundary, head.other_bytes, self.settings.max_file_size);
        let first = futures_util::stream::iter(head.rest.into_iter().map(Ok));
        self.stream_through(info, planned, first.chain(body), observer, true)
            .await
    }

    /// Uploads the file field of a form; `fallback` supplies the name and type the field lacks.
    pub async fn upload_multipart(
        &self,
        fallback: FileInfo,
        mut form: Multipart,
    ) -> Result<FileRecord, UploadError> {
        self.check_nodes_for_unknown_size()?;
        let mut found = None;
        let mut other_bytes = 0usize;
        while let Some(mut field) = form.next_field().await.map_err(form_error)? {
            let is_file =
                field.file_name().is_some() || (found.is_none() && field.name() == Some("file"));
            if !is_file {
                while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                    other_bytes += chunk.len();
                    if other_bytes > MAX_OTHER_FIELD_BYTES {
                        return Err(UploadError::BadRequest(format!(
                            "the form's fields other than the file exceed {MAX_OTHER_FIELD_BYTES} bytes"
                        )));
                    }
                }
                continue;
            }
            if found.is_some() {
                return Err(UploadError::BadRequest(
                    "the form has more than one file field; send one file per request".into(),
                ));
            }
            let info = FileInfo {
                name: field
                    .file_name()
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .or_else(|| fallback.name.clone()),
                content_type: field
                    .content_type()
                    .map(str::to_owned)
                    .or_else(|| fallback.content_type.clone()),
            };
            let mut spool = self.new_spool();
            let mut hasher = Xxh3::new();
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                self.spool_frame(&mut spool, &mut hasher, chunk).await?;
            }
            found = Some((info, spool, hasher));
        }
        let Some((info, spool, hasher)) = found else {
            return Err(UploadError::BadRequest(
                "the form has no file field (a field with a filename, or named \"file\")".into(),
            ));
        };
        self.upload_spool(info, spool, hasher).await
    }
}
