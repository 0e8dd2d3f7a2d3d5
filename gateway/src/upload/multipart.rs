//! `multipart/form-data` uploads: exactly one file field (the first field with a file name, or
//! a field named `file`), whose name and content type become the file's. Other, small fields
//! are read and ignored.
//!
//! The file field is spooled like a body without a length: the file's size is only known at
//! the closing boundary, and the split rule needs it before the first part is sent.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use xxhash_rust::xxh3::Xxh3;

use super::pipeline::FeedError;
use super::{FileInfo, UploadError, Uploader};
use crate::meta::FileRecord;

/// Bytes of non-file fields accepted in one form, altogether.
const MAX_OTHER_FIELD_BYTES: usize = 64 * 1024;

/// Multipart framing overhead allowed on top of `max_file_size` when judging a request by its
/// `Content-Length` (boundaries and part headers); the file itself is held to the limit.
pub const MULTIPART_OVERHEAD_ALLOWANCE: u64 = 64 * 1024;

fn form_error(e: MultipartError) -> UploadError {
    UploadError::Feed(FeedError::Body(format!(
        "multipart body: {}",
        e.body_text()
    )))
}

impl Uploader {
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
