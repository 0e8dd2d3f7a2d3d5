//! `sixfold_errors_total{kind=...}`: error responses of the native API, by error code. The
//! codes are this surface's (an S3 surface counts its own), so the counter lives here and not
//! in [`crate::metrics`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::ErrorCode;

/// One counter per error code.
#[derive(Debug, Default)]
pub struct ErrorCounts {
    counts: [AtomicU64; ErrorCode::ALL.len()],
}

impl ErrorCounts {
    pub fn count(&self, code: ErrorCode) {
        self.counts[code.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, code: ErrorCode) -> u64 {
        self.counts[code.index()].load(Ordering::Relaxed)
    }

    /// Appends the family in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP sixfold_errors_total Error responses, by error code."
        );
        let _ = writeln!(out, "# TYPE sixfold_errors_total counter");
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "sixfold_errors_total{{kind=\"{}\"}} {}",
                code.as_str(),
                self.get(code)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_line_and_counts_add_up() {
        let c = ErrorCounts::default();
        c.count(ErrorCode::TooLarge);
        c.count(ErrorCode::TooLarge);
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.contains("sixfold_errors_total{kind=\"too_large\"} 2"),
            "{out}"
        );
        let lines = out
            .lines()
            .filter(|l| l.starts_with("sixfold_errors_total{"))
            .count();
        assert_eq!(lines, ErrorCode::ALL.len());
    }
}
