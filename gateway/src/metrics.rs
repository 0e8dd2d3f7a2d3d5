//! Gateway counters and gauges, rendered in the Prometheus text format (version 0.0.4) by hand:
//! a fixed set of atomics, no registry, nothing allocated on the data path.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::cluster::reconcile::ReconcileStats;

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Committed: `201`.
    Ok,
    /// The request was refused or broken (`4xx`), including client disconnects.
    ClientError,
    /// Refused for lack of nodes or space (`503`/`507`).
    Unavailable,
    /// A node failed or acknowledged something else (`502`).
    NodeError,
    /// The gateway failed (`500`).
    Internal,
}

impl UploadOutcome {
    const ALL: [UploadOutcome; 5] = [
        UploadOutcome::Ok,
        UploadOutcome::ClientError,
        UploadOutcome::Unavailable,
        UploadOutcome::NodeError,
        UploadOutcome::Internal,
    ];

    fn label(self) -> &'static str {
        match self {
            UploadOutcome::Ok => "ok",
            UploadOutcome::ClientError => "client_error",
            UploadOutcome::Unavailable => "unavailable",
            UploadOutcome::NodeError => "node_error",
            UploadOutcome::Internal => "internal",
        }
    }
}

/// How a download ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// Every byte was handed to the connection.
    Ok,
    /// The client went away before the end.
    ClientGone,
    /// A node failed mid-stream; the response was cut off.
    NodeError,
    /// A checksum did not match; the response was cut off.
    ChecksumMismatch,
}

impl DownloadOutcome {
    const ALL: [DownloadOutcome; 4] = [
        DownloadOutcome::Ok,
        DownloadOutcome::ClientGone,
        DownloadOutcome::NodeError,
        DownloadOutcome::ChecksumMismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DownloadOutcome::Ok => "ok",
            DownloadOutcome::ClientGone => "client_gone",
            DownloadOutcome::NodeError => "node_error",
            DownloadOutcome::ChecksumMismatch => "checksum_mismatch",
        }
    }
}

/// Which HTTP timeout ended a connection or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// A request's headers did not arrive in `header_timeout`.
    Header,
    /// A keep-alive connection stayed idle for `keepalive_timeout`.
    KeepAlive,
    /// An upload's body sent nothing for `body_idle_timeout`.
    Body,
}

impl TimeoutKind {
    const ALL: [TimeoutKind; 3] = [
        TimeoutKind::Header,
        TimeoutKind::KeepAlive,
        TimeoutKind::Body,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TimeoutKind::Header => "header",
            TimeoutKind::KeepAlive => "keepalive",
            TimeoutKind::Body => "body",
        }
    }
}

/// A node as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGauge {
    pub id: String,
    /// `up`, `down`, `draining`, `read_only`.
    pub state: &'static str,
    pub capacity: u64,
    pub used: u64,
}

/// Node states shown as a one-hot gauge per node.
pub const NODE_STATES: [&str; 5] = ["up", "joining", "down", "draining", "read_only"];

