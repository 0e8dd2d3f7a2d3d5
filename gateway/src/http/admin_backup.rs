//! `POST /admin/backup`: a consistent snapshot of the metadata, streamed back as the response
//! body (`application/octet-stream`), for `sixfold-gateway admin backup --out FILE` on any host
//! that reaches the gateway. Admin scope, checked by the API edge: the file holds every access
//! key's secret.
//!
//! The snapshot is written whole to a scratch file first (unlinked at once, so it goes with the
//! response however that ends), then streamed from it: memory stays flat whatever its size.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::io::ReaderStream;

use super::error::{ApiError, ErrorCode};
use crate::backup::{BackupError, Backups};
use crate::time_fmt::rfc3339_from_unix_ms;

/// Header saying when the snapshot in the body was taken (RFC 3339).
pub const SNAPSHOT_TAKEN_HEADER: &str = "x-sixfold-snapshot-taken";
/// Bytes read from the scratch file per body frame.
const FRAME: usize = 256 * 1024;
/// Seconds a client refused because another backup runs is told to wait.
const BUSY_RETRY_SECS: u64 = 5;

/// The route, with the backups as state; merged into the public router (behind its auth).
pub fn router(backups: Backups) -> axum::Router {
    axum::Router::new()
        .route("/admin/backup", post(backup))
        .with_state(backups)
}

async fn backup(State(backups): State<Backups>) -> Response {
    match backups.to_scratch().await {
        Ok(snapshot) => {
            let taken = rfc3339_from_unix_ms(snapshot.report.info.taken_unix_ms);
            let name = crate::backup::periodic::file_name(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(snapshot.report.info.taken_unix_ms),
            );
            let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""));
            let taken = HeaderValue::from_str(&taken);
            let (Ok(disposition), Ok(taken)) = (disposition, taken) else {
                return ApiError::internal("snapshot headers").into_response();
            };
            let file = tokio::fs::File::from_std(snapshot.file);
            let body = Body::from_stream(ReaderStream::with_capacity(file, FRAME));
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (header::CONTENT_LENGTH, HeaderValue::from(snapshot.len)),
                    (header::CONTENT_DISPOSITION, disposition),
                    // It holds key secrets: no cache may keep it.
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (
                        header::HeaderName::from_static(SNAPSHOT_TAKEN_HEADER),
                        taken,
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(BackupError::Busy) => ApiError::new(
            ErrorCode::Busy,
            "another backup is being taken; retry when it is done",
        )
        .with_retry_after(BUSY_RETRY_SECS)
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "backup over HTTP failed");
            ApiError::internal(e.to_string()).into_response()
        }
    }
}
