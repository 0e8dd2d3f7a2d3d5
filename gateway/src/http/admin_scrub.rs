//! `/admin/scrub` and `/admin/damaged`: the nodes' background scrub and the files it (or a
//! read) found damaged. The admin scope is checked by the auth layer.
//!
//! - `POST /admin/scrub`: every serving node starts a pass now (told in its next heartbeat
//!   answer); `202` with the nodes asked.
//! - `GET /admin/scrub`: per node, the current or last pass (chunks and bytes done of total,
//!   start, end, found) and the node's counters.
//! - `GET /admin/damaged?after=&limit=`: the files marked damaged, which part, on which node,
//!   found how and when.
//!
//! Also the presentation of the same figures in `/metrics` ([`render_metrics`]) and of one
//! file's damage in `/files/{id}/meta` ([`DamageView`]).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sixfold_wire::registration::{ScrubPass, ScrubReport};
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::meta::{DamageKind, DamagedFile, FoundBy, SharedMeta};
use crate::time_fmt::rfc3339_from_unix_ms;

/// Most damaged files one `GET /admin/damaged` page lists.
pub const MAX_DAMAGED_PAGE: usize = 1000;
const DEFAULT_DAMAGED_PAGE: usize = 100;

#[derive(Clone)]
pub struct ScrubApi {
    cluster: Cluster,
    meta: SharedMeta,
}

pub fn router(cluster: Cluster, meta: SharedMeta) -> axum::Router {
    axum::Router::new()
        .route("/admin/scrub", get(status).post(start))
        .route("/admin/damaged", get(damaged))
        .with_state(ScrubApi { cluster, meta })
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code,
            message,
        }),
    )
        .into_response()
}

/// `POST /admin/scrub` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScrubStarted {
    /// The nodes asked; each starts in its next heartbeat answer.
    pub requested: Vec<Uuid>,
}

async fn start(State(api): State<ScrubApi>) -> Response {
    let requested = api.cluster.request_scrub();
    (StatusCode::ACCEPTED, Json(ScrubStarted { requested })).into_response()
}

/// A pass as `GET /admin/scrub` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassView {
    pub running: bool,
    pub started: String,
    pub started_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<u64>,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub found: u64,
}

impl From<&ScrubPass> for PassView {
    fn from(p: &ScrubPass) -> Self {
        PassView {
            running: p.ended_unix_ms.is_none(),
            started: rfc3339_from_unix_ms(p.started_unix_ms),
            started_unix_ms: p.started_unix_ms,
            ended: p.ended_unix_ms.map(rfc3339_from_unix_ms),
            ended_unix_ms: p.ended_unix_ms,
            chunks_done: p.chunks_done,
            chunks_total: p.chunks_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            found: p.found,
        }
    }
}

/// One node in `GET /admin/scrub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeScrubView {
    pub node_id: Uuid,
    pub name: String,
    pub state: String,
    /// Asked for a pass not yet handed to the node.
    pub requested: bool,
    /// The node reports its scrub (report version 4 and later).
    pub reports: bool,
    /// Bytes/s; 0: the node's scrub is off.
    pub rate: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<PassView>,
    pub passes: u64,
    pub chunks_scrubbed: u64,
    pub bytes_scrubbed: u64,
    pub checksum_mismatches: u64,
    pub io_errors: u64,
    /// Damaged chunks the node holds (as listed in its report, plus those beyond its bound).
    pub damaged_chunks: u64,
}

/// `GET /admin/scrub` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScrubStatus {
    pub nodes: Vec<NodeScrubView>,
}

/// The view of one node's scrub (pure).
pub fn node_view(
    node_id: Uuid,
    name: &str,
    state: &str,
    requested: bool,
    report: Option<&ScrubReport>,
) -> NodeScrubView {
    let r = report.cloned().unwrap_or_default();
    NodeScrubView {
        node_id,
        name: name.to_owned(),
        state: state.to_owned(),
        requested,
        reports: report.is_some(),
        rate: r.rate,
        pass: r.pass.as_ref().map(PassView::from),
        passes: r.passes,
        chunks_scrubbed: r.chunks_scrubbed,
        bytes_scrubbed: r.bytes_scrubbed,
        checksum_mismatches: r.checksum_mismatches,
        io_errors: r.io_errors,
        damaged_chunks: r.damaged.len() as u64 + r.damaged_dropped,
    }
}

