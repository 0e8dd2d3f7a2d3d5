//! How the native API answers a failed upload: the one mapping from the upload's domain
//! error to an API error code, so that the upload flow knows nothing of HTTP and another
//! surface (S3) can map the same failures its own way.

use sixfold_wire::Status;

use super::error::{ApiError, ErrorCode};
use crate::metrics::UploadOutcome;
use crate::placement::PlacementError;
use crate::upload::pipeline::FeedError;
use crate::upload::{UploadError, is_no_space};

/// `Retry-After` of an upload refused because nodes are at `node_max_parts`: parts finish in
/// seconds, so a slot is likely free by then.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// The outcome `/metrics` counts for an upload that failed with `code`.
pub fn outcome_of(code: ErrorCode) -> UploadOutcome {
    match code {
        ErrorCode::NotEnoughNodes | ErrorCode::InsufficientStorage => UploadOutcome::Unavailable,
        ErrorCode::NodeError => UploadOutcome::NodeError,
        ErrorCode::Internal => UploadOutcome::Internal,
        _ => UploadOutcome::ClientError,
    }
}

/// The API error code of an upload failure.
pub fn code_of(e: &UploadError) -> ErrorCode {
    match e {
        UploadError::TooLarge { .. } => ErrorCode::TooLarge,
        UploadError::Placement(PlacementError::NotEnoughNodes { .. }) => ErrorCode::NotEnoughNodes,
        UploadError::Placement(PlacementError::InsufficientSpace { .. }) => {
            ErrorCode::InsufficientStorage
        }
        UploadError::Placement(PlacementError::Busy { .. }) => ErrorCode::Busy,
        UploadError::BadRequest(_) => ErrorCode::BadRequest,
        UploadError::Feed(FeedError::Spool(e)) if is_no_space(e) => ErrorCode::InsufficientStorage,
        UploadError::Feed(FeedError::Spool(_)) => ErrorCode::Internal,
        UploadError::Feed(FeedError::WriterGone(_)) => ErrorCode::NodeError,
        UploadError::Feed(FeedError::FileTooLarge { .. }) => ErrorCode::TooLarge,
        UploadError::Feed(FeedError::BodyIdle { .. }) => ErrorCode::RequestTimeout,
        UploadError::Feed(_) => ErrorCode::BadRequest,
        UploadError::Node(e) if e.kind == Status::DiskFull.name() => ErrorCode::InsufficientStorage,
        UploadError::Node(_) | UploadError::Ack(_) => ErrorCode::NodeError,
        UploadError::Meta(_) | UploadError::Internal(_) => ErrorCode::Internal,
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let code = code_of(&e);
        let message = match code {
            ErrorCode::Internal => format!("upload failed: {e}"),
            _ => e.to_string(),
        };
        let error = ApiError::new(code, message);
        match code {
            ErrorCode::Busy => error.with_retry_after(BUSY_RETRY_AFTER_SECS),
            _ => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_client::NodeCallError;
    use uuid::Uuid;

    #[test]
    fn a_full_node_is_507_and_busy_nodes_are_503_with_retry_after() {
        let full = UploadError::Node(NodeCallError {
            node: Uuid::nil(),
            kind: Status::DiskFull.name(),
            message: "node answered disk_full".into(),
        });
        assert_eq!(code_of(&full), ErrorCode::InsufficientStorage);
        let other = UploadError::Node(NodeCallError {
            node: Uuid::nil(),
            kind: "stream",
            message: "reset".into(),
        });
        assert_eq!(code_of(&other), ErrorCode::NodeError);
        let busy = UploadError::Placement(PlacementError::Busy {
            needed: 6,
            available: 5,
            limit: 1,
        });
        let api = ApiError::from(busy);
        assert_eq!(api.code, ErrorCode::Busy);
        assert_eq!(api.retry_after, Some(BUSY_RETRY_AFTER_SECS));
        let space = ApiError::from(UploadError::Placement(PlacementError::InsufficientSpace {
            needed: 6,
            with_room: 0,
        }));
        assert_eq!(
            (space.code, space.retry_after),
            (ErrorCode::InsufficientStorage, None)
        );
    }
}
