//! The run's report: JSON for machines (its shape is a contract, see docs/bench.md) and a table
//! for people.

use crate::baseline::{BaselineReport, mb_per_s};
use crate::loopback::LoopbackReport;
use crate::procstat::ProcessStats;
use crate::size::HumanBytes;
use crate::stats::LatencySummary;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Version of the report's JSON shape.
pub const FORMAT_VERSION: u32 = 1;
/// Error records kept in the report; further errors are only counted.
pub const MAX_ERRORS_KEPT: usize = 100;

pub(crate) const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub tool: String,
    /// Start of the run, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub config: ReportConfig,
    pub upload: PhaseReport,
    pub download: PhaseReport,
    /// Downloaded bytes found equal to what was uploaded.
    pub verified_bytes: u64,
    /// The first `MAX_ERRORS_KEPT` errors.
    pub errors: Vec<ErrorRecord>,
    /// All errors, including those not kept in `errors`.
    pub error_count: u64,
    pub baseline: Option<BaselineReport>,
    /// The host's own CPU cost of sending bytes over loopback TCP, measured with the baseline
    /// (absent from reports of releases before it).
    #[serde(default)]
    pub loopback: Option<LoopbackReport>,
    /// Throughput as a fraction of the disk's own limit, and CPU per GiB as a multiple of the
    /// loopback's, both measured in the same run.
    pub ratios: Ratios,
    pub processes: Option<ProcessReport>,
    /// Every file of the run, with the id the gateway gave it.
    pub files: Vec<FileRecord>,
}

