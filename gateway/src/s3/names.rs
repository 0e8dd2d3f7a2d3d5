//! Small pure helpers of the S3 layer: bucket names, listing tokens, `encoding-type=url`,
//! ETags and times.

use std::time::{Duration, UNIX_EPOCH};

use s3s::dto::{ETag, Timestamp};

/// S3's bucket naming rules (the general purpose bucket ones): 3 to 63 characters of
/// lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit, no
/// `..`, and not shaped like an IPv4 address.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|&b| edge(b) || b == b'.' || b == b'-')
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// A ListObjectsV2 continuation token: the hex of the marker it continues after (opaque to
/// clients, and safe in XML and URLs whatever the key).
pub fn encode_token(marker: &str) -> String {
    hex(marker.as_bytes())
}

/// Inverse of [`encode_token`]; `None` for a token this gateway did not make.
pub fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Characters `encoding-type=url` leaves as they are: unreserved ones and `/`.
const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// `value` as a listing returns it: URL-encoded when the client asked for `encoding-type=url`.
pub fn listed(value: &str, url_encode: bool) -> String {
    if url_encode {
        percent_encoding::utf8_percent_encode(value, KEY_ESCAPES).to_string()
    } else {
        value.to_owned()
    }
}

/// A stored ETag (no quotes) as the strong ETag of a response.
pub fn etag(stored: &str) -> ETag {
    ETag::Strong(stored.to_owned())
}

/// Milliseconds since the epoch as an S3 timestamp.
pub fn timestamp(unix_ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(unix_ms))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Parses a hex MD5 (an ETag without quotes) to its 16 bytes.
pub fn md5_from_hex(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The ETag of a multipart object: the MD5 of the parts' binary MD5s, `-` and the part count.
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> String {
    use s3s::crypto::Checksum;
    let mut md5 = s3s::crypto::Md5::new();
    let mut count = 0usize;
    for part in part_etags {
        match md5_from_hex(part) {
            Some(bytes) => md5.update(&bytes),
            None => md5.update(part.as_bytes()),
        }
        count += 1;
    }
    format!("{}-{count}", hex(md5.finalize().as_ref()))
}

/// An ETag as a client sends it (quoted or not) without its quotes.
pub fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.2", "a".repeat(63).as_str(), "1bucket"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "a_b",
            "192.168.1.1",
            "a".repeat(64).as_str(),
            "",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        for marker in ["", "a/b c", "ключ/✓", "x\u{0}y"] {
            assert_eq!(decode_token(&encode_token(marker)).as_deref(), Some(marker));
        }
        assert_eq!(decode_token("abc"), None);
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("ff"), None);
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(listed("a b/c+d", true), "a%20b/c%2Bd");
        assert_eq!(listed("a b", false), "a b");
        assert_eq!(listed("é", true), "%C3%A9");
    }

    #[test]
    fn multipart_etags_are_md5_of_md5s() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e; two empty parts, as S3 computes it:
        // md5(bytes(md5("")) ‖ bytes(md5(""))).
        let e = "d41d8cd98f00b204e9800998ecf8427e";
        let got = multipart_etag([e, e]);
        assert!(got.ends_with("-2"), "{got}");
        assert_eq!(got.len(), 32 + 2);
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(md5_from_hex(e).map(|b| hex(&b)).as_deref(), Some(e));
    }
}
