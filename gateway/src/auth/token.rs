//! Key ids, secrets and the bearer token that joins them: `<key id>.<secret>`.
//!
//! Key ids look like S3 access key ids: 20 characters, `SF` then 18 of `A-Z0-9`. Secrets are 40
//! characters of `A-Za-z0-9` (about 238 bits), both drawn from the OS random source without
//! modulo bias. Neither alphabet contains `.`, so the token splits unambiguously.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Characters in a key id.
pub const KEY_ID_LEN: usize = 20;
/// Characters in a secret.
pub const SECRET_LEN: usize = 40;
/// What every key id this release makes starts with (ids are accepted without it too).
pub const KEY_ID_PREFIX: &str = "SF";

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The OS random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RngError(String);

/// `len` characters of `alphabet`, uniformly: random bytes at or above the largest multiple of
/// the alphabet's size are rejected rather than folded, which would bias the first characters.
fn random_chars(alphabet: &[u8], len: usize) -> Result<String, RngError> {
    let n = alphabet.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| RngError(e.to_string()))?;
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % n]));
            }
        }
    }
    Ok(out)
}

/// An access key's public identifier.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// A fresh random id.
    pub fn generate() -> Result<KeyId, RngError> {
        let rest = random_chars(UPPER_DIGITS, KEY_ID_LEN - KEY_ID_PREFIX.len())?;
        Ok(KeyId(format!("{KEY_ID_PREFIX}{rest}")))
    }

    /// Checks the form: 20 characters of `A-Z0-9`.
    pub fn parse(text: &str) -> Result<KeyId, AuthError> {
        if text.len() == KEY_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            Ok(KeyId(text.to_owned()))
        } else {
            Err(AuthError::Malformed(
                "the key id is not 20 characters of A-Z0-9",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = AuthError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        KeyId::parse(&text)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An access key's secret. `Debug` never shows it, so it cannot reach a log by accident;
/// [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Secret(String);

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Result<Secret, RngError> {
        random_chars(ALPHANUMERIC, SECRET_LEN).map(Secret)
    }

    /// Checks the form: 40 characters of `A-Za-z0-9`.
    pub fn parse(text: &str) -> Result<Secret, AuthError> {
        if text.len() == SECRET_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Secret(text.to_owned()))
        } else {
            Err(AuthError::Malformed(
                "the secret is not 40 characters of A-Za-z0-9",
            ))
        }
    }

    /// The secret's text, for signing and for showing a new key's token once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Equality in time independent of where the two differ.
    pub fn matches(&self, other: &Secret) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl TryFrom<String> for Secret {
    type Error = AuthError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Secret::parse(&text)
    }
}

impl From<Secret> for String {
    fn from(secret: Secret) -> String {
        secret.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a client presents: `<key id>.<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: KeyId,
    pub secret: Secret,
}

impl Token {
    /// Parses a token (surrounding whitespace, such as a token file's newline, is ignored).
    pub fn parse(text: &str) -> Result<Token, AuthError> {
        let (id, secret) = text
            .trim()
            .split_once('.')
            .ok_or(AuthError::Malformed("a token is <key id>.<secret>"))?;
        Ok(Token {
            id: KeyId::parse(id)?,
            secret: Secret::parse(secret)?,
        })
    }

    /// Parses an `Authorization` header value: `Bearer <token>` (the scheme in any case).
    pub fn from_authorization(value: &[u8]) -> Result<Token, AuthError> {
        let text = std::str::from_utf8(value)
            .map_err(|_| AuthError::Malformed("the Authorization header is not ASCII"))?;
        let (scheme, rest) = text.trim().split_once(' ').ok_or(AuthError::Malformed(
            "expected Authorization: Bearer <token>",
        ))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed(
                "expected Authorization: Bearer <token>",
            ));
        }
        Token::parse(rest)
    }

    /// The token's text, to hand to the key's owner once.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_and_secrets_have_their_form() {
        let id = KeyId::generate().expect("id");
        assert_eq!(id.as_str().len(), KEY_ID_LEN);
        assert!(id.as_str().starts_with(KEY_ID_PREFIX));
        assert_eq!(KeyId::parse(id.as_str()).expect("parse"), id);
        let secret = Secret::generate().expect("secret");
        assert_eq!(secret.expose().len(), SECRET_LEN);
        assert!(secret.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(secret, Secret::generate().expect("secret"));
        assert_ne!(id, KeyId::generate().expect("id"));
    }

    #[test]
    fn token_round_trips_and_parses_bearer() {
        let token = Token {
            id: KeyId::generate().expect("id"),
            secret: Secret::generate().expect("secret"),
        };
        let text = token.expose();
        assert_eq!(Token::parse(&text).expect("parse"), token);
        assert_eq!(Token::parse(&format!("{text}\n")).expect("newline"), token);
        for header in [format!("Bearer {text}"), format!("bearer {text}")] {
            assert_eq!(
                Token::from_authorization(header.as_bytes()).expect("bearer"),
                token
            );
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let id = "SFABCDEFGHIJKLMNOPQR";
        let secret = "a".repeat(SECRET_LEN);
        for bad in [
            String::new(),
            id.to_owned(),
            format!("{id}{secret}"),
            format!("{}.{secret}", &id[..19]),
            format!("{}.{secret}", id.to_lowercase()),
            format!("{id}.{}", &secret[..39]),
            format!("{id}.{secret}a"),
            format!("{id}.{}!", &secret[..39]),
            format!("{id}.{}.", &secret[..39]),
            format!("{id}.é{}", &secret[..38]),
        ] {
            assert!(
                matches!(Token::parse(&bad), Err(AuthError::Malformed(_))),
                "{bad:?}"
            );
        }
        let good = format!("{id}.{secret}");
        assert!(Token::parse(&good).is_ok());
        for bad in [
            format!("Basic {good}"),
            good.clone(),
            "Bearer".to_owned(),
            format!("Bearer  x{good}"),
        ] {
            assert!(
                Token::from_authorization(bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        assert!(Token::from_authorization(b"Bearer \xff").is_err());
    }

    #[test]
    fn secrets_compare_and_never_debug_print() {
        let a = Secret::parse(&"a".repeat(SECRET_LEN)).expect("a");
        let b = Secret::parse(&format!("{}b", "a".repeat(SECRET_LEN - 1))).expect("b");
        assert!(a.matches(&a.clone()));
        assert!(!a.matches(&b));
        assert_eq!(format!("{a:?}"), "Secret(..)");
        let token = Token {
            id: KeyId::parse("SFABCDEFGHIJKLMNOPQR").expect("id"),
            secret: a,
        };
        assert!(!format!("{token:?}").contains("aaaa"));
    }

    #[test]
    fn random_chars_cover_the_alphabet() {
        let text = random_chars(UPPER_DIGITS, 4000).expect("random");
        for c in UPPER_DIGITS {
            assert!(text.as_bytes().contains(c), "{}", char::from(*c));
        }
    }
}
