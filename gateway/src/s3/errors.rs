//! The one place where domain failures become S3 error codes (as `http/upload_errors.rs` is
//! for the native API's JSON codes).

use s3s::{S3Error, S3ErrorCode};

use crate::admission::Refused;
use crate::download::DownloadError;
use crate::meta::{MetaError, ObjectStoreError};
use crate::placement::PlacementError;
use crate::upload::UploadError;
use crate::upload::pipeline::FeedError;

fn error(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::with_message(code, message.into())
}

/// An internal failure: logged here, answered as `InternalError` without details.
pub fn internal(what: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %what, "s3: internal error");
    error(
        S3ErrorCode::InternalError,
        "internal error; see the gateway log",
    )
}

pub fn from_meta(e: MetaError) -> S3Error {
    internal(format_args!("metadata: {e}"))
}

pub fn from_store(e: ObjectStoreError) -> S3Error {
    let message = e.to_string();
    match e {
        ObjectStoreError::NoSuchBucket(_) => error(S3ErrorCode::NoSuchBucket, message),
        ObjectStoreError::BucketExists(_) => error(S3ErrorCode::BucketAlreadyOwnedByYou, message),
        ObjectStoreError::BucketNotEmpty(_) => error(S3ErrorCode::BucketNotEmpty, message),
        ObjectStoreError::NoSuchKey(_) => error(S3ErrorCode::NoSuchKey, message),
        ObjectStoreError::NoSuchUpload(_) => error(S3ErrorCode::NoSuchUpload, message),
        ObjectStoreError::InvalidPart(_) => error(S3ErrorCode::InvalidPart, message),
        ObjectStoreError::InvalidPartOrder => error(S3ErrorCode::InvalidPartOrder, message),
        ObjectStoreError::EntityTooSmall { .. } => error(S3ErrorCode::EntityTooSmall, message),
        ObjectStoreError::Meta(e) => from_meta(e),
    }
}

pub fn from_upload(e: UploadError) -> S3Error {
    let message = e.to_string();
    match e {
        UploadError::TooLarge { .. } | UploadError::Feed(FeedError::FileTooLarge { .. }) => {
            error(S3ErrorCode::EntityTooLarge, message)
        }
        UploadError::Placement(PlacementError::InsufficientSpace { .. }) => {
            error(S3ErrorCode::ServiceUnavailable, message)
        }
        UploadError::Placement(PlacementError::Busy { .. }) => {
            error(S3ErrorCode::SlowDown, message)
        }
        UploadError::Placement(_) => error(S3ErrorCode::ServiceUnavailable, message),
        UploadError::BadRequest(_) => error(S3ErrorCode::InvalidArgument, message),
        UploadError::Feed(FeedError::BodyIdle { .. }) => {
            error(S3ErrorCode::RequestTimeout, message)
        }
        UploadError::Feed(FeedError::Short { .. } | FeedError::TooLong { .. }) => {
            error(S3ErrorCode::IncompleteBody, message)
        }
        UploadError::Feed(FeedError::Body(_) | FeedError::Form(_)) => {
            error(S3ErrorCode::IncompleteBody, message)
        }
        UploadError::Feed(FeedError::WriterGone(_))
        | UploadError::Node(_)
        | UploadError::Ack(_) => {
            tracing::warn!(error = %message, "s3: upload failed at a node");
            error(S3ErrorCode::ServiceUnavailable, message)
        }
        UploadError::Feed(FeedError::Spool(_))
        | UploadError::Meta(_)
        | UploadError::Internal(_) => internal(message),
    }
}

pub fn from_download(e: DownloadError) -> S3Error {
    match e {
        DownloadError::Node { .. } => {
            tracing::warn!(error = %e, "s3: download refused before the first byte");
            error(S3ErrorCode::ServiceUnavailable, e.to_string())
        }
        _ => internal(e),
    }
}

pub fn from_refused(e: Refused) -> S3Error {
    error(S3ErrorCode::SlowDown, e.to_string())
}

/// A task of the blocking pool failed (panicked or was cancelled).
pub fn from_join(e: tokio::task::JoinError) -> S3Error {
    internal(format_args!("metadata task: {e}"))
}

pub fn invalid_argument(message: impl Into<String>) -> S3Error {
    error(S3ErrorCode::InvalidArgument, message)
}

pub fn bad_digest(message: impl Into<String>) -> S3Error {
    error(S3ErrorCode::BadDigest, message)
}

pub fn no_such_upload(id: &str) -> S3Error {
    error(
        S3ErrorCode::NoSuchUpload,
        format!("the multipart upload {id} does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_get_their_s3_codes() {
        let cases = [
            (
                ObjectStoreError::NoSuchBucket("b".into()),
                S3ErrorCode::NoSuchBucket,
            ),
            (
                ObjectStoreError::NoSuchKey("k".into()),
                S3ErrorCode::NoSuchKey,
            ),
            (
                ObjectStoreError::NoSuchUpload("u".into()),
                S3ErrorCode::NoSuchUpload,
            ),
            (
                ObjectStoreError::InvalidPartOrder,
                S3ErrorCode::InvalidPartOrder,
            ),
            (
                ObjectStoreError::EntityTooSmall {
                    part_number: 1,
                    size: 1,
                },
                S3ErrorCode::EntityTooSmall,
            ),
            (
                ObjectStoreError::BucketNotEmpty("b".into()),
                S3ErrorCode::BucketNotEmpty,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(from_store(e).code(), &code);
        }
        let too_large = from_upload(UploadError::TooLarge { limit: 1 });
        assert_eq!(too_large.code(), &S3ErrorCode::EntityTooLarge);
    }
}