async fn status(State(api): State<ScrubApi>) -> Response {
    let nodes = api
        .cluster
        .scrub_status()
        .into_iter()
        .map(|(view, s)| {
            node_view(
                view.id,
                &view.name,
                view.state_name,
                s.requested,
                s.report.as_ref(),
            )
        })
        .collect();
    Json(ScrubStatus { nodes }).into_response()
}

/// One damaged part, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPartView {
    pub index: u32,
    pub node_id: Uuid,
    pub chunk_id: String,
    pub damage: DamageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    pub found_by: FoundBy,
    /// When the node found it (the node's clock).
    pub found: String,
    /// When the gateway marked the file.
    pub marked: String,
}

/// A file's damage, in `/files/{id}/meta` (`"damaged"`) and `GET /admin/damaged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageView {
    /// When the file was first marked.
    pub since: String,
    pub parts: Vec<DamagedPartView>,
}

impl From<&DamagedFile> for DamageView {
    fn from(d: &DamagedFile) -> Self {
        let since = d.parts.iter().map(|p| p.marked_unix_ms).min().unwrap_or(0);
        DamageView {
            since: rfc3339_from_unix_ms(since),
            parts: d
                .parts
                .iter()
                .map(|p| DamagedPartView {
                    index: p.index,
                    node_id: p.node_id,
                    chunk_id: p.chunk_id.iter().map(|b| format!("{b:02x}")).collect(),
                    damage: p.damage,
                    block: p.block,
                    found_by: p.found_by,
                    found: rfc3339_from_unix_ms(p.found_unix_ms),
                    marked: rfc3339_from_unix_ms(p.marked_unix_ms),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DamagedQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// An entry of `GET /admin/damaged`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DamagedEntry {
    pub id: Uuid,
    /// `None` if the file was deleted meanwhile.
    pub name: Option<String>,
    pub size: Option<u64>,
    pub damaged: DamageView,
}

/// `GET /admin/damaged` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct DamagedList {
    pub files: Vec<DamagedEntry>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_after: Option<Uuid>,
}

async fn damaged(
    State(api): State<ScrubApi>,
    query: Result<Query<DamagedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the query takes after=<file id> and limit=<1..=1000>".into(),
        );
    };
    let after = match query.after.as_deref().map(Uuid::try_parse) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "after is not a file id".into(),
            );
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_DAMAGED_PAGE);
    if !(1..=MAX_DAMAGED_PAGE).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("limit must be 1..={MAX_DAMAGED_PAGE}"),
        );
    }
    let page = match api.meta.list_damaged(after, limit + 1).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let more = page.len() > limit;
    let mut files = Vec::with_capacity(page.len().min(limit));
    for d in page.iter().take(limit) {
        let file = match api.meta.get_file(&d.file_id).await {
            Ok(f) => f,
            Err(e) => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
            }
        };
        files.push(DamagedEntry {
            id: d.file_id,
            name: file.as_ref().map(|f| f.name.clone()),
            size: file.as_ref().map(|f| f.size),
            damaged: DamageView::from(d),
        });
    }
    let next_after = if more {
        files.last().map(|f| f.id)
    } else {
        None
    };
    Json(DamagedList { files, next_after }).into_response()
}

/// A metric family: name, type, help, and how a node's report gives its value.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ScrubReport) -> u64,
);

