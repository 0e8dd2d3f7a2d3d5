//! Checking the cluster token nodes present when they report.

/// Whether an `Authorization` header value is `Bearer <token>` with exactly `token`.
///
/// The comparison takes the same time wherever the first differing byte is, so the token
/// cannot be guessed byte by byte from response times (its length may leak; it is random).
pub fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header else {
        return false;
    };
    let Some(scheme_end) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let presented = rest.trim_ascii();
    !token.is_empty() && constant_time_eq(presented, token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let t = "s3cret-token";
        assert!(bearer_matches(Some(b"Bearer s3cret-token"), t));
        assert!(bearer_matches(Some(b"bearer s3cret-token"), t));
        assert!(bearer_matches(Some(b"Bearer  s3cret-token "), t));
        assert!(!bearer_matches(None, t));
        assert!(!bearer_matches(Some(b""), t));
        assert!(!bearer_matches(Some(b"Bearer"), t));
        assert!(!bearer_matches(Some(b"Bearer "), t));
        assert!(!bearer_matches(Some(b"Basic s3cret-token"), t));
        assert!(!bearer_matches(Some(b"Bearer s3cret-tokeN"), t));
        assert!(!bearer_matches(Some(b"Bearer s3cret-token2"), t));
        assert!(!bearer_matches(Some(b"Bearer s3cret"), t));
        assert!(!bearer_matches(Some(b"s3cret-token"), t));
        // An empty configured token never matches anything.
        assert!(!bearer_matches(Some(b"Bearer "), ""));
    }
}
