//! `/admin/nodes/*`: the operator's node management. Authentication (admin scope) is the
//! auth layer's job; these handlers only do the operation.
//!
//! - `DELETE /admin/nodes/{id}`: forget a node that holds nothing ([`Cluster::remove_node`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use serde::Serialize;
use uuid::Uuid;

use crate::cluster::{Cluster, RemoveNodeError};

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// The routes, with the cluster as state; merged into the public router.
pub fn router(cluster: Cluster) -> axum::Router {
    axum::Router::new()
        .route("/admin/nodes/{id}", delete(remove_node))
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
                RemoveNodeError::Meta(_) | RemoveNodeError::Task(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            };
            error(status, code, e.to_string())
        }
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
