//! The gateway's HTTP API (DESIGN §2): routes, handlers and the JSON error shape.
//!
//! | route | handler |
//! | --- | --- |
//! | `POST /files`, `POST /upload` | [`files::upload`] |
//! | `GET`/`HEAD /files/{id}`, `GET`/`HEAD /download/{id}` | [`files::download`] |
//! | `GET /files/{id}/meta` | [`files::file_meta`] |
//! | `DELETE /files/{id}` | [`files::delete`] |
//! | `GET /files` | [`files::list`] |
//! | `POST /files/{id}/presign` | [`files::presign`] |
//! | `GET /nodes`, `GET /health`, `GET /metrics` | [`status`] |
//! | `POST`/`GET /admin/keys`, `DELETE /admin/keys/{id}` | [`admin_keys`] |
//! | `POST`/`GET /admin/scrub`, `GET /admin/damaged` | [`admin_scrub`] |
//!
//! Every request passes [`crate::api::authorize`] first, which decides from the method and path
//! alone what it needs.

pub mod admin_backup;
pub mod admin_edge;
pub mod admin_keys;
pub mod admin_nodes;
pub mod admin_rebalance;
pub mod admin_recover;
pub mod admin_scrub;
pub mod conn_idle;
pub mod disposition;
pub mod error;
pub mod error_counts;
pub mod files;
pub mod listener;
pub mod node_directory;
pub mod range;
mod request_guard;
mod request_log;
pub mod served;
pub mod status;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod upload_errors;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use uuid::Uuid;

use crate::admission::{Admission, AdmissionLimits, Refused};
use crate::auth::AuthPolicy;
use crate::meta::{MetaError, SharedMeta};
use crate::metrics::Metrics;
use crate::node_client::{NodeClient, SharedNodeClient};
use crate::upload::{UploadSettings, Uploader};
use error::{ApiError, ErrorCode};

/// Admission limits of the API edge (`max_uploads`, `max_downloads`, `admission_queue`,
/// `admission_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub uploads: AdmissionLimits,
    pub downloads: AdmissionLimits,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        use crate::config::{
            DEFAULT_ADMISSION_QUEUE, DEFAULT_ADMISSION_WAIT, DEFAULT_MAX_DOWNLOADS,
            DEFAULT_MAX_UPLOADS,
        };
        let limits = |limit| AdmissionLimits {
            limit,
            queue: DEFAULT_ADMISSION_QUEUE,
            max_wait: DEFAULT_ADMISSION_WAIT,
        };
        EdgeLimits {
            uploads: limits(DEFAULT_MAX_UPLOADS),
            downloads: limits(DEFAULT_MAX_DOWNLOADS),
        }
    }
}

/// A metadata failure behind a native API request: logged, and answered as an internal error
/// (the client can do nothing about it but retry).
impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        tracing::error!(error = %e, "metadata error");
        ApiError::internal(format!("metadata: {e}"))
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        let retry = refused.retry_after_secs();
        ApiError::new(
            ErrorCode::Busy,
            format!("the gateway is busy ({refused}); retry later"),
        )
        .with_retry_after(retry)
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppInner>,
}

struct AppInner {
    meta: SharedMeta,
    store: SharedNodeClient,
    directory: Arc<dyn node_directory::NodeDirectory>,
    metrics: Arc<Metrics>,
    /// Error responses of this surface, by code (`sixfold_errors_total`).
    errors: error_counts::ErrorCounts,
    uploader: Uploader,
    uploads: Admission,
    downloads: Admission,
    /// Nodes needed for a full-size upload, for `/health`.
    part_count: u32,
    /// Anonymous access and whether `/metrics` is protected.
    auth: AuthPolicy,
}

impl AppState {
    /// `nodes` serves both the data path and the node views.
    pub fn new<N: NodeClient + node_directory::NodeDirectory>(
        meta: SharedMeta,
        store: Arc<N>,
        metrics: Arc<Metrics>,
        settings: UploadSettings,
    ) -> Self {
        Self::with_limits(meta, store, metrics, settings, EdgeLimits::default())
    }

    pub fn with_limits<N: NodeClient + node_directory::NodeDirectory>(
        meta: SharedMeta,
        store: Arc<N>,
        metrics: Arc<Metrics>,
        settings: UploadSettings,
        limits: EdgeLimits,
    ) -> Self {
        Self::with_policy(
            meta,
            store,
            metrics,
            settings,
            limits,
            AuthPolicy::default(),
        )
    }

    pub fn with_policy<N: NodeClient + node_directory::NodeDirectory>(
        meta: SharedMeta,
        nodes: Arc<N>,
        metrics: Arc<Metrics>,
        settings: UploadSettings,
        limits: EdgeLimits,
        auth: AuthPolicy,
    ) -> Self {
        let part_count = settings.split.part_count;
        let directory: Arc<dyn node_directory::NodeDirectory> = nodes.clone();
        let store: SharedNodeClient = nodes;
        let uploader = Uploader::new(meta.clone(), store.clone(), metrics.clone(), settings);
        AppState {
            inner: Arc::new(AppInner {
                meta,
                store,
                directory,
                metrics,
                errors: error_counts::ErrorCounts::default(),
                uploader,
                uploads: Admission::new("upload", limits.uploads),
                downloads: Admission::new("download", limits.downloads),
                part_count,
                auth,
            }),
        }
    }

    pub fn meta(&self) -> &SharedMeta {
        &self.inner.meta
    }

    pub fn error_counts(&self) -> &error_counts::ErrorCounts {
        &self.inner.errors
    }

    /// How the nodes are shown (`/nodes`, `/metrics`).
    pub fn directory(&self) -> &dyn node_directory::NodeDirectory {
        self.inner.directory.as_ref()
    }

    pub fn store(&self) -> &SharedNodeClient {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn uploader(&self) -> &Uploader {
        &self.inner.uploader
    }

    /// Upload slots.
    pub fn uploads(&self) -> &Admission {
        &self.inner.uploads
    }

    /// Download slots.
    pub fn downloads(&self) -> &Admission {
        &self.inner.downloads
    }

    pub fn part_count(&self) -> u32 {
        self.inner.part_count
    }

    pub fn auth_policy(&self) -> &AuthPolicy {
        &self.inner.auth
    }
}

/// Parses a file id from a path segment (`400 invalid_id` if it is not a UUID).
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::invalid_id(raw))
}

/// The public API router, with `extra` routes (the cluster's node registration endpoints)
/// merged in, every route behind [`crate::api::authorize`]. Upload routes have axum's body limit disabled: uploads enforce `max_file_size`
/// themselves, from `Content-Length` up front or while streaming.
pub fn router(state: AppState, extra: Router) -> Router {
    Router::new()
        .route(
            "/files",
            post(files::upload)
                .layer(DefaultBodyLimit::disable())
                .get(files::list),
        )
        .route(
            "/upload",
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/files/{id}", get(files::download).delete(files::delete))
        .route("/download/{id}", get(files::download))
        .route("/files/{id}/meta", get(files::file_meta))
        .route("/files/{id}/presign", post(files::presign))
        .route(
            "/admin/keys",
            post(admin_keys::create).get(admin_keys::list),
        )
        .route("/admin/keys/{id}", delete(admin_keys::revoke))
        .route("/nodes", get(status::nodes))
        .route("/health", get(status::health))
        .route("/metrics", get(status::metrics))
        .with_state(state.clone())
        .merge(extra)
        .fallback(status::no_route)
        .method_not_allowed_fallback(status::method_not_allowed)
        // Inside the request log, so refused requests are logged and counted too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::api::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            request_log::log_request,
        ))
}
