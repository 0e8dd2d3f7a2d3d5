//! Presigned URLs: `GET`/`HEAD` of one file until an expiry, for whoever holds the URL.
//!
//! `/files/{id}?X-Sixfold-Key=<key id>&X-Sixfold-Expires=<unix seconds>&X-Sixfold-Signature=<hex>`
//! where the signature is HMAC-SHA256, keyed with the key's secret, over
//! `SIXFOLD-PRESIGN-V1 \n <method class> \n <path> \n <expires> \n <key id>`. The method class
//! of GET and HEAD is `GET`. The version line lets a later format coexist with this one. The
//! key is looked up on every use, so revoking it kills every URL made with it.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::AuthError;
use super::key::AccessKey;
use super::token::{KeyId, Secret};

type HmacSha256 = Hmac<Sha256>;

pub const KEY_PARAM: &str = "X-Sixfold-Key";
pub const EXPIRES_PARAM: &str = "X-Sixfold-Expires";
pub const SIGNATURE_PARAM: &str = "X-Sixfold-Signature";
/// The method class GET and HEAD sign as.
pub const READ_METHOD_CLASS: &str = "GET";
/// Longest validity of a presigned URL.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 3600);
/// Validity when the request names none.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

const FORMAT_LINE: &str = "SIXFOLD-PRESIGN-V1";

/// The presigning parameters of a request's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    pub key_id: KeyId,
    /// Unix seconds after which the URL no longer works.
    pub expires: u64,
    pub signature: [u8; 32],
}

/// A validity a presign request may not ask for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiresInError {
    #[error("expires_in {0:?} is not a duration (e.g. \"1h\", \"30m\")")]
    Unparsable(String),
    #[error("expires_in must be longer than 0")]
    Zero,
    #[error("expires_in is longer than the maximum of 7 days")]
    TooLong,
}

/// Parses and checks a requested validity (`"1h"`, humantime syntax; default 1 h, at most 7 days).
pub fn parse_expires_in(text: Option<&str>) -> Result<Duration, ExpiresInError> {
    let duration = match text {
        None => DEFAULT_EXPIRES_IN,
        Some(text) => humantime::parse_duration(text)
            .map_err(|_| ExpiresInError::Unparsable(text.chars().take(64).collect()))?,
    };
    if duration.is_zero() {
        Err(ExpiresInError::Zero)
    } else if duration > MAX_EXPIRES_IN {
        Err(ExpiresInError::TooLong)
    } else {
        Ok(duration)
    }
}

fn string_to_sign(method_class: &str, path: &str, expires: u64, key_id: &KeyId) -> String {
    format!("{FORMAT_LINE}\n{method_class}\n{path}\n{expires}\n{key_id}")
}

fn mac(secret: &Secret) -> Result<HmacSha256, AuthError> {
    // HMAC takes keys of any length; this cannot fail, but is not unwrapped on principle.
    HmacSha256::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| AuthError::Store("cannot key HMAC-SHA256".into()))
}