/// The gateway's metrics; one instance shared by all requests.
#[derive(Debug, Default)]
pub struct Metrics {
    uploads: [AtomicU64; UploadOutcome::ALL.len()],
    downloads: [AtomicU64; DownloadOutcome::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    uploads_in_flight: AtomicI64,
    downloads_in_flight: AtomicI64,
    checksum_mismatches: AtomicU64,
    // The HTTP listener: connections and timeouts.
    connections_accepted: AtomicU64,
    connections_open: AtomicI64,
    connection_limit: AtomicU64,
    timeouts: [AtomicU64; TimeoutKind::ALL.len()],
    panics: AtomicU64,
    /// How long an upload's commit (one metadata transaction) took.
    commits: crate::latency::Histogram,
    /// The orphan reconciler's counters, once the cluster layer runs.
    reconcile: std::sync::OnceLock<Arc<ReconcileStats>>,
    /// The background jobs that run on one gateway at a time, once the cluster layer runs.
    job_leases: std::sync::OnceLock<Vec<Arc<crate::cluster::peers::JobLease>>>,
    /// The metadata backups' counters, once the gateway serves.
    backups: std::sync::OnceLock<Arc<crate::backup::BackupStats>>,
    /// The rebalance job, once the gateway serves.
    rebalance: std::sync::OnceLock<crate::rebalance::job::Rebalancer>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// An upload's commit transaction took `took` (successful or not).
    pub fn commit_took(&self, took: std::time::Duration) {
        self.commits.observe(took);
    }

    pub fn upload_finished(&self, outcome: UploadOutcome) {
        self.uploads[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn download_finished(&self, outcome: DownloadOutcome) {
        self.downloads[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn checksum_mismatch(&self) {
        self.checksum_mismatches.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an upload in flight until the guard is dropped.
    pub fn upload_started(&self) -> InFlightGuard<'_> {
        InFlightGuard::new(&self.uploads_in_flight)
    }

    /// Counts a download in flight until the guard is dropped.
    pub fn download_started(&self) -> InFlightGuard<'_> {
        InFlightGuard::new(&self.downloads_in_flight)
    }

    /// Counts an accepted connection as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    /// The configured `max_connections`, shown next to the open connections.
    pub fn set_connection_limit(&self, limit: u64) {
        self.connection_limit.store(limit, Ordering::Relaxed);
    }

    pub fn timed_out(&self, kind: TimeoutKind) {
        self.timeouts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Shows which background jobs this gateway runs (with several gateways, one runs each).
    pub fn attach_job_leases(&self, leases: Vec<Arc<crate::cluster::peers::JobLease>>) {
        let _ = self.job_leases.set(leases);
    }

    /// Shows the cluster's orphan reconciler in the rendered metrics.
    pub fn attach_reconcile(&self, stats: Arc<ReconcileStats>) {
        let _ = self.reconcile.set(stats);
    }

    /// Shows the rebalance job in the rendered metrics (`sixfold_rebalance_*`).
    pub fn attach_rebalance(&self, job: crate::rebalance::job::Rebalancer) {
        let _ = self.rebalance.set(job);
    }

    /// Shows the metadata backups in the rendered metrics.
    pub fn attach_backups(&self, stats: Arc<crate::backup::BackupStats>) {
        let _ = self.backups.set(stats);
    }

    /// A request handler panicked (answered 500).
    pub fn http_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    pub fn timeouts(&self, kind: TimeoutKind) -> u64 {
        self.timeouts[kind as usize].load(Ordering::Relaxed)
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the node gauges given.
    pub fn render(&self, nodes: &[NodeGauge], files: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(
            &mut out,
            "sixfold_uploads_total",
            "counter",
            "Uploads finished, by outcome.",
        );
        for outcome in UploadOutcome::ALL {
            let _ = writeln!(
                out,
                "sixfold_uploads_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                get(&self.uploads[outcome as usize])
            );
        }
        header(
            &mut out,
            "sixfold_downloads_total",
            "counter",
            "Downloads finished, by outcome.",
        );
        for outcome in DownloadOutcome::ALL {
            let _ = writeln!(
                out,
                "sixfold_downloads_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                get(&self.downloads[outcome as usize])
            );
        }
        for (name, help, value) in [
            (
                "sixfold_bytes_in_total",
                "File bytes received from clients.",
                &self.bytes_in,
            ),
            (
                "sixfold_bytes_out_total",
                "File bytes sent to clients.",
                &self.bytes_out,
            ),
            (
                "sixfold_checksum_mismatches_total",
                "Parts whose crc32c did not match on the way out (responses cut off).",
                &self.checksum_mismatches,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", get(value));
        }
        for (name, help, value) in [
            (
                "sixfold_uploads_in_flight",
                "Uploads in progress.",
                &self.uploads_in_flight,
            ),
            (
                "sixfold_downloads_in_flight",
                "Downloads in progress.",
                &self.downloads_in_flight,
            ),
        ] {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        self.render_http(&mut out);
        let name = "sixfold_metadata_commit_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time of an upload's commit: one metadata transaction (redb or PostgreSQL).",
        );
        self.commits.render(&mut out, name);
        if let Some(stats) = self.reconcile.get() {
            render_reconcile(&mut out, stats);
        }
        if let Some(leases) = self.job_leases.get() {
            render_job_leases(&mut out, leases);
        }
        if let Some(job) = self.rebalance.get() {
            job.render_metrics(&mut out);
        }
        if let Some(stats) = self.backups.get() {
            render_backups(&mut out, stats);
        }
        if let Some(files) = files {
            header(&mut out, "sixfold_files", "gauge", "Committed files.");
            let _ = writeln!(out, "sixfold_files {files}");
        }
        header(
            &mut out,
            "sixfold_node_state",
            "gauge",
            "1 for the state each node is in.",
        );
        for node in nodes {
            for state in NODE_STATES {
                let _ = writeln!(
                    out,
                    "sixfold_node_state{{node=\"{}\",state=\"{state}\"}} {}",
                    escape_label(&node.id),
                    u8::from(node.state == state)
                );
            }
        }
        header(
            &mut out,
            "sixfold_node_used_bytes",
            "gauge",
            "Bytes used on each node.",
        );
        for node in nodes {
            let _ = writeln!(
                out,
                "sixfold_node_used_bytes{{node=\"{}\"}} {}",
                escape_label(&node.id),
                node.used
            );
        }
        header(
            &mut out,
            "sixfold_node_capacity_bytes",
            "gauge",
            "Capacity of each node.",
        );
        for node in nodes {
            let _ = writeln!(
                out,
                "sixfold_node_capacity_bytes{{node=\"{}\"}} {}",
                escape_label(&node.id),
                node.capacity
            );
        }
        out
    }
}

/// Which background jobs this gateway holds, and the passes it ran of each.
fn render_job_leases(out: &mut String, leases: &[Arc<crate::cluster::peers::JobLease>]) {
    let name = "sixfold_job_lease_held";
    header(
        out,
        name,
        "gauge",
        "1 while this gateway holds the background job's lease (runs it), else 0.",
    );
    for lease in leases {
        let _ = writeln!(
            out,
            "{name}{{job=\"{}\"}} {}",
            lease.job,
            u8::from(lease.held())
        );
    }
    let name = "sixfold_job_passes_total";
    header(
        out,
        name,
        "counter",
        "Passes of the background job this gateway ran holding its lease.",
    );
    for lease in leases {
        let _ = writeln!(out, "{name}{{job=\"{}\"}} {}", lease.job, lease.passes());
    }
}

/// The orphan reconciler's lines.
fn render_reconcile(out: &mut String, stats: &ReconcileStats) {
    for (name, help, value) in [
        (
            "sixfold_orphans_quarantined_total",
            "Chunks no file or upload references, marked for quarantine by the orphan scan.",
            stats.quarantined(),
        ),
        (
            "sixfold_orphans_deleted_total",
            "Orphan chunks queued for deletion after their quarantine.",
            stats.deleted(),
        ),
        (
            "sixfold_orphan_scans_refused_total",
            "Orphan scans whose deletions the safety valve refused (most of a node unreferenced).",
            stats.refused(),
        ),
        (
            "sixfold_orphan_scans_skipped_total",
            "Orphan scans not run because the node holds data the metadata cannot account for.",
            stats.skipped_unaccounted(),
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The metadata backups' lines (`POST /admin/backup` and the periodic ones together).
fn render_backups(out: &mut String, stats: &crate::backup::BackupStats) {
    header(
        out,
        "sixfold_backups_total",
        "counter",
        "Metadata snapshots taken, by result.",
    );
    for (result, value) in [("ok", stats.ok()), ("failed", stats.failed())] {
        let _ = writeln!(out, "sixfold_backups_total{{result=\"{result}\"}} {value}");
    }
    for (name, help, value) in [
        (
            "sixfold_backup_last_success_unix_ms",
            "When the last successful metadata snapshot was taken (0: none since start).",
            stats.last_ok_unix_ms(),
        ),
        (
            "sixfold_backup_last_records",
            "Records the last successful metadata snapshot copied.",
            stats.last_records(),
        ),
    ] {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

impl Metrics {
    /// The HTTP listener's lines: connections and timeouts.
    fn render_http(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            out,
            "sixfold_http_connections_total",
            "counter",
            "HTTP connections accepted.",
        );
        let _ = writeln!(
            out,
            "sixfold_http_connections_total {}",
            get(&self.connections_accepted)
        );
        header(
            out,
            "sixfold_http_connections_open",
            "gauge",
            "HTTP connections being served.",
        );
        let _ = writeln!(
            out,
            "sixfold_http_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        header(
            out,
            "sixfold_http_connections_limit",
            "gauge",
            "Most HTTP connections served at once (max_connections).",
        );
        let _ = writeln!(
            out,
            "sixfold_http_connections_limit {}",
            get(&self.connection_limit)
        );
        header(
            out,
            "sixfold_http_timeouts_total",
            "counter",
            "Connections closed and uploads ended by an HTTP timeout, by kind.",
        );
        for kind in TimeoutKind::ALL {
            let _ = writeln!(
                out,
                "sixfold_http_timeouts_total{{kind=\"{}\"}} {}",
                kind.label(),
                get(&self.timeouts[kind as usize])
            );
        }
        header(
            out,
            "sixfold_http_panics_total",
            "counter",
            "Requests whose handler panicked (answered 500 internal).",
        );
        let _ = writeln!(out, "sixfold_http_panics_total {}", get(&self.panics));
    }
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape `\`, `"` and newlines.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Decrements its gauge when dropped, whatever path the request took.
#[derive(Debug)]
pub struct InFlightGuard<'a> {
    gauge: &'a AtomicI64,
}

impl<'a> InFlightGuard<'a> {
    fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { gauge }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn counters_and_gauges_render() {
        let m = Metrics::new();
        m.upload_finished(UploadOutcome::Ok);
        m.upload_finished(UploadOutcome::Ok);
        m.upload_finished(UploadOutcome::Unavailable);
        m.download_finished(DownloadOutcome::ChecksumMismatch);
        m.add_bytes_in(10);
        m.add_bytes_out(7);
        m.checksum_mismatch();
        let guard = m.upload_started();
        let nodes = [NodeGauge {
            id: "n\"1".into(),
            state: "down",
            capacity: 100,
            used: 40,
        }];
        let text = m.render(&nodes, Some(3));
        assert_eq!(
            line(&text, "sixfold_uploads_total{outcome=\"ok\"}"),
            "sixfold_uploads_total{outcome=\"ok\"} 2"
        );
        assert!(text.contains("sixfold_uploads_total{outcome=\"unavailable\"} 1"));
        assert!(text.contains("sixfold_downloads_total{outcome=\"checksum_mismatch\"} 1"));
        assert!(text.contains("sixfold_bytes_in_total 10"));
        assert!(text.contains("sixfold_bytes_out_total 7"));
        assert!(text.contains("sixfold_checksum_mismatches_total 1"));
        assert!(text.contains("sixfold_uploads_in_flight 1"));
        assert!(text.contains("sixfold_files 3"));
        assert!(text.contains("sixfold_node_state{node=\"n\\\"1\",state=\"down\"} 1"));
        assert!(text.contains("sixfold_node_state{node=\"n\\\"1\",state=\"up\"} 0"));
        assert!(text.contains("sixfold_node_used_bytes{node=\"n\\\"1\"} 40"));
        drop(guard);
        assert!(m.render(&[], None).contains("sixfold_uploads_in_flight 0"));
    }

    #[test]
    fn connections_and_timeouts_render() {
        let m = Arc::new(Metrics::new());
        m.set_connection_limit(8);
        let a = m.connection_opened();
        let b = m.connection_opened();
        m.timed_out(TimeoutKind::Header);
        m.timed_out(TimeoutKind::Body);
        m.timed_out(TimeoutKind::Body);
        drop(a);
        let text = m.render(&[], None);
        assert!(text.contains("sixfold_http_connections_total 2"), "{text}");
        assert!(text.contains("sixfold_http_connections_open 1"), "{text}");
        assert!(text.contains("sixfold_http_connections_limit 8"), "{text}");
        assert!(text.contains("sixfold_http_timeouts_total{kind=\"header\"} 1"));
        assert!(text.contains("sixfold_http_timeouts_total{kind=\"keepalive\"} 0"));
        assert!(text.contains("sixfold_http_timeouts_total{kind=\"body\"} 2"));
        assert_eq!(m.timeouts(TimeoutKind::Body), 2);
        drop(b);
        assert_eq!(m.connections_open(), 0);
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let text = Metrics::new().render(
            &[NodeGauge {
                id: "a".into(),
                state: "up",
                capacity: 1,
                used: 0,
            }],
            Some(0),
        );
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("sixfold_"), "{l}");
            assert!(value.parse::<i64>().is_ok(), "{l}");
        }
    }
}
