//! Certificate validity windows.

use time::{Duration, OffsetDateTime};

use crate::error::{CertsError, Result};

/// The `notBefore` .. `notAfter` window of a certificate (whole seconds, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    /// How far `notBefore` is set in the past, so hosts whose clocks run a little behind
    /// the issuer's accept a fresh certificate.
    pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);
    /// Default lifetime of the cluster CA: ten years.
    pub const DEFAULT_CA_LIFETIME: Duration = Duration::days(3650);
    /// Default lifetime of node and gateway certificates: two years.
    pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::days(730);

    /// An explicit window; `not_before` must be earlier than `not_after`.
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self> {
        let not_before = whole_seconds_utc(not_before);
        let not_after = whole_seconds_utc(not_after);
        if not_before >= not_after {
            return Err(CertsError::InvalidRequest(format!(
                "validity starts ({not_before}) at or after it ends ({not_after})"
            )));
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    /// Valid from now (less [`Self::CLOCK_SKEW_ALLOWANCE`]) for `lifetime`.
    pub fn from_now(lifetime: Duration) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        let not_after = now.checked_add(lifetime).ok_or_else(|| {
            CertsError::InvalidRequest(format!("lifetime {lifetime} is out of range"))
        })?;
        Self::new(now - Self::CLOCK_SKEW_ALLOWANCE, not_after)
    }

    /// The default window of the cluster CA.
    pub fn ca_default() -> Self {
        Self::fixed_from_now(Self::DEFAULT_CA_LIFETIME)
    }

    /// The default window of node and gateway certificates.
    pub fn leaf_default() -> Self {
        Self::fixed_from_now(Self::DEFAULT_LEAF_LIFETIME)
    }

    /// Start of the window.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the window.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    fn fixed_from_now(lifetime: Duration) -> Self {
        let now = whole_seconds_utc(OffsetDateTime::now_utc());
        Self {
            not_before: now - Self::CLOCK_SKEW_ALLOWANCE,
            not_after: now + lifetime,
        }
    }
}

/// X.509 times have one-second resolution; truncating keeps `Validity` equal to what a
/// certificate actually says.
fn whole_seconds_utc(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t - Duration::nanoseconds(i64::from(t.nanosecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_inverted_windows_are_refused() {
        let t = OffsetDateTime::now_utc();
        assert!(matches!(
            Validity::new(t, t),
            Err(CertsError::InvalidRequest(_))
        ));
        assert!(matches!(
            Validity::new(t, t - Duration::days(1)),
            Err(CertsError::InvalidRequest(_))
        ));
        assert!(matches!(
            Validity::from_now(Duration::hours(-2)),
            Err(CertsError::InvalidRequest(_))
        ));
    }

    #[test]
    fn defaults_cover_now_and_are_backdated() {
        let now = OffsetDateTime::now_utc();
        for (v, lifetime) in [
            (Validity::ca_default(), Validity::DEFAULT_CA_LIFETIME),
            (Validity::leaf_default(), Validity::DEFAULT_LEAF_LIFETIME),
        ] {
            assert!(v.not_before() <= now - Duration::minutes(59));
            assert!(v.not_after() > now + lifetime - Duration::minutes(1));
            assert_eq!(v.not_before().nanosecond(), 0);
        }
    }
}
