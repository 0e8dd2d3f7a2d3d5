//! The admin API on a listener of its own (`admin_listen`): when one is configured, the public
//! listener refuses every `/admin/...` path, so a firewall can keep key management, node
//! states, backups and rebuilds off the network that clients reach. Without one, both APIs
//! share the public listener (the default, and `dev`'s).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Whether `path` belongs to the admin API.
pub fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// Middleware of the public listener when the admin API has its own.
pub async fn refuse_admin(request: Request, next: Next) -> Response {
    if is_admin_path(request.uri().path()) {
        return ApiError::not_found(
            "the admin API is not served here: use the gateway's admin listener (admin_listen)",
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_are_the_admin_tree_only() {
        for path in ["/admin", "/admin/keys", "/admin/nodes/x", "/admin/recover"] {
            assert!(is_admin_path(path), "{path}");
        }
        for path in ["/administrator", "/files/admin", "/", "/health", "/files"] {
            assert!(!is_admin_path(path), "{path}");
        }
    }
}
