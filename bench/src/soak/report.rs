//! The soak's report: per-operation counts, bytes, latency percentiles and errors by kind, the
//! cleanup, and the watched processes. JSON for machines (see docs/bench.md), a table for
//! people.

use super::mix::{Mix, Op};
use crate::baseline::mb_per_s;
use crate::histogram::Histogram;
use crate::report::{ErrorLog, ErrorRecord, ProcessReport, first_errors, process_table};
use crate::size::HumanBytes;
use crate::stats::LatencySummary;
use crate::transfer::TransferError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Version of the soak report's JSON shape (independent of the `run` report's).
pub const SOAK_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    pub format_version: u32,
    /// Always `soak`: tells this report from a `run` report.
    pub report: String,
    pub tool: String,
    pub started_unix_ms: u64,
    pub config: SoakReportConfig,
    /// From the first operation to the end of the last one (in-flight operations finish after
    /// the duration); the cleanup is not included.
    pub seconds: f64,
    pub ops: SoakOps,
    /// Bytes read back and found equal to what was written.
    pub verified_bytes: u64,
    /// Operations done as another kind than the mix drew, for want of a file to read or
    /// delete, or because `max_files` was reached.
    pub substituted: u64,
    pub cleanup: CleanupReport,
    /// Every error of the soak and its cleanup, counted by kind (see docs/bench.md).
    pub errors_by_kind: BTreeMap<String, u64>,
    pub error_count: u64,
    /// The first 100 errors in detail.
    pub errors: Vec<ErrorRecord>,
    pub processes: Option<ProcessReport>,
}

