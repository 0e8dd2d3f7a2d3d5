//! `/admin/nodes/*`: the operator's node management. Authentication (admin scope) is the
//! auth layer's job; these handlers only do the operation.
//!
//! - `DELETE /admin/nodes/{id}`: forget a node that holds nothing ([`Cluster::remove_node`]).
//! - `PATCH /admin/nodes/{id}` with `{"state": "up" | "read_only" | "draining"}`: the state the
//!   operator chooses, kept over restarts ([`Cluster::set_operator_state`]); answers the node
//!   as `/nodes` shows it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::cluster::{Cluster, RemoveNodeError};
use crate::meta::OperatorState;

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// The routes, with the cluster as state; merged into the public router.
pub fn router(cluster: Cluster) -> axum::Router {
    axum::Router::new()
        .route("/admin/nodes/{id}", delete(remove_node).patch(set_state))
        .with_state(cluster)
}

async fn remove_node(State(cluster): State<Cluster>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the node id is not a UUID".into(),
        );
    };
    match cluster.remove_node(id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let (status, code) = match &e {
                RemoveNodeError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                RemoveNodeError::NotEmpty { .. } | RemoveNodeError::Serving { .. } => {
                    (StatusCode::CONFLICT, "node_not_empty")
                }
                RemoveNodeError::Meta(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            error(status, code, e.to_string())
        }
    }
}

/// What a `PATCH` body asks for, or why it cannot be done.
pub fn parse_state(body: &[u8]) -> Result<Option<OperatorState>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(state) = value.get("state").and_then(serde_json::Value::as_str) else {
        return Err(r#"the body must be {"state": "up" | "read_only" | "draining"}"#.into());
    };
    match state {
        "up" => Ok(None),
        "read_only" => Ok(Some(OperatorState::ReadOnly)),
        "draining" => Ok(Some(OperatorState::Draining)),
        "down" => Err("down is detected from missed heartbeats; it cannot be set".into()),
        "removed" => Err("a node is removed with DELETE /admin/nodes/{id}".into()),
        other => Err(format!(
            "unknown state {other:?}: one of up, read_only, draining"
        )),
    }
}

async fn set_state(
    State(cluster): State<Cluster>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the node id is not a UUID".into(),
        );
    };
    let state = match parse_state(&body) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::BAD_REQUEST, "bad_request", why),
    };
    match cluster.set_operator_state(id, state).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no node {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code,
            message,
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_an_operator_may_ask_for_and_why_others_are_refused() {
        assert_eq!(parse_state(br#"{"state":"up"}"#), Ok(None));
        assert_eq!(
            parse_state(br#"{"state":"read_only"}"#),
            Ok(Some(OperatorState::ReadOnly))
        );
        assert_eq!(
            parse_state(br#"{"state":"draining"}"#),
            Ok(Some(OperatorState::Draining))
        );
        for (body, needle) in [
            (&br#"{"state":"down"}"#[..], "cannot be set"),
            (br#"{"state":"removed"}"#, "DELETE"),
            (br#"{"state":"gone"}"#, "unknown state"),
            (br#"{"mode":"up"}"#, "must be"),
            (br#"{"state":3}"#, "must be"),
            (b"up", "not JSON"),
        ] {
            let err = parse_state(body).expect_err(needle);
            assert!(err.contains(needle), "{err}");
        }
    }
}
