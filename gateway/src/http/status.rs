//! `/health`, `/nodes`, `/metrics` and the answers for unknown routes and methods.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorCode};

/// `GET /health` body.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, `degraded` (uploads are taken, but some files are damaged) or `unavailable`.
    pub status: &'static str,
    /// Files marked damaged (not served).
    pub damaged_files: u64,
    /// Set when unavailable: an error code and the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `recovery_needed` while a node holds data the metadata cannot account for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub metadata: &'static str,
    pub nodes_up: usize,
    pub nodes_needed: u32,
}

/// `200` when uploads can be accepted: the metadata answers and at least `part_count` nodes
/// are up. Otherwise `503` with the reason.
pub async fn health(State(app): State<AppState>) -> Response {
    let metadata: Result<_, ApiError> = async {
        Ok((
            app.meta().file_count().await?,
            app.meta().unaccounted_nodes().await?,
            app.meta().damaged_count().await?,
        ))
    }
    .await;
    let nodes_up = app.store().up_count();
    let nodes_needed = app.part_count();
    let (status, error, message) = match &metadata {
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(ErrorCode::Internal),
            Some(format!("metadata unavailable: {}", e.message)),
        ),
        Ok((_, unaccounted, _)) if !unaccounted.is_empty() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(ErrorCode::RecoveryNeeded),
            Some(format!(
                "{} node(s) hold data this metadata cannot account for ({}); nothing on them is \
                 deleted. Run `sixfold-gateway admin recover` (POST /admin/recover) to rebuild \
                 the metadata from the nodes, or wipe and remove the node(s)",
                unaccounted.len(),
                unaccounted
                    .iter()
                    .map(|n| format!("{}: {}", n.node_id, n.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        ),
        Ok(_) if nodes_up < nodes_needed as usize => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(ErrorCode::NotEnoughNodes),
            Some(format!(
                "{nodes_up} storage nodes are up, {nodes_needed} are needed to accept uploads"
            )),
        ),
        // Uploads are taken and every other file is served: still 200, but said.
        Ok((_, _, damaged)) if *damaged > 0 => (
            StatusCode::OK,
            None,
            Some(format!(
                "{damaged} file(s) have a part a node found corrupt or unreadable and are not \
                 served; see GET /admin/damaged (`sixfold-gateway admin damaged`)"
            )),
        ),
        Ok(_) => (StatusCode::OK, None, None),
    };
    let damaged_files = metadata.as_ref().map_or(0, |(_, _, d)| *d);
    let body = Health {
        status: if status != StatusCode::OK {
            "unavailable"
        } else if damaged_files > 0 {
            "degraded"
        } else {
            "ok"
        },
        damaged_files,
        error: error.map(ErrorCode::as_str),
        reason: (error == Some(ErrorCode::RecoveryNeeded)).then_some("recovery_needed"),
        message,
        metadata: if metadata.is_ok() {
            "ok"
        } else {
            "unavailable"
        },
        nodes_up,
        nodes_needed,
    };
    (status, Json(body)).into_response()
}

/// `GET /nodes`.
pub async fn nodes(State(app): State<AppState>) -> Response {
    Json(app.directory().nodes_json()).into_response()
}

/// `GET /metrics`, Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let files = app.meta().file_count().await.ok();
    let mut text = app.metrics().render(&app.directory().node_gauges(), files);
    let damaged = app.meta().damaged_count().await.ok();
    super::admin_scrub::render_metrics(&mut text, &app.directory().node_scrub_reports(), damaged);
    crate::admission::render_all(&mut text, &[app.uploads(), app.downloads()]);
    app.error_counts().render(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Any path the API does not have.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// A known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}
