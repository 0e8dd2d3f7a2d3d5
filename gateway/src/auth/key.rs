//! An access key as stored in the metadata.

use serde::{Deserialize, Serialize};

use super::scope::Scope;
use super::token::{KeyId, RngError, Secret, Token};

/// Longest key name, in bytes.
pub const MAX_KEY_NAME_BYTES: usize = 128;

/// An access key. The secret is kept (not only a hash of it): SigV4 needs it on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: KeyId,
    pub name: String,
    pub scope: Scope,
    pub secret: Secret,
    pub created_unix_ms: u64,
    /// When it was revoked; a revoked key is kept so that listings show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_unix_ms: Option<u64>,
}

/// A key name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    #[error("the key name is empty")]
    Empty,
    #[error("the key name is longer than {MAX_KEY_NAME_BYTES} bytes")]
    TooLong,
    /// Control characters would let a name forge log lines.
    #[error("the key name contains control characters")]
    Control,
}

/// Checks a key name: 1 to 128 bytes, no control characters.
pub fn validate_name(name: &str) -> Result<(), KeyNameError> {
    if name.trim().is_empty() {
        Err(KeyNameError::Empty)
    } else if name.len() > MAX_KEY_NAME_BYTES {
        Err(KeyNameError::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(KeyNameError::Control)
    } else {
        Ok(())
    }
}

impl AccessKey {
    /// A new key with a fresh id and secret, created now.
    pub fn generate(name: &str, scope: Scope, now_unix_ms: u64) -> Result<AccessKey, RngError> {
        Ok(AccessKey {
            id: KeyId::generate()?,
            name: name.to_owned(),
            scope,
            secret: Secret::generate()?,
            created_unix_ms: now_unix_ms,
            revoked_unix_ms: None,
        })
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_unix_ms.is_some()
    }

    /// The bearer token of this key.
    pub fn token(&self) -> Token {
        Token {
            id: self.id.clone(),
            secret: self.secret.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name("ci uploader ✓"), Ok(()));
        assert_eq!(validate_name(""), Err(KeyNameError::Empty));
        assert_eq!(validate_name("  "), Err(KeyNameError::Empty));
        assert_eq!(validate_name("a\nb"), Err(KeyNameError::Control));
        assert_eq!(validate_name("a\u{1b}[31m"), Err(KeyNameError::Control));
        assert_eq!(validate_name(&"x".repeat(128)), Ok(()));
        assert_eq!(validate_name(&"x".repeat(129)), Err(KeyNameError::TooLong));
    }

    #[test]
    fn generated_keys_are_live_and_distinct() {
        let a = AccessKey::generate("a", Scope::Read, 5).expect("key");
        let b = AccessKey::generate("a", Scope::Read, 5).expect("key");
        assert!(!a.is_revoked());
        assert_ne!(a.id, b.id);
        assert_eq!(a.token().id, a.id);
        assert!(!format!("{a:?}").contains(a.secret.expose()));
    }
}
