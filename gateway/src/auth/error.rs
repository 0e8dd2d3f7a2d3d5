//! Why a request is not let in. The HTTP error module turns these into `401` (who are you?) and
//! `403` (you may not) responses; nothing here knows about HTTP.

use super::scope::Scope;

/// An authentication or authorization failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials where they are needed.
    #[error(
        "this request needs credentials: send `Authorization: Bearer <token>` or use a presigned URL"
    )]
    Missing,
    /// Credentials that cannot be parsed.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// An unknown key id or a secret that does not match; the two are not told apart.
    #[error("unknown access key or wrong secret")]
    BadCredentials,
    /// The key was revoked; so are the URLs presigned with it.
    #[error("the access key is revoked")]
    Revoked,
    /// A presigned URL past its expiry (Unix seconds).
    #[error("the presigned URL expired at {expired_at} (Unix time)")]
    Expired { expired_at: u64 },
    /// A presigned URL whose signature does not match its method, path, expiry and key.
    #[error("the presigned URL's signature does not match this request")]
    BadSignature,
    /// Presigned query parameters on a request they cannot authorize.
    #[error("a presigned URL grants only GET and HEAD of the one file it was made for")]
    NotPresignable,
    /// Authenticated, but the scope is too small.
    #[error("this request needs the {needed} scope; the credentials have {have}")]
    Forbidden { needed: Scope, have: Scope },
    /// The operation needs a key (signing a URL), and the request has none.
    #[error("this request needs an access key's bearer token")]
    NeedsKey,
    /// The key store could not be read.
    #[error("access keys unavailable: {0}")]
    Store(String),
}

impl AuthError {
    /// Whether the failure is about the scope (`403`) rather than the credentials (`401`).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Forbidden { .. } | AuthError::NeedsKey)
    }
}
