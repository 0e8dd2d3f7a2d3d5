//! The cluster token: a shared secret nodes present to the gateway when registering
//! (`Authorization: Bearer <token>`).

use std::fmt;
use std::fs;
use std::path::Path;

use crate::error::{CertsError, Result};
use crate::file_write::{FileAccess, warn_if_exposed, write_file};
use crate::random::{hex, random_bytes};

/// A cluster token. `Debug` never shows the secret.
#[derive(Clone)]
pub struct ClusterToken(String);

impl ClusterToken {
    /// Number of random bytes in a generated token (hex-encoded, twice as many characters).
    pub const RANDOM_BYTES: usize = 32;

    /// A new random token.
    pub fn generate() -> Result<Self> {
        Ok(Self(hex(&random_bytes::<{ Self::RANDOM_BYTES }>()?)))
    }

    /// Reads a token file; surrounding whitespace is ignored.
    ///
    /// The token must be non-empty visible ASCII, since it travels in an HTTP header.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| CertsError::io(path, e))?;
        warn_if_exposed(path);
        let token = text.trim();
        if token.is_empty() {
            return Err(CertsError::invalid_file(path, "cluster token is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CertsError::invalid_file(
                path,
                "cluster token must be visible ASCII without spaces",
            ));
        }
        Ok(Self(token.to_owned()))
    }

    /// Writes the token and a newline with mode 0600; see [`write_file`] for `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<()> {
        let mut text = String::with_capacity(self.0.len() + 1);
        text.push_str(&self.0);
        text.push('\n');
        write_file(path, text.as_bytes(), FileAccess::Secret, force)
    }

    /// The secret, to send as a bearer token.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, compared in time independent of where they
    /// differ (the length is not secret: generated tokens all have the same).
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.0.as_bytes();
        let presented = presented.as_bytes();
        if expected.len() != presented.len() {
            return false;
        }
        let diff = expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| std::hint::black_box(acc | (a ^ b)));
        diff == 0
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_tokens_are_64_hex_chars_and_distinct() {
        let a = ClusterToken::generate().unwrap();
        let b = ClusterToken::generate().unwrap();
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn write_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.token");
        let token = ClusterToken::generate().unwrap();
        token.write(&path, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ClusterToken::load(&path).unwrap().as_str(), token.as_str());
        assert!(matches!(
            token.write(&path, false),
            Err(CertsError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn load_trims_whitespace_and_rejects_bad_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        fs::write(&path, "  abc123\r\n").unwrap();
        assert_eq!(ClusterToken::load(&path).unwrap().as_str(), "abc123");
        for bad in ["", " \n", "ab cd", "caf\u{e9}"] {
            fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    ClusterToken::load(&path),
                    Err(CertsError::InvalidFile { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let missing = dir.path().join("missing");
        assert!(matches!(
            ClusterToken::load(&missing),
            Err(CertsError::Io { path, .. }) if path == missing
        ));
    }

    #[test]
    fn matches_only_the_exact_token() {
        let token = ClusterToken("s3cret".into());
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3creT"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3crets"));
        assert!(!token.matches(""));
    }
}