/// The per-node scrub figures and the damaged file count, in Prometheus text format.
pub fn render_metrics(
    out: &mut String,
    nodes: &[(String, ScrubReport)],
    damaged_files: Option<u64>,
) {
    let families: [Family; 8] = [
        (
            "sixfold_node_checksum_mismatches_total",
            "counter",
            "Blocks or chunks a node found failing their crc32c, by reads or by the scrub (since the node started).",
            |r| r.checksum_mismatches,
        ),
        (
            "sixfold_node_io_errors_total",
            "counter",
            "Chunks a node could not read, by reads or by the scrub (since the node started).",
            |r| r.io_errors,
        ),
        (
            "sixfold_node_chunks_scrubbed_total",
            "counter",
            "Chunks a node's scrub verified.",
            |r| r.chunks_scrubbed,
        ),
        (
            "sixfold_node_bytes_scrubbed_total",
            "counter",
            "Bytes a node's scrub verified.",
            |r| r.bytes_scrubbed,
        ),
        (
            "sixfold_node_scrub_passes_total",
            "counter",
            "Scrub passes a node finished.",
            |r| r.passes,
        ),
        (
            "sixfold_node_scrub_last_pass_end_timestamp_seconds",
            "gauge",
            "When a node's last finished scrub pass ended (0: none yet).",
            |r| {
                r.pass
                    .as_ref()
                    .and_then(|p| p.ended_unix_ms)
                    .map_or(0, |ms| ms / 1000)
            },
        ),
        (
            "sixfold_node_scrub_running",
            "gauge",
            "1 while a node's scrub pass runs.",
            |r| u64::from(r.pass.as_ref().is_some_and(|p| p.ended_unix_ms.is_none())),
        ),
        (
            "sixfold_node_damaged_chunks",
            "gauge",
            "Damaged chunks a node holds.",
            |r| r.damaged.len() as u64 + r.damaged_dropped,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (node, report) in nodes {
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", value(report));
        }
    }
    if let Some(n) = damaged_files {
        let _ = writeln!(
            out,
            "# HELP sixfold_damaged_files Files with a part found corrupt or unreadable."
        );
        let _ = writeln!(out, "# TYPE sixfold_damaged_files gauge");
        let _ = writeln!(out, "sixfold_damaged_files {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ScrubReport {
        ScrubReport {
            checksum_mismatches: 1,
            io_errors: 2,
            chunks_scrubbed: 3,
            bytes_scrubbed: 4,
            passes: 1,
            rate: 10,
            pass: Some(ScrubPass {
                started_unix_ms: 1_000,
                ended_unix_ms: Some(5_000),
                chunks_done: 3,
                chunks_total: 3,
                bytes_done: 4,
                bytes_total: 4,
                found: 1,
            }),
            damaged: Vec::new(),
            damaged_dropped: 2,
        }
    }

    #[test]
    fn metrics_show_each_node_s_figures() {
        let mut text = String::new();
        render_metrics(&mut text, &[("n1".into(), report())], Some(3));
        for line in [
            "sixfold_node_checksum_mismatches_total{node=\"n1\"} 1",
            "sixfold_node_io_errors_total{node=\"n1\"} 2",
            "sixfold_node_chunks_scrubbed_total{node=\"n1\"} 3",
            "sixfold_node_bytes_scrubbed_total{node=\"n1\"} 4",
            "sixfold_node_scrub_passes_total{node=\"n1\"} 1",
            "sixfold_node_scrub_last_pass_end_timestamp_seconds{node=\"n1\"} 5",
            "sixfold_node_scrub_running{node=\"n1\"} 0",
            "sixfold_node_damaged_chunks{node=\"n1\"} 2",
            "sixfold_damaged_files 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn a_node_view_shows_the_pass_or_nothing_for_old_nodes() {
        let id = Uuid::new_v4();
        let v = node_view(id, "n", "up", true, Some(&report()));
        let pass = v.pass.unwrap();
        assert!(!pass.running);
        assert_eq!((pass.chunks_done, pass.chunks_total, pass.found), (3, 3, 1));
        assert_eq!(pass.ended.as_deref(), Some("1970-01-01T00:00:05.000Z"));
        assert_eq!((v.requested, v.reports, v.damaged_chunks), (true, true, 2));
        let old = node_view(id, "n", "up", false, None);
        assert!(!old.reports && old.pass.is_none());
    }
}