impl SoakReport {
    /// True when no operation and no cleanup delete failed.
    pub fn is_ok(&self) -> bool {
        self.error_count == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakReportConfig {
    pub gateway: String,
    pub duration_s: f64,
    pub concurrency: u64,
    pub mix: Mix,
    /// The size distribution as `--sizes` takes it, in bytes.
    pub sizes: String,
    pub seed: u64,
    pub request_timeout_s: f64,
    pub retry_busy: bool,
    pub keep: bool,
    pub max_files: u64,
    pub chunk_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakOps {
    pub read: OpReport,
    pub write: OpReport,
    pub delete: OpReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    pub ok: u64,
    pub failed: u64,
    /// Bytes of the operations that succeeded (a read counts only when every byte verified).
    pub bytes: u64,
    /// `bytes` over the soak's `seconds`, decimal MB/s.
    pub mb_per_s: f64,
    /// `503 busy` answers that were retried (with `--retry-busy`); not errors.
    pub busy_retries: u64,
    /// Successful operations, from the first request to the last byte or status, retries and
    /// their waits included.
    pub latency_ms: LatencySummary,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// False with `--keep`.
    pub ran: bool,
    /// Files of the soak still on the gateway when the load ended.
    pub files: u64,
    pub deleted: u64,
    pub failed: u64,
    /// `503 busy` answers retried during the cleanup (with `--retry-busy`).
    pub busy_retries: u64,
    pub seconds: f64,
}

/// The report's key for an error: `busy` for admission control's `503`, `http_STATUS_CODE`
/// (`http_404_not_found`) for other error answers, `timeout`/`connect`/`reset`/`transport`
/// below HTTP, else what went wrong with the body (`mismatch`, `short_body`, ...).
pub fn error_kind(e: &TransferError) -> String {
    if e.is_busy() {
        return "busy".into();
    }
    if let Some(k) = e.transport_kind() {
        return k.as_str().into();
    }
    match (e.status(), e.code()) {
        (Some(s), Some(c)) => format!("http_{s}_{c}"),
        (Some(s), None) => format!("http_{s}"),
        _ => e.kind().into(),
    }
}

/// One operation's figures as they accumulate.
#[derive(Default)]
struct OpStats {
    ok: u64,
    failed: u64,
    bytes: u64,
    busy_retries: u64,
    latency: Histogram,
    errors: BTreeMap<String, u64>,
}

impl OpStats {
    fn report(&self, seconds: f64) -> OpReport {
        OpReport {
            ok: self.ok,
            failed: self.failed,
            bytes: self.bytes,
            mb_per_s: mb_per_s(self.bytes, seconds),
            busy_retries: self.busy_retries,
            latency_ms: self.latency.summary(),
            errors: self.errors.clone(),
        }
    }
}

/// Everything the workers record; memory stays the same whatever the duration.
#[derive(Default)]
pub struct SoakStats {
    read: OpStats,
    write: OpStats,
    delete: OpStats,
    pub verified_bytes: u64,
    errors_by_kind: BTreeMap<String, u64>,
    log: ErrorLog,
    pub cleanup_deleted: u64,
    pub cleanup_failed: u64,
    pub cleanup_busy_retries: u64,
}

/// What to record about one finished operation.
pub struct Finished<'a> {
    pub op: Op,
    /// `cleanup` for the deletes after the load, else the operation's name.
    pub phase: &'static str,
    pub file: u64,
    pub id: Option<&'a str>,
    pub latency: Duration,
    pub busy_retries: u64,
    /// Bytes moved, for a success.
    pub result: Result<u64, &'a TransferError>,
    /// Bytes read back and found equal (reads; also those before a failure).
    pub verified: u64,
}

impl SoakStats {
    fn op_mut(&mut self, op: Op) -> &mut OpStats {
        match op {
            Op::Read => &mut self.read,
            Op::Write => &mut self.write,
            Op::Delete => &mut self.delete,
        }
    }

    pub fn record(&mut self, f: Finished<'_>) {
        self.verified_bytes += f.verified;
        let cleanup = f.phase == "cleanup";
        if cleanup {
            self.cleanup_busy_retries += f.busy_retries;
        }
        if let Err(e) = f.result {
            let kind = error_kind(e);
            *self.errors_by_kind.entry(kind.clone()).or_default() += 1;
            self.log.push(ErrorRecord {
                phase: f.phase.into(),
                kind: kind.clone(),
                file: Some(f.file),
                id: f.id.map(str::to_string),
                status: e.status(),
                code: e.code().map(str::to_string),
                offset: e.offset(),
                message: e.to_string(),
            });
            if cleanup {
                self.cleanup_failed += 1;
                return;
            }
            let s = self.op_mut(f.op);
            s.failed += 1;
            s.busy_retries += f.busy_retries;
            *s.errors.entry(kind).or_default() += 1;
            return;
        }
        if cleanup {
            self.cleanup_deleted += 1;
            return;
        }
        let s = self.op_mut(f.op);
        s.ok += 1;
        s.busy_retries += f.busy_retries;
        s.bytes += f.result.unwrap_or(0);
        s.latency.record(f.latency);
    }

    pub fn ops(&self, seconds: f64) -> SoakOps {
        SoakOps {
            read: self.read.report(seconds),
            write: self.write.report(seconds),
            delete: self.delete.report(seconds),
        }
    }

    /// The error counts and the kept records.
    pub fn take_errors(&mut self) -> (BTreeMap<String, u64>, u64, Vec<ErrorRecord>) {
        let log = std::mem::take(&mut self.log);
        (
            std::mem::take(&mut self.errors_by_kind),
            log.count,
            log.kept,
        )
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

/// The human summary printed on stdout.
pub fn soak_summary(r: &SoakReport, sizes_human: &str) -> String {
    let mut s = String::new();
    let c = &r.config;
    let _ = writeln!(
        s,
        "sixfold-bench soak: {:.0} s at concurrency {}, mix {}, sizes {}, seed {} -> {}",
        c.duration_s, c.concurrency, c.mix, sizes_human, c.seed, c.gateway
    );
    let _ = writeln!(
        s,
        "{:<7} {:>8} {:>7} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "op", "ok", "failed", "bytes", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "busy rt"
    );
    for (name, o) in [
        ("read", &r.ops.read),
        ("write", &r.ops.write),
        ("delete", &r.ops.delete),
    ] {
        let l = &o.latency_ms;
        let _ = writeln!(
            s,
            "{:<7} {:>8} {:>7} {:>11} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>8}",
            name,
            o.ok,
            o.failed,
            HumanBytes(o.bytes).to_string(),
            o.mb_per_s,
            opt_ms(l.p50),
            opt_ms(l.p90),
            opt_ms(l.p99),
            opt_ms(l.max),
            o.busy_retries
        );
    }
    let _ = writeln!(
        s,
        "load {:.1} s; {} operation(s) substituted for want of a file or at the file bound",
        r.seconds, r.substituted
    );
    let cl = &r.cleanup;
    if cl.ran {
        let _ = writeln!(
            s,
            "cleanup: deleted {} of {} file(s) left, {} failed, {:.1} s",
            cl.deleted, cl.files, cl.failed, cl.seconds
        );
    } else {
        let _ = writeln!(s, "kept {} file(s) on the gateway (--keep)", cl.files);
    }
    if let Some(p) = &r.processes {
        process_table(&mut s, p);
    }
    let _ = writeln!(
        s,
        "verified {} ({} bytes) in {} read(s)",
        HumanBytes(r.verified_bytes),
        r.verified_bytes,
        r.ops.read.ok
    );
    if r.error_count == 0 {
        let _ = writeln!(s, "errors: none");
    } else {
        let kinds: Vec<String> = r
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(s, "errors: {} ({})", r.error_count, kinds.join(", "));
        first_errors(&mut s, &r.errors, r.error_count);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::http_error_from;

    #[test]
    fn error_kinds_name_busy_status_and_code() {
        let busy = http_error_from(503, br#"{"error":"busy","message":"full"}"#);
        assert_eq!(error_kind(&busy), "busy");
        let other_503 = http_error_from(503, br#"{"error":"not_enough_nodes","message":""}"#);
        assert_eq!(error_kind(&other_503), "http_503_not_enough_nodes");
        assert_eq!(
            error_kind(&http_error_from(502, b"Bad Gateway")),
            "http_502"
        );
        let timeout = TransferError::Transport {
            kind: crate::transfer::TransportKind::Timeout,
            message: "operation timed out".into(),
        };
        assert_eq!(error_kind(&timeout), "timeout");
        let cut = TransferError::BodyCut {
            got: 1,
            expected: 2,
            cause: "x".into(),
        };
        assert_eq!(error_kind(&cut), "short_body");
    }

    #[test]
    fn stats_count_per_operation_and_kind() {
        let mut st = SoakStats::default();
        let busy = http_error_from(503, br#"{"error":"busy","message":"full"}"#);
        let ok = |op, bytes, ms| Finished {
            op,
            phase: op.as_str(),
            file: 1,
            id: Some("a"),
            latency: Duration::from_millis(ms),
            busy_retries: 0,
            result: Ok(bytes),
            verified: if op == Op::Read { bytes } else { 0 },
        };
        st.record(ok(Op::Read, 100, 10));
        st.record(ok(Op::Read, 50, 30));
        st.record(ok(Op::Write, 70, 20));
        st.record(Finished {
            busy_retries: 2,
            ..ok(Op::Write, 70, 20)
        });
        st.record(Finished {
            result: Err(&busy),
            busy_retries: 1,
            ..ok(Op::Delete, 0, 1)
        });
        st.record(Finished {
            phase: "cleanup",
            ..ok(Op::Delete, 0, 1)
        });
        st.record(Finished {
            phase: "cleanup",
            result: Err(&busy),
            ..ok(Op::Delete, 0, 1)
        });
        let ops = st.ops(1.0);
        assert_eq!((ops.read.ok, ops.read.bytes), (2, 150));
        assert_eq!(ops.read.latency_ms.max, Some(30.0));
        assert_eq!((ops.write.ok, ops.write.busy_retries), (2, 2));
        assert_eq!((ops.delete.ok, ops.delete.failed), (0, 1));
        assert_eq!(ops.delete.errors.get("busy"), Some(&1));
        assert_eq!(ops.delete.busy_retries, 1);
        assert_eq!(ops.delete.latency_ms.count, 0, "failures have no latency");
        assert_eq!(st.verified_bytes, 150);
        assert_eq!((st.cleanup_deleted, st.cleanup_failed), (1, 1));
        let (kinds, count, kept) = st.take_errors();
        assert_eq!(kinds.get("busy"), Some(&2));
        assert_eq!(count, 2);
        assert_eq!(kept[1].phase, "cleanup");
    }

    #[test]
    fn summary_shows_each_operation_the_cleanup_and_errors_by_kind() {
        let mut st = SoakStats::default();
        st.record(Finished {
            op: Op::Read,
            phase: "read",
            file: 3,
            id: Some("x"),
            latency: Duration::from_millis(12),
            busy_retries: 0,
            result: Ok(4096),
            verified: 4096,
        });
        let busy = http_error_from(503, br#"{"error":"busy","message":"full"}"#);
        st.record(Finished {
            op: Op::Write,
            phase: "write",
            file: 4,
            id: None,
            latency: Duration::from_millis(1),
            busy_retries: 0,
            result: Err(&busy),
            verified: 0,
        });
        let (errors_by_kind, error_count, errors) = st.take_errors();
        let r = SoakReport {
            format_version: SOAK_FORMAT_VERSION,
            report: "soak".into(),
            tool: "t".into(),
            started_unix_ms: 0,
            config: SoakReportConfig {
                gateway: "http://g:1".into(),
                duration_s: 2.0,
                concurrency: 8,
                mix: Mix::default(),
                sizes: "1..2".into(),
                seed: 5,
                request_timeout_s: 600.0,
                retry_busy: false,
                keep: true,
                max_files: 10,
                chunk_size: 1024,
            },
            seconds: 2.0,
            ops: st.ops(2.0),
            verified_bytes: st.verified_bytes,
            substituted: 1,
            cleanup: CleanupReport {
                ran: false,
                files: 1,
                deleted: 0,
                failed: 0,
                busy_retries: 0,
                seconds: 0.0,
            },
            errors_by_kind,
            error_count,
            errors,
            processes: None,
        };
        let t = soak_summary(&r, "1 B..2 B");
        assert!(
            t.contains("concurrency 8") && t.contains("sizes 1 B..2 B"),
            "{t}"
        );
        let read_row = t.lines().find(|l| l.starts_with("read")).unwrap();
        assert!(
            read_row.contains("4.00 KiB") && read_row.contains(" 12 "),
            "{read_row}"
        );
        assert!(t.contains("kept 1 file(s)"), "{t}");
        assert!(
            t.contains("verified 4.00 KiB (4096 bytes) in 1 read(s)"),
            "{t}"
        );
        assert!(t.contains("errors: 1 (busy 1)"), "{t}");
        assert!(t.contains("write file 4 busy: HTTP 503 busy: full"), "{t}");
    }
}
