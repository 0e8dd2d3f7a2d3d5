//! One log line per request, and error responses counted by code.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sixfold_wire::registration::HEARTBEAT_PATH;
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

/// Polled endpoints (health checks, scrapes, and each node's heartbeat every few seconds) are
/// logged at debug level, so the info lines are the requests users made. A refused heartbeat
/// stays at info: it means a node is misconfigured.
fn is_quiet(path: &str, status: u16) -> bool {
    matches!(path, "/health" | "/metrics") || (path == HEARTBEAT_PATH && status < 400)
}

pub async fn log_request(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let code = response.extensions().get::<ErrorCode>().copied();
    if let Some(code) = code {
        app.error_counts().count(code);
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
    if is_quiet(&path, status) {
        tracing::debug!(%method, path, status, elapsed_ms, outcome, "request");
    } else {
        tracing::info!(%method, path, status, file_id, size, elapsed_ms, outcome, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polled_endpoints_are_quiet_and_user_requests_are_not() {
        assert!(is_quiet("/health", 503));
        assert!(is_quiet("/metrics", 200));
        assert!(is_quiet(HEARTBEAT_PATH, 200));
        assert!(!is_quiet(HEARTBEAT_PATH, 401));
        assert!(!is_quiet("/files", 201));
        assert!(!is_quiet(sixfold_wire::registration::REGISTER_PATH, 200));
    }
}