/// The signature of a URL for `path` until `expires`, made with `key_id`'s `secret`.
pub fn sign(
    secret: &Secret,
    key_id: &KeyId,
    method_class: &str,
    path: &str,
    expires: u64,
) -> Result<[u8; 32], AuthError> {
    let mut mac = mac(secret)?;
    mac.update(string_to_sign(method_class, path, expires, key_id).as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut out = [0u8; 32];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// The relative URL that presigns `path` (which must have no query of its own).
pub fn url(path: &str, key_id: &KeyId, expires: u64, signature: &[u8; 32]) -> String {
    format!(
        "{path}?{KEY_PARAM}={key_id}&{EXPIRES_PARAM}={expires}&{SIGNATURE_PARAM}={}",
        hex(signature)
    )
}

/// Checks a presigned request against its key: not revoked, the signature (in constant time),
/// then the expiry (so that only an authentic URL is told it expired).
pub fn verify(
    key: &AccessKey,
    presigned: &Presigned,
    method_class: &str,
    path: &str,
    now_unix_secs: u64,
) -> Result<(), AuthError> {
    if key.is_revoked() {
        return Err(AuthError::Revoked);
    }
    let mut mac = mac(&key.secret)?;
    mac.update(string_to_sign(method_class, path, presigned.expires, &presigned.key_id).as_bytes());
    mac.verify_slice(&presigned.signature)
        .map_err(|_| AuthError::BadSignature)?;
    if now_unix_secs > presigned.expires {
        return Err(AuthError::Expired {
            expired_at: presigned.expires,
        });
    }
    Ok(())
}

/// The presigning parameters of a query string: `None` if it has none of them, an error if it
/// has some but not all, or any twice or malformed.
pub fn from_query(query: Option<&str>) -> Result<Option<Presigned>, AuthError> {
    let (mut key, mut expires, mut signature) = (None, None, None);
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            KEY_PARAM => &mut key,
            EXPIRES_PARAM => &mut expires,
            SIGNATURE_PARAM => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed("a presigning parameter appears twice"));
        }
    }
    match (key, expires, signature) {
        (None, None, None) => Ok(None),
        (Some(key), Some(expires), Some(signature)) => Ok(Some(Presigned {
            key_id: KeyId::parse(key)?,
            expires: expires
                .parse()
                .map_err(|_| AuthError::Malformed("X-Sixfold-Expires is not Unix seconds"))?,
            signature: unhex(signature).ok_or(AuthError::Malformed(
                "X-Sixfold-Signature is not 64 hex digits",
            ))?,
        })),
        _ => Err(AuthError::Malformed(
            "a presigned URL has X-Sixfold-Key, X-Sixfold-Expires and X-Sixfold-Signature",
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    const PATH: &str = "/files/8f6b0a4e-1c1e-4a3b-9d0e-2b7f4f0c9a11";
    const NOW: u64 = 1_800_000_000;

    fn key() -> AccessKey {
        AccessKey::generate("reader", Scope::Read, 1).expect("key")
    }

    fn presigned_url(key: &AccessKey, path: &str, expires: u64) -> Presigned {
        let sig = sign(&key.secret, &key.id, READ_METHOD_CLASS, path, expires).expect("sign");
        let url = url(path, &key.id, expires, &sig);
        let (url_path, query) = url.split_once('?').expect("query");
        assert_eq!(url_path, path);
        from_query(Some(query)).expect("parse").expect("presigned")
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = key();
        let p = presigned_url(&key, PATH, NOW + 60);
        assert_eq!(p.key_id, key.id);
        assert_eq!(verify(&key, &p, READ_METHOD_CLASS, PATH, NOW), Ok(()));
        // Valid up to and including the expiry second.
        assert_eq!(verify(&key, &p, READ_METHOD_CLASS, PATH, NOW + 60), Ok(()));
    }

    #[test]
    fn the_signature_is_pinned() {
        // The format is a contract with URLs already handed out: this must not change.
        let key = AccessKey {
            secret: Secret::parse(&"s".repeat(40)).expect("secret"),
            id: KeyId::parse("SFAAAAAAAAAAAAAAAAAA").expect("id"),
            ..key()
        };
        let sig = sign(&key.secret, &key.id, "GET", "/files/x", 1).expect("sign");
        let mut mac = HmacSha256::new_from_slice(&[b's'; 40]).expect("mac");
        mac.update(b"SIXFOLD-PRESIGN-V1\nGET\n/files/x\n1\nSFAAAAAAAAAAAAAAAAAA");
        assert_eq!(&sig[..], &mac.finalize().into_bytes()[..]);
    }

    #[test]
    fn tampering_is_refused() {
        let key = key();
        let p = presigned_url(&key, PATH, NOW + 60);
        let other_path = "/files/0b0e7f44-6c7a-4b8e-8d2a-5a1f3e9c7d21";
        let check = |p: &Presigned, method: &str, path: &str| verify(&key, p, method, path, NOW);
        assert_eq!(
            check(&p, READ_METHOD_CLASS, other_path),
            Err(AuthError::BadSignature)
        );
        assert_eq!(check(&p, "DELETE", PATH), Err(AuthError::BadSignature));
        let later = Presigned {
            expires: p.expires + 3600,
            ..p.clone()
        };
        assert_eq!(
            check(&later, READ_METHOD_CLASS, PATH),
            Err(AuthError::BadSignature)
        );
        let mut flipped = p.clone();
        flipped.signature[31] ^= 1;
        assert_eq!(
            check(&flipped, READ_METHOD_CLASS, PATH),
            Err(AuthError::BadSignature)
        );
        // Another key's secret, same id claimed.
        let other = AccessKey {
            id: key.id.clone(),
            ..self::key()
        };
        assert_eq!(
            verify(&other, &p, READ_METHOD_CLASS, PATH, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn expired_and_revoked_are_refused() {
        let mut key = key();
        let p = presigned_url(&key, PATH, NOW - 1);
        assert_eq!(
            verify(&key, &p, READ_METHOD_CLASS, PATH, NOW),
            Err(AuthError::Expired {
                expired_at: NOW - 1
            })
        );
        let live = presigned_url(&key, PATH, NOW + 60);
        key.revoked_unix_ms = Some(5);
        assert_eq!(
            verify(&key, &live, READ_METHOD_CLASS, PATH, NOW),
            Err(AuthError::Revoked)
        );
    }

    #[test]
    fn queries_parse_or_are_refused() {
        assert_eq!(from_query(None), Ok(None));
        assert_eq!(from_query(Some("name=a&limit=3")), Ok(None));
        let sig = "ab".repeat(32);
        let good = format!(
            "X-Sixfold-Key=SFAAAAAAAAAAAAAAAAAA&X-Sixfold-Expires=5&X-Sixfold-Signature={sig}"
        );
        let p = from_query(Some(&good)).expect("ok").expect("some");
        assert_eq!((p.expires, p.signature), (5, [0xab; 32]));
        for bad in [
            "X-Sixfold-Key=SFAAAAAAAAAAAAAAAAAA".to_owned(),
            format!("{good}&X-Sixfold-Expires=6"),
            good.replace("Expires=5", "Expires=soon"),
            good.replace("Expires=5", "Expires=-5"),
            good.replace(&sig, &"ab".repeat(31)),
            good.replace(&sig, &"zz".repeat(32)),
            good.replace(&sig, &format!("{}é", "a".repeat(62))),
            good.replace("SFAAAAAAAAAAAAAAAAAA", "sfaaaaaaaaaaaaaaaaaa"),
        ] {
            assert!(
                matches!(from_query(Some(&bad)), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn expiry_requests_are_bounded() {
        assert_eq!(parse_expires_in(None), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_expires_in(Some("1s")), Ok(Duration::from_secs(1)));
        assert_eq!(parse_expires_in(Some("7days")), Ok(MAX_EXPIRES_IN));
        assert_eq!(
            parse_expires_in(Some("7days 1s")),
            Err(ExpiresInError::TooLong)
        );
        assert_eq!(parse_expires_in(Some("0s")), Err(ExpiresInError::Zero));
        assert!(matches!(
            parse_expires_in(Some("soon")),
            Err(ExpiresInError::Unparsable(_))
        ));
    }
}
