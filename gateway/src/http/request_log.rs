//! One log line per request, and error responses counted by code.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use super::AppState;
use super::error::ErrorCode;

/// What a handler tells the request log about the file it served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSummary {
    pub file_id: Option<Uuid>,
    pub size: Option<u64>,
}

/// Marks a streamed response whose own task logs when the stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedByStream;

/// Polled endpoints: logged at debug level only.
fn is_quiet(path: &str) -> bool {
    matches!(path, "/health" | "/metrics")
}

pub async fn log_request(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let code = response.extensions().get::<ErrorCode>().copied();
    if let Some(code) = code {
        app.metrics().error(code);
    }
    if response.extensions().get::<LoggedByStream>().is_some() {
        return response;
    }
    let summary = response.extensions().get::<RequestSummary>().copied();
    let file_id = summary.and_then(|s| s.file_id).map(|id| id.to_string());
    let size = summary.and_then(|s| s.size);
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let outcome = code.map_or("ok", ErrorCode::as_str);
    if is_quiet(&path) {
        tracing::debug!(%method, path, status, elapsed_ms, outcome, "request");
    } else {
        tracing::info!(%method, path, status, file_id, size, elapsed_ms, outcome, "request");
    }
    response
}
