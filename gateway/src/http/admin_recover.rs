//! `/admin/recover`: rebuilding the metadata from the nodes ([`crate::recovery`]). The admin
//! scope is checked by the auth layer.
//!
//! - `POST /admin/recover`: starts a rebuild; `202` with its status, `409` while one runs.
//! - `GET /admin/recover`: its progress, and once done its report.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::recovery::{Recovery, RecoveryError};

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

pub fn router(recovery: Recovery) -> axum::Router {
    axum::Router::new()
        .route("/admin/recover", get(status).post(start))
        .with_state(recovery)
}

async fn start(State(recovery): State<Recovery>) -> Response {
    match recovery.start() {
        Ok(status) => (StatusCode::ACCEPTED, Json(status)).into_response(),
        Err(e @ RecoveryError::AlreadyRunning) => (
            StatusCode::CONFLICT,
            Json(ErrorBody {
                error: "recovery_running",
                message: e.to_string(),
            }),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody {
                error: "internal",
                message: e.to_string(),
            }),
        )
            .into_response(),
    }
}

async fn status(State(recovery): State<Recovery>) -> Response {
    Json(recovery.status()).into_response()
}