impl Report {
    /// True when the run had no error at all.
    pub fn is_ok(&self) -> bool {
        self.error_count == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportConfig {
    pub gateway: String,
    pub mode: String,
    /// Bytes per file.
    pub size: u64,
    pub files: u64,
    pub concurrency: u64,
    /// Run seed; file i's content is the generated stream of (seed, i).
    pub seed: u64,
    /// Source file, when the content came from one instead of the generator.
    pub source: Option<String>,
    pub sections: u64,
    pub chunk_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// False when the mode skipped this phase (its figures are then zero).
    pub ran: bool,
    pub files_ok: u64,
    pub files_failed: u64,
    /// Bytes of the files that completed.
    pub bytes: u64,
    /// Wall time from the phase's first request to its last completion.
    pub seconds: f64,
    /// Decimal megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub mib_per_s: f64,
    /// Per file: upload from request start to the 201; download from request start to the
    /// last byte. Successful files only.
    pub latency_ms: LatencySummary,
}

impl PhaseReport {
    pub fn not_run() -> Self {
        PhaseReport {
            ran: false,
            files_ok: 0,
            files_failed: 0,
            bytes: 0,
            seconds: 0.0,
            mb_per_s: 0.0,
            mib_per_s: 0.0,
            latency_ms: LatencySummary::from_samples(&[]),
        }
    }

    pub fn new(
        files_ok: u64,
        files_failed: u64,
        bytes: u64,
        seconds: f64,
        latencies_ms: &[f64],
    ) -> Self {
        PhaseReport {
            ran: true,
            files_ok,
            files_failed,
            bytes,
            seconds,
            mb_per_s: mb_per_s(bytes, seconds),
            mib_per_s: if seconds > 0.0 {
                bytes as f64 / MIB / seconds
            } else {
                0.0
            },
            latency_ms: LatencySummary::from_samples(latencies_ms),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// `upload.mb_per_s / baseline.write_mb_per_s`.
    pub upload_vs_disk_write: Option<f64>,
    /// `download.mb_per_s / baseline.read_mb_per_s`.
    pub download_vs_disk_read: Option<f64>,
    /// `processes.upload_cpu_seconds_per_gib / loopback.cpu_seconds_per_gib`: how many times
    /// the host's cost of one loopback TCP transfer the watched processes spent per GiB.
    #[serde(default)]
    pub upload_cpu_vs_loopback: Option<f64>,
    /// The same for `processes.download_cpu_seconds_per_gib`.
    #[serde(default)]
    pub download_cpu_vs_loopback: Option<f64>,
}

impl Ratios {
    pub fn compute(
        upload: &PhaseReport,
        download: &PhaseReport,
        baseline: Option<&BaselineReport>,
        processes: Option<&ProcessReport>,
        loopback: Option<&LoopbackReport>,
    ) -> Self {
        let ratio = |phase: &PhaseReport, limit: Option<f64>| match limit {
            Some(l) if phase.ran && l > 0.0 => Some(phase.mb_per_s / l),
            _ => None,
        };
        let loopback_cpu = loopback.and_then(|l| l.cpu_seconds_per_gib);
        let cpu_ratio = |cpu: Option<f64>| match (cpu, loopback_cpu) {
            (Some(c), Some(l)) if l > 0.0 => Some(c / l),
            _ => None,
        };
        Ratios {
            upload_vs_disk_write: ratio(upload, baseline.and_then(|b| b.write_mb_per_s)),
            download_vs_disk_read: ratio(download, baseline.and_then(|b| b.read_mb_per_s)),
            upload_cpu_vs_loopback: cpu_ratio(processes.and_then(|p| p.upload_cpu_seconds_per_gib)),
            download_cpu_vs_loopback: cpu_ratio(
                processes.and_then(|p| p.download_cpu_seconds_per_gib),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub interval_ms: u64,
    /// Gateway, node and other watched processes.
    pub processes: Vec<ProcessStats>,
    /// This bench process, for comparison (not in the totals).
    pub bench: Option<ProcessStats>,
    /// CPU seconds of the watched processes together during the run.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per GiB moved (uploaded plus downloaded).
    pub cpu_seconds_per_gib: Option<f64>,
    pub upload_cpu_seconds_per_gib: Option<f64>,
    pub download_cpu_seconds_per_gib: Option<f64>,
    /// Sum of the watched processes' peak resident memory.
    pub peak_rss_mib_total: f64,
}

impl ProcessReport {
    pub fn new(
        interval_ms: u64,
        processes: Vec<ProcessStats>,
        bench: Option<ProcessStats>,
        upload_bytes: u64,
        download_bytes: u64,
    ) -> Self {
        let cpu_seconds: f64 = processes.iter().map(|p| p.cpu_seconds).sum();
        let phase_cpu = |phase: &str| -> f64 {
            processes
                .iter()
                .filter_map(|p| p.cpu_seconds_by_phase.get(phase))
                .sum()
        };
        let per_gib = |cpu: f64, bytes: u64| (bytes > 0).then(|| cpu / (bytes as f64 / GIB));
        ProcessReport {
            interval_ms,
            cpu_seconds_per_gib: per_gib(cpu_seconds, upload_bytes + download_bytes),
            upload_cpu_seconds_per_gib: per_gib(phase_cpu("upload"), upload_bytes),
            download_cpu_seconds_per_gib: per_gib(phase_cpu("download"), download_bytes),
            peak_rss_mib_total: processes.iter().map(|p| p.rss_peak_mib).sum(),
            cpu_seconds,
            processes,
            bench,
        }
    }
}

/// One error of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// `upload`, `download`, `delete` or `baseline`.
    pub phase: String,
    /// `http`, `transport`, `mismatch`, `short_body`, `long_body`, `bad_response`, `source`,
    /// `stalled` or `baseline`.
    pub kind: String,
    /// Index of the file in the run.
    pub file: Option<u64>,
    pub id: Option<String>,
    /// HTTP status, for `http` errors.
    pub status: Option<u16>,
    /// The gateway's error code (`{"error": code}`), for `http` errors.
    pub code: Option<String>,
    /// Byte offset the error is about (first differing byte, or where a body ended).
    pub offset: Option<u64>,
    pub message: String,
}

/// Errors kept bounded: the first `MAX_ERRORS_KEPT` and a count of all.
#[derive(Debug, Default)]
pub struct ErrorLog {
    pub kept: Vec<ErrorRecord>,
    pub count: u64,
}

impl ErrorLog {
    pub fn push(&mut self, e: ErrorRecord) {
        self.count += 1;
        if self.kept.len() < MAX_ERRORS_KEPT {
            self.kept.push(e);
        }
    }
}

/// A file of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub index: u64,
    pub name: String,
    pub size: u64,
    /// Gateway id, once uploaded.
    pub id: Option<String>,
    pub checksum: Option<serde_json::Value>,
    pub parts: Option<serde_json::Value>,
    pub upload_ms: Option<f64>,
    pub download_ms: Option<f64>,
    /// Some(true) once downloaded and verified, Some(false) when that failed.
    pub verified: Option<bool>,
    /// Downloaded bytes of this file found equal to what was uploaded (all of them when
    /// `verified` is true, those before the failure otherwise).
    pub verified_bytes: Option<u64>,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

fn percent(r: Option<f64>) -> String {
    r.map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The human summary printed on stdout.
pub fn summary_table(r: &Report) -> String {
    let mut s = String::new();
    let c = &r.config;
    let content = match &c.source {
        Some(p) => format!("source {p}"),
        None => format!("seed {}", c.seed),
    };
    let _ = writeln!(
        s,
        "sixfold-bench {}: {} file(s) x {} at concurrency {}, {} -> {}",
        c.mode,
        c.files,
        HumanBytes(c.size),
        c.concurrency,
        content,
        c.gateway
    );
    let _ = writeln!(
        s,
        "{:<9} {:>7} {:>11} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "phase",
        "files",
        "bytes",
        "seconds",
        "MB/s",
        "MiB/s",
        "vs disk",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    );
    for (name, p, ratio) in [
        ("upload", &r.upload, r.ratios.upload_vs_disk_write),
        ("download", &r.download, r.ratios.download_vs_disk_read),
    ] {
        if !p.ran {
            continue;
        }
        let l = &p.latency_ms;
        let _ = writeln!(
            s,
            "{:<9} {:>7} {:>11} {:>9.2} {:>10.1} {:>10.1} {:>8} {:>9} {:>9} {:>9} {:>9}",
            name,
            format!("{}/{}", p.files_ok, p.files_ok + p.files_failed),
            HumanBytes(p.bytes).to_string(),
            p.seconds,
            p.mb_per_s,
            p.mib_per_s,
            percent(ratio),
            opt_ms(l.p50),
            opt_ms(l.p90),
            opt_ms(l.p99),
            opt_ms(l.max),
        );
    }
    if let Some(b) = &r.baseline {
        let fs = b.filesystem.as_deref().unwrap_or("unknown fs");
        match (&b.write, &b.read) {
            (Some(w), Some(rd)) => {
                let _ = writeln!(
                    s,
                    "disk limit on {} ({fs}; O_DIRECT io_uring, 1 MiB x QD{}): write {:.1} MB/s, read {:.1} MB/s ({} each way)",
                    b.dir,
                    b.queue_depth,
                    w.mb_per_s,
                    rd.mb_per_s,
                    HumanBytes(w.bytes)
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "disk limit on {} ({fs}): NOT MEASURED: {}",
                    b.dir,
                    b.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
        if let Some(w) = &b.warning {
            let _ = writeln!(s, "  warning: {w}");
        }
    }
    if let Some(l) = &r.loopback {
        match l.cpu_seconds_per_gib {
            Some(per_gib) => {
                let _ = writeln!(
                    s,
                    "loopback limit ({}): {per_gib:.3} CPU s per GiB, {:.1} MB/s ({})",
                    l.method,
                    l.mb_per_s,
                    HumanBytes(l.bytes)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "loopback limit: NOT MEASURED: {}",
                    l.error.as_deref().unwrap_or("nothing was sent")
                );
            }
        }
    }
    if let Some(p) = &r.processes {
        process_table(&mut s, p);
    }
    if let (Some(up), Some(down)) = (
        r.ratios.upload_cpu_vs_loopback,
        r.ratios.download_cpu_vs_loopback,
    ) {
        let _ = writeln!(
            s,
            "CPU per GiB against the loopback's: upload {up:.2}x, download {down:.2}x"
        );
    }
    if r.download.ran {
        let _ = writeln!(
            s,
            "verified {} ({} bytes)",
            HumanBytes(r.verified_bytes),
            r.verified_bytes
        );
    }
    if r.error_count == 0 {
        let _ = writeln!(s, "errors: none");
    } else {
        let _ = writeln!(s, "errors: {}", r.error_count);
        first_errors(&mut s, &r.errors, r.error_count);
    }
    s
}

/// The first ten of `errors`, one line each, and how many more there were of `count`.
pub fn first_errors(s: &mut String, errors: &[ErrorRecord], count: u64) {
    for e in errors.iter().take(10) {
        let _ = writeln!(
            s,
            "  {} file {} {}: {}",
            e.phase,
            e.file.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
            e.kind,
            e.message
        );
    }
    if count > 10 {
        let _ = writeln!(s, "  ... {} more (see the JSON report)", count - 10);
    }
}

/// The watched processes' memory and CPU, one row each, then their totals.
pub fn process_table(s: &mut String, p: &ProcessReport) {
    let _ = writeln!(
        s,
        "{:<8} {:<16} {:<8} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10}  (RSS in MiB, CPU in s)",
        "pid", "process", "role", "RSS start", "RSS peak", "RSS end", "CPU s", "CPU up", "CPU down"
    );
    let row = |s: &mut String, ps: &ProcessStats| {
        let mib = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        let phase = |k: &str| {
            ps.cpu_seconds_by_phase
                .get(k)
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            s,
            "{:<8} {:<16} {:<8} {:>10} {:>10} {:>10} {:>8.2} {:>10} {:>10}{}",
            ps.pid,
            ps.name,
            ps.role,
            mib(ps.rss_start_mib),
            format!("{:.1}", ps.rss_peak_mib),
            mib(ps.rss_end_mib),
            ps.cpu_seconds,
            phase("upload"),
            phase("download"),
            if ps.exited { "  (exited)" } else { "" }
        );
    };
    for ps in &p.processes {
        row(s, ps);
    }
    if let Some(b) = &p.bench {
        row(s, b);
    }
    let _ = writeln!(
        s,
        "watched processes together: {:.2} CPU s, {} CPU s per GiB moved (upload {}, download {}), peak RSS sum {:.1} MiB",
        p.cpu_seconds,
        p.cpu_seconds_per_gib
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into()),
        p.upload_cpu_seconds_per_gib
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into()),
        p.download_cpu_seconds_per_gib
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into()),
        p.peak_rss_mib_total
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_report() -> Report {
        let upload = PhaseReport::new(2, 0, 2 << 30, 4.0, &[1800.0, 2000.0]);
        let download = PhaseReport::new(2, 0, 2 << 30, 2.0, &[900.0, 1000.0]);
        let baseline = BaselineReport {
            dir: "/data".into(),
            filesystem: Some("ext2/3/4".into()),
            method: "O_DIRECT".into(),
            block_size: 1 << 20,
            queue_depth: 16,
            write: None,
            read: None,
            write_mb_per_s: Some(1000.0),
            read_mb_per_s: Some(2000.0),
            error: None,
            warning: None,
        };
        let ratios = Ratios::compute(&upload, &download, Some(&baseline), None, None);
        Report {
            format_version: FORMAT_VERSION,
            tool: "sixfold-bench test".into(),
            started_unix_ms: 1,
            config: ReportConfig {
                gateway: "http://127.0.0.1:1".into(),
                mode: "roundtrip".into(),
                size: 1 << 30,
                files: 2,
                concurrency: 1,
                seed: 42,
                source: None,
                sections: 6,
                chunk_size: 1 << 20,
            },
            upload,
            download,
            verified_bytes: 2 << 30,
            errors: vec![],
            error_count: 0,
            baseline: Some(baseline),
            loopback: None,
            ratios,
            processes: None,
            files: vec![],
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let r = sample_report();
        let v = serde_json::to_value(&r).unwrap();
        for phase in ["upload", "download"] {
            let p = &v[phase];
            assert!(p["bytes"].is_u64(), "{phase}.bytes");
            assert!(p["seconds"].is_f64(), "{phase}.seconds");
            assert!(p["mb_per_s"].is_f64(), "{phase}.mb_per_s");
            for q in ["p50", "p90", "p99", "max"] {
                assert!(p["latency_ms"][q].is_f64(), "{phase}.latency_ms.{q}");
            }
        }
        assert!(v["errors"].is_array());
        assert_eq!(v["error_count"], 0);
        assert_eq!(v["verified_bytes"], 2u64 << 30);
        assert_eq!(v["upload"]["latency_ms"]["p50"], 1800.0);
        assert_eq!(v["upload"]["latency_ms"]["max"], 2000.0);
        // 2 GiB in 4 s against a 1000 MB/s disk.
        let up = v["upload"]["mb_per_s"].as_f64().unwrap();
        assert!((up - 536.870_912).abs() < 1e-6, "{up}");
        let ratio = v["ratios"]["upload_vs_disk_write"].as_f64().unwrap();
        assert!((ratio - 0.536_870_912).abs() < 1e-9, "{ratio}");
        assert_eq!(v["baseline"]["write_mb_per_s"], 1000.0);
        // Round trip through JSON (download mode reads an earlier report).
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn phases_not_run_have_no_ratio_and_null_latencies() {
        let up = PhaseReport::new(1, 0, 100, 1.0, &[5.0]);
        let down = PhaseReport::not_run();
        let v = serde_json::to_value(&down).unwrap();
        assert_eq!(v["ran"], false);
        assert!(v["latency_ms"]["p50"].is_null());
        let r = Ratios::compute(&up, &down, None, None, None);
        assert_eq!(r, Ratios::default());
    }

    fn loopback(cpu_seconds_per_gib: Option<f64>) -> LoopbackReport {
        LoopbackReport {
            method: "TCP".into(),
            bytes: 1 << 30,
            seconds: 1.0,
            cpu_seconds: cpu_seconds_per_gib.unwrap_or(0.0),
            cpu_seconds_per_gib,
            mb_per_s: 1_073.741_824,
            error: None,
        }
    }

    fn processes(up: Option<f64>, down: Option<f64>) -> ProcessReport {
        ProcessReport {
            interval_ms: 100,
            processes: vec![],
            bench: None,
            cpu_seconds: 0.0,
            cpu_seconds_per_gib: None,
            upload_cpu_seconds_per_gib: up,
            download_cpu_seconds_per_gib: down,
            peak_rss_mib_total: 0.0,
        }
    }

    #[test]
    fn cpu_per_gib_is_a_multiple_of_the_loopback_cost() {
        let up = PhaseReport::new(1, 0, 1 << 30, 1.0, &[5.0]);
        let down = PhaseReport::new(1, 0, 1 << 30, 1.0, &[5.0]);
        let p = processes(Some(1.5), Some(1.2));
        let r = Ratios::compute(&up, &down, None, Some(&p), Some(&loopback(Some(0.5))));
        assert_eq!(r.upload_cpu_vs_loopback, Some(3.0));
        assert!((r.download_cpu_vs_loopback.unwrap() - 2.4).abs() < 1e-12);
        assert_eq!(
            (r.upload_vs_disk_write, r.download_vs_disk_read),
            (None, None)
        );
        // Either figure missing, or a loopback that cost nothing measurable: no ratio.
        for (p, l) in [
            (processes(None, None), loopback(Some(0.5))),
            (p.clone(), loopback(None)),
            (p.clone(), loopback(Some(0.0))),
        ] {
            let r = Ratios::compute(&up, &down, None, Some(&p), Some(&l));
            assert_eq!(
                (r.upload_cpu_vs_loopback, r.download_cpu_vs_loopback),
                (None, None)
            );
        }
        assert_eq!(
            Ratios::compute(&up, &down, None, Some(&p), None),
            Ratios::default()
        );
    }

    #[test]
    fn a_report_of_the_release_before_the_loopback_still_reads() {
        let mut r = sample_report();
        r.loopback = Some(loopback(Some(0.5)));
        let mut v = serde_json::to_value(&r).unwrap();
        let fields = v.as_object_mut().unwrap();
        assert!(fields.remove("loopback").is_some());
        let ratios = fields["ratios"].as_object_mut().unwrap();
        assert!(ratios.remove("upload_cpu_vs_loopback").is_some());
        assert!(ratios.remove("download_cpu_vs_loopback").is_some());
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.loopback, None);
        assert_eq!(back.ratios, r.ratios);
        assert_eq!(back.upload, r.upload);
    }

    #[test]
    fn the_table_shows_the_loopback_and_the_cpu_ratios() {
        let mut r = sample_report();
        r.loopback = Some(loopback(Some(0.5)));
        r.processes = Some(processes(Some(1.5), Some(1.0)));
        r.ratios = Ratios::compute(
            &r.upload,
            &r.download,
            r.baseline.as_ref(),
            r.processes.as_ref(),
            r.loopback.as_ref(),
        );
        let text = summary_table(&r);
        assert!(
            text.contains("loopback limit (TCP): 0.500 CPU s per GiB"),
            "{text}"
        );
        assert!(text.contains("upload 3.00x, download 2.00x"), "{text}");
        r.loopback = Some(LoopbackReport {
            error: Some("cannot listen on 127.0.0.1: denied".into()),
            ..loopback(None)
        });
        let text = summary_table(&r);
        assert!(
            text.contains("loopback limit: NOT MEASURED: cannot listen"),
            "{text}"
        );
    }

    #[test]
    fn error_log_keeps_the_first_hundred_and_counts_all() {
        let mut log = ErrorLog::default();
        for i in 0..250 {
            log.push(ErrorRecord {
                phase: "upload".into(),
                kind: "http".into(),
                file: Some(i),
                id: None,
                status: Some(503),
                code: Some("not_enough_nodes".into()),
                offset: None,
                message: "x".into(),
            });
        }
        assert_eq!(log.count, 250);
        assert_eq!(log.kept.len(), MAX_ERRORS_KEPT);
        assert_eq!(log.kept[99].file, Some(99));
    }

    #[test]
    fn summary_shows_throughput_ratio_and_errors() {
        let mut r = sample_report();
        let t = summary_table(&r);
        assert!(t.contains("upload"), "{t}");
        assert!(
            t.contains("54%"),
            "upload at 54% of the disk write limit: {t}"
        );
        assert!(t.contains("errors: none"), "{t}");
        r.error_count = 1;
        r.errors.push(ErrorRecord {
            phase: "download".into(),
            kind: "mismatch".into(),
            file: Some(1),
            id: Some("abc".into()),
            status: None,
            code: None,
            offset: Some(7),
            message: "byte 7 differs".into(),
        });
        let t = summary_table(&r);
        assert!(
            t.contains("errors: 1") && t.contains("byte 7 differs"),
            "{t}"
        );
    }

    #[test]
    fn process_totals_per_gib() {
        let proc_stats = |cpu_up: f64, cpu_down: f64| ProcessStats {
            pid: 1,
            name: "sixfold-node".into(),
            role: "node".into(),
            rss_start_mib: Some(10.0),
            rss_peak_mib: 20.0,
            rss_end_mib: Some(12.0),
            cpu_seconds: cpu_up + cpu_down,
            cpu_seconds_by_phase: [
                ("upload".to_string(), cpu_up),
                ("download".to_string(), cpu_down),
            ]
            .into_iter()
            .collect(),
            exited: false,
        };
        let p = ProcessReport::new(
            200,
            vec![proc_stats(2.0, 1.0), proc_stats(4.0, 1.0)],
            None,
            2 << 30,
            1 << 30,
        );
        assert_eq!(p.cpu_seconds, 8.0);
        assert_eq!(p.peak_rss_mib_total, 40.0);
        assert_eq!(p.cpu_seconds_per_gib, Some(8.0 / 3.0));
        assert_eq!(p.upload_cpu_seconds_per_gib, Some(3.0));
        assert_eq!(p.download_cpu_seconds_per_gib, Some(2.0));
        let none = ProcessReport::new(200, vec![], None, 0, 0);
        assert_eq!(none.cpu_seconds_per_gib, None);
    }
}
