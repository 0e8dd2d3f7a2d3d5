//! `Content-Disposition: attachment` for any stored file name (RFC 6266, RFC 8187).
//!
//! Stored names come from clients and may hold anything. The header carries a cleaned name
//! twice: `filename="..."` with an ASCII-only fallback for old clients and
//! `filename*=UTF-8''...` percent-encoded with the full name. Cleaning removes control
//! characters (no header injection, no terminal escapes), turns path separators into `_` (a
//! browser must not be led into a directory) and drops leading dots (no hidden files).

use axum::http::HeaderValue;

/// The name used when nothing is left of the stored one.
const FALLBACK_NAME: &str = "download";
/// Longest name put in the header, in characters.
const MAX_CHARS: usize = 255;

/// The header value for a stored file name.
pub fn content_disposition(name: &str) -> HeaderValue {
    let clean = clean_name(name);
    let value = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_fallback(&clean),
        percent_encode(&clean)
    );
    // Only printable ASCII is produced above, so this cannot fail; stay panic-free anyway.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The name without control characters, path separators or leading dots, at most
/// [`MAX_CHARS`] characters, never empty.
pub fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format_char(*c))
        .map(|c| if matches!(c, '/' | '\\') { '_' } else { c })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    let limited: String = trimmed.chars().take(MAX_CHARS).collect();
    if limited.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        limited
    }
}

/// Bidirectional overrides and similar characters that make a name display as something else.
fn is_invisible_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The quoted-string fallback: printable ASCII only, `"` and `\` replaced (some clients do not
/// honour quoted-pair escapes), `%` replaced so no client percent-decodes it.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' | '%' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .collect()
}

/// RFC 8187 `value-chars`: `attr-char` as is, every other byte of the UTF-8 as `%XX`.
fn percent_encode(name: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len() * 3);
    for &b in name.as_bytes() {
        let attr_char = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        if attr_char {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(name: &str) -> String {
        content_disposition(name)
            .to_str()
            .expect("ascii header")
            .to_owned()
    }

    /// Decodes the `filename*` parameter back into a string.
    fn extended_name(value: &str) -> String {
        let encoded = value
            .split("filename*=UTF-8''")
            .nth(1)
            .expect("filename* present");
        let bytes = encoded.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    /// The quoted `filename` parameter.
    fn plain_name(value: &str) -> &str {
        let start = value.find("filename=\"").expect("filename present") + "filename=\"".len();
        let rest = &value[start..];
        &rest[..rest.find('"').expect("closing quote")]
    }

    #[test]
    fn plain_names_pass_through() {
        let v = header("report.pdf");
        assert_eq!(
            v,
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
    }

    #[test]
    fn quotes_and_backslashes_cannot_break_out() {
        let v = header("a\"; filename=\"evil.exe");
        assert_eq!(plain_name(&v), "a'; filename='evil.exe");
        assert_eq!(extended_name(&v), "a\"; filename=\"evil.exe");
        assert_eq!(v.matches('"').count(), 2, "{v}");
    }

    #[test]
    fn non_ascii_goes_to_filename_star() {
        let v = header("résumé 📄.txt");
        assert_eq!(plain_name(&v), "r_sum_ _.txt");
        assert_eq!(extended_name(&v), "résumé 📄.txt");
        assert!(v.contains("r%C3%A9sum%C3%A9%20%F0%9F%93%84.txt"), "{v}");
    }

    #[test]
    fn path_separators_and_leading_dots_are_neutralised() {
        assert_eq!(extended_name(&header("../../etc/passwd")), "_.._etc_passwd");
        assert_eq!(extended_name(&header("..\\..\\boot.ini")), "_.._boot.ini");
        assert_eq!(extended_name(&header(".bashrc")), "bashrc");
        assert_eq!(extended_name(&header("/")), "_");
    }

    #[test]
    fn control_characters_are_removed() {
        let v = header("a\r\nSet-Cookie: x=1\u{0}\u{7f}\u{1b}[31m.txt");
        assert!(!v.contains('\r') && !v.contains('\n'));
        assert_eq!(extended_name(&v), "aSet-Cookie: x=1[31m.txt");
        assert_eq!(extended_name(&header("evil\u{202E}txt.exe")), "eviltxt.exe");
    }

    #[test]
    fn empty_or_fully_stripped_names_get_a_fallback() {
        for name in ["", "   ", "...", "\r\n\t", ". ."] {
            let v = header(name);
            assert_eq!(plain_name(&v), "download", "{name:?}");
        }
    }

    #[test]
    fn percent_signs_are_encoded_not_passed() {
        let v = header("100%.txt");
        assert_eq!(plain_name(&v), "100_.txt");
        assert_eq!(extended_name(&v), "100%.txt");
    }

    #[test]
    fn long_names_are_cut() {
        let v = header(&"é".repeat(1000));
        assert_eq!(extended_name(&v).chars().count(), MAX_CHARS);
    }

    proptest! {
        #[test]
        fn any_name_gives_a_valid_safe_header(name in any::<String>()) {
            let value = content_disposition(&name);
            let text = value.to_str().expect("visible ascii");
            prop_assert!(text.starts_with("attachment; filename=\""));
            prop_assert!(text.bytes().all(|b| (b' '..=b'~').contains(&b)));
            prop_assert_eq!(text.matches('"').count(), 2);
            let decoded = extended_name(text);
            prop_assert_eq!(&decoded, &clean_name(&name));
            prop_assert!(!decoded.is_empty());
            prop_assert!(!decoded.contains('/') && !decoded.contains('\\'));
            prop_assert!(!decoded.chars().any(char::is_control));
            prop_assert!(!decoded.starts_with('.'));
        }
    }
}
