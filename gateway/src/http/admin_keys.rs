//! `/admin/keys`: create, list and revoke access keys (admin scope, checked by the API edge).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use crate::auth::key::validate_name;
use crate::auth::{AccessKey, KeyId, Principal, Scope};
use crate::meta::unix_ms_now;
use crate::time_fmt::rfc3339_from_unix_ms;

/// `POST /admin/keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub scope: Scope,
}

/// A key as listed: everything but the secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created: String,
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<&AccessKey> for KeyView {
    fn from(key: &AccessKey) -> Self {
        KeyView {
            id: key.id.to_string(),
            name: key.name.clone(),
            scope: key.scope,
            created: rfc3339_from_unix_ms(key.created_unix_ms),
            revoked: key.is_revoked(),
            revoked_at: key.revoked_unix_ms.map(rfc3339_from_unix_ms),
        }
    }
}

/// `201` body of `POST /admin/keys`: the key and its token, which is shown this once.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    pub token: String,
}

/// `GET /admin/keys`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// The key id of whoever made the request, for the audit log lines.
fn actor(principal: Option<&Principal>) -> String {
    match principal {
        Some(Principal::Key(key)) => key.id.to_string(),
        _ => "-".to_owned(),
    }
}

/// `POST /admin/keys` with `{"name": .., "scope": "read"|"write"|"admin"}`.
pub async fn create(
    State(app): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CreateKey = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected JSON {{\"name\": \"...\", \"scope\": \"read\"|\"write\"|\"admin\"}}: {e}"
        ))
    })?;
    validate_name(&request.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = AccessKey::generate(&request.name, request.scope, unix_ms_now())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let stored = key.clone();
    app.meta().insert_key(&stored).await?;
    tracing::info!(
        key_id = %key.id,
        name = %key.name,
        scope = %key.scope,
        by = actor(principal.as_deref()),
        "access key created"
    );
    let location = HeaderValue::from_str(&format!("/admin/keys/{}", key.id))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let body = CreatedKey {
        key: KeyView::from(&key),
        token: key.token().expose(),
    };
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            // The token is in the body: no cache may keep it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(body),
    )
        .into_response())
}

/// `GET /admin/keys`: every key, revoked ones included, without secrets.
pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let keys = app.meta().list_keys().await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    })
    .into_response())
}

/// `DELETE /admin/keys/{id}`: revokes the key (and every URL presigned with it). `204`; `404`
/// for a key that does not exist. The record stays, marked revoked.
pub async fn revoke(
    State(app): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        let shown: String = raw_id.chars().take(32).collect();
        ApiError::new(ErrorCode::NotFound, format!("no access key {shown:?}"))
    };
    let id = KeyId::parse(&raw_id).map_err(|_| not_found())?;
    let revoked = app
        .meta()
        .revoke_key(&id, unix_ms_now())
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(
        key_id = %revoked.id,
        name = %revoked.name,
        by = actor(principal.as_deref()),
        "access key revoked"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
