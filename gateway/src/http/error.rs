//! The one error shape of the HTTP API: a status and `{"error": "<code>", "message": "<text>"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;

/// Machine-readable error codes; [`ErrorCode::as_str`] is what clients see in `"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    InvalidId,
    NotFound,
    MethodNotAllowed,
    TooLarge,
    /// `range_not_satisfiable`.
    BadRange,
    NotEnoughNodes,
    InsufficientStorage,
    NodeError,
    Internal,
    /// The gateway or a node is at its admission limit; retry after `Retry-After`.
    Busy,
    /// The client sent no request bytes for longer than the configured idle time.
    RequestTimeout,
    /// A node holding a needed part is down; retry after `Retry-After`.
    NodeUnavailable,
    /// The request uses something the gateway does not support (a transfer coding).
    NotImplemented,
    /// Missing, bad, revoked or expired credentials (`401`, with `WWW-Authenticate`).
    Unauthorized,
    /// Valid credentials with too small a scope (`403`).
    Forbidden,
    /// A node holds data the metadata cannot account for (`/health`, `503`).
    RecoveryNeeded,
    /// A part the request needs was found corrupt or unreadable on its node (`503`).
    FileDamaged,
}

impl ErrorCode {
    /// Every code, for metrics.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidId,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::TooLarge,
        ErrorCode::BadRange,
        ErrorCode::NotEnoughNodes,
        ErrorCode::InsufficientStorage,
        ErrorCode::NodeError,
        ErrorCode::Internal,
        ErrorCode::Busy,
        ErrorCode::RequestTimeout,
        ErrorCode::NodeUnavailable,
        ErrorCode::NotImplemented,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RecoveryNeeded,
        ErrorCode::FileDamaged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadRange => "range_not_satisfiable",
            ErrorCode::NotEnoughNodes => "not_enough_nodes",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::NodeError => "node_error",
            ErrorCode::Internal => "internal",
            ErrorCode::Busy => "busy",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::NodeUnavailable => "node_unavailable",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RecoveryNeeded => "recovery_needed",
            ErrorCode::FileDamaged => "file_damaged",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidId => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRange => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::NotEnoughNodes => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::NodeError => StatusCode::BAD_GATEWAY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Busy | ErrorCode::NodeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RecoveryNeeded | ErrorCode::FileDamaged => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An API error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra headers (`Content-Range` on a 416).
    pub content_range: Option<String>,
    /// Seconds for `Retry-After` (503s the client may retry).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            content_range: None,
            retry_after: None,
        }
    }

    /// The same error with `Retry-After: seconds` (at least 1).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn invalid_id(raw: &str) -> Self {
        let shown: String = raw.chars().take(64).collect();
        Self::new(
            ErrorCode::InvalidId,
            format!("{shown:?} is not a file id (a UUID)"),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            ErrorCode::TooLarge,
            format!("the file is larger than the limit of {limit} bytes"),
        )
    }

    /// 416 with `Content-Range: bytes */size`.
    pub fn unsatisfiable_range(size: u64) -> Self {
        ApiError {
            code: ErrorCode::BadRange,
            message: format!("the range cannot be satisfied by a file of {size} bytes"),
            content_range: Some(format!("bytes */{size}")),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// Credentials problems are `401` (the client should authenticate, or authenticate again),
/// scope problems `403`; a key store that cannot be read is the gateway's fault.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match &e {
            AuthError::Store(_) => ErrorCode::Internal,
            e if e.is_forbidden() => ErrorCode::Forbidden,
            _ => ErrorCode::Unauthorized,
        };
        ApiError::new(code, e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.as_str(),
            message: &self.message,
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        if let Some(range) = self.content_range
            && let Ok(value) = HeaderValue::from_str(&range)
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == ErrorCode::Unauthorized {
            // RFC 6750: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sixfold\""),
            );
        }
        // Lets the request log and the metrics see the code without parsing the body.
        response.extensions_mut().insert(self.code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn error_json_has_exactly_error_and_message() {
        let response = ApiError::invalid_id("nope").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let json = body_json(response).await;
        let object = json.as_object().expect("object");
        assert_eq!(object.len(), 2, "{json}");
        assert_eq!(json["error"], "invalid_id");
        assert!(json["message"].as_str().expect("text").contains("nope"));
    }

    #[tokio::test]
    async fn unsatisfiable_range_carries_content_range() {
        let response = ApiError::unsatisfiable_range(1234).into_response();
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */1234");
        assert_eq!(body_json(response).await["error"], "range_not_satisfiable");
    }

    #[tokio::test]
    async fn busy_carries_retry_after() {
        let response = ApiError::new(ErrorCode::Busy, "full")
            .with_retry_after(0)
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body_json(response).await["error"], "busy");
    }

    #[tokio::test]
    async fn auth_errors_are_401_with_www_authenticate_or_403() {
        use crate::auth::Scope;
        for e in [
            AuthError::Missing,
            AuthError::Malformed("x"),
            AuthError::BadCredentials,
            AuthError::Revoked,
            AuthError::Expired { expired_at: 5 },
            AuthError::BadSignature,
            AuthError::NotPresignable,
        ] {
            let response = ApiError::from(e.clone()).into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{e}");
            assert_eq!(
                response.headers()[header::WWW_AUTHENTICATE],
                "Bearer realm=\"sixfold\""
            );
            assert_eq!(body_json(response).await["error"], "unauthorized");
        }
        let expired = ApiError::from(AuthError::Expired { expired_at: 5 });
        assert!(expired.message.contains("expired"), "{expired}");
        for e in [
            AuthError::Forbidden {
                needed: Scope::Write,
                have: Scope::Read,
            },
            AuthError::NeedsKey,
        ] {
            let response = ApiError::from(e).into_response();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
            assert_eq!(body_json(response).await["error"], "forbidden");
        }
        let store = ApiError::from(AuthError::Store("down".into()));
        assert_eq!(store.code, ErrorCode::Internal);
    }

    #[test]
    fn codes_map_to_statuses() {
        let expected = [
            (ErrorCode::BadRequest, 400, "bad_request"),
            (ErrorCode::InvalidId, 400, "invalid_id"),
            (ErrorCode::NotFound, 404, "not_found"),
            (ErrorCode::MethodNotAllowed, 405, "method_not_allowed"),
            (ErrorCode::TooLarge, 413, "too_large"),
            (ErrorCode::BadRange, 416, "range_not_satisfiable"),
            (ErrorCode::NotEnoughNodes, 503, "not_enough_nodes"),
            (ErrorCode::InsufficientStorage, 507, "insufficient_storage"),
            (ErrorCode::NodeError, 502, "node_error"),
            (ErrorCode::Internal, 500, "internal"),
            (ErrorCode::Busy, 503, "busy"),
            (ErrorCode::RequestTimeout, 408, "request_timeout"),
            (ErrorCode::NodeUnavailable, 503, "node_unavailable"),
            (ErrorCode::NotImplemented, 501, "not_implemented"),
            (ErrorCode::Unauthorized, 401, "unauthorized"),
            (ErrorCode::Forbidden, 403, "forbidden"),
            (ErrorCode::RecoveryNeeded, 503, "recovery_needed"),
            (ErrorCode::FileDamaged, 503, "file_damaged"),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (i, (code, status, text)) in expected.into_iter().enumerate() {
            assert_eq!(code.status().as_u16(), status);
            assert_eq!(code.as_str(), text);
            assert_eq!(code.index(), i);
            assert_eq!(ErrorCode::ALL[i], code);
        }
    }
}
