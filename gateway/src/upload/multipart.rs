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
//! Without a `Content-Length` (chunked) the same parser reads the head, with the same bound, and
//! the file field is spooled like a body without a length ([`Uploader::upload_form_unsized`]):
//! the file's size is only known at its end, and the split rule needs a size before the first
//! part is sent. The spool draws its memory from the gateway's spool budget; nothing else of the
//! form is held beyond [`MAX_PREAMBLE_BYTES`] and [`MAX_TRAILER_BYTES`].

use std::fmt::Display;

use crate::file_hash::Xxh3;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

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

    /// Uploads the file field of a form sent without a length (chunked): the same head and
    /// trailer rules as [`Self::upload_form_sized`], the bytes after the head spooled (memory
    /// from the shared spool budget, then a file) up to the file's closing delimiter, then the
    /// file's bytes sent like a spooled raw body.
    pub async fn upload_form_unsized<S, E>(
        &self,
        fallback: FileInfo,
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
        self.metrics.add_bytes_in(head.len);
        let info = file_info(&head.field, fallback);
        let mut observer = FormFile::new(boundary, head.other_bytes, self.settings.max_file_size);
        let mut spool = self.new_spool();
        let first = futures_util::stream::iter(head.rest.into_iter().map(Ok));
        let mut rest = first.chain(body);
        while let Some(frame) = rest.next().await {
            let frame = frame.map_err(FeedError::from)?;
            if frame.is_empty() {
                continue;
            }
            // Frames after the one holding the file's end are trailer only: checked, not kept.
            let file_open = !observer.end.found();
            observer.frame(&frame)?;
            self.metrics.add_bytes_in(frame.len() as u64);
            if file_open {
                spool.push(frame).await.map_err(FeedError::Spool)?;
            }
        }
        observer.end(spool.len())?;
        // The spool may end with some trailer: only the file's prefix of it is sent.
        let (size, checksum) = observer.file();
        self.upload_spool(info, spool, size, checksum).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::meta::Meta;
    use crate::metrics::Metrics;
    use crate::node_client::SharedNodeClient;
    use crate::node_client::memory::MemoryNodes;
    use crate::split::SplitPolicy;
    use crate::upload::UploadSettings;
    use crate::upload::spool_budget::SpoolBudget;

    const FRAME: usize = 16 * 1024;

    fn uploader(dir: &std::path::Path, budget: Arc<SpoolBudget>) -> Uploader {
        let meta = Meta::open(dir.join("meta.redb")).expect("meta");
        let store: SharedNodeClient = Arc::new(MemoryNodes::with_nodes(6));
        let settings = UploadSettings {
            max_file_size: 1 << 30,
            split: SplitPolicy {
                part_count: 6,
                min_part_size: 1024,
            },
            spool_memory_bytes: 1 << 20,
            spool_budget: budget,
            spool_dir: dir.join("spool"),
            session_ttl: Duration::from_secs(3600),
            body_idle_timeout: Duration::from_secs(30),
            gateway_id: None,
        };
        Uploader::new(Arc::new(meta), store, Arc::new(Metrics::new()), settings)
    }

    /// `total` bytes of `b'x'` in frames of [`FRAME`], counting how many bytes were pulled.
    fn counted_filler(
        total: usize,
        pulled: Arc<AtomicU64>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send {
        let frame = Bytes::from(vec![b'x'; FRAME]);
        futures_util::stream::iter((0..total / FRAME).map(move |_| {
            pulled.fetch_add(FRAME as u64, Ordering::Relaxed);
            Ok(frame.clone())
        }))
    }

    #[tokio::test]
    async fn a_chunked_form_with_a_huge_preamble_is_refused_after_the_head_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = uploader(dir.path(), SpoolBudget::new(u64::MAX));
        let pulled = Arc::new(AtomicU64::new(0));
        // 64 MiB of text before any boundary.
        let body = counted_filler(64 << 20, Arc::clone(&pulled));
        let err = up
            .upload_form_unsized(FileInfo::default(), "b0und", body)
            .await
            .expect_err("refused");
        assert!(matches!(err, UploadError::Feed(_)), "{err}");
        assert!(err.to_string().contains("before the file exceed"), "{err}");
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(
            pulled <= (MAX_PREAMBLE_BYTES + FRAME) as u64,
            "read {pulled} bytes of the preamble"
        );
    }

    #[tokio::test]
    async fn a_chunked_form_spools_from_the_shared_budget_and_stores_only_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = SpoolBudget::new(1 << 20);
        let up = uploader(dir.path(), Arc::clone(&budget));
        let file: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut form = b"--b0und\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
            --b0und\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\
            Content-Type: application/x-test\r\n\r\n"
            .to_vec();
        form.extend_from_slice(&file);
        form.extend_from_slice(b"\r\n--b0und--\r\n");
        let frames: Vec<Result<Bytes, std::io::Error>> = form
            .chunks(FRAME + 7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let record = up
            .upload_form_unsized(
                FileInfo::default(),
                "b0und",
                futures_util::stream::iter(frames),
            )
            .await
            .expect("uploaded");
        assert_eq!(record.size, file.len() as u64);
        assert_eq!(record.name, "a.bin");
        assert_eq!(record.content_type.as_deref(), Some("application/x-test"));
        let mut hasher = Xxh3::new();
        hasher.update(&file);
        assert_eq!(record.checksum, checksum_hex(&hasher));
        let stored: u64 = record.parts.iter().map(|p| p.len).sum();
        assert_eq!(stored, file.len() as u64, "no byte of the form is stored");
        assert_eq!(budget.free(), budget.total(), "spool memory given back");
    }
}
