//! Access keys (DESIGN §9): who may call the API, with which scope.
//!
//! A key has an id, a name, a scope and a secret; clients send `Authorization: Bearer
//! <id>.<secret>` ([`token`]) or use a presigned URL made with the key ([`presign`]). The
//! secret is stored retrievable (not only hashed) because the S3 API's SigV4 needs it on the
//! server side, as MinIO and Garage keep it; it is compared in constant time.
//!
//! This module knows nothing of HTTP: [`AuthError`] says what is wrong, and the HTTP error
//! module maps it to a status and JSON code.

pub mod bootstrap;
mod error;
pub mod key;
pub mod presign;
pub mod scope;
pub mod secret_file;
pub mod token;

pub use error::AuthError;
pub use key::{AccessKey, KeyNameError};
pub use scope::{Anonymous, Scope, ScopeParseError};
pub use token::{KeyId, Secret, Token};

/// How the API edge treats requests, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthPolicy {
    /// What a request without credentials may do (`anonymous`; never admin).
    pub anonymous: Anonymous,
    /// Whether `/metrics` needs the read scope (`protect_metrics`).
    pub protect_metrics: bool,
}

/// Who a request acts as, once authenticated. Handlers read it from the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A bearer token of this key.
    Key(AccessKey),
    /// A presigned URL made with this key id; it grants one file's GET/HEAD only.
    Presigned(KeyId),
    /// No credentials, let through by the `anonymous` setting with this scope.
    Anonymous(Scope),
}

impl Principal {
    /// The key behind the request, if it came with a bearer token.
    pub fn key(&self) -> Option<&AccessKey> {
        match self {
            Principal::Key(key) => Some(key),
            _ => None,
        }
    }
}
