//! RFC 3339 timestamps (UTC, millisecond precision) from Unix milliseconds.

/// `2026-11-03T12:34:56.789Z`. Formatting is humantime's (issue #18: no hand-written calendar).
pub fn rfc3339_from_unix_ms(unix_ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_from_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_unix_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_from_unix_ms(1_709_251_199_999),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_from_unix_ms(1_798_761_600_123),
            "2027-01-01T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_from_unix_ms(4_102_444_800_000),
            "2100-01-01T00:00:00.000Z"
        );
    }
}
