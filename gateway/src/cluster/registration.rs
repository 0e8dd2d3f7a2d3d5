//! `POST /internal/nodes/register` and `POST /internal/nodes/heartbeat`: nodes report
//! themselves (JSON [`NodeReport`]) and learn the heartbeat interval.
//!
//! Served only by the internal listener, over mutual TLS: the handshake admitted a node
//! certificate of the cluster CA, and the listener put its identity into the request
//! ([`PeerCert`]). The node id is the certificate's; a body naming another id is refused
//! with 403, so one node's certificate cannot speak for another node.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use sixfold_wire::registration::{
    HEARTBEAT_PATH, MAX_DAMAGED_REPORTED, MIN_REPORT_VERSION, NodeReport, REGISTER_PATH,
    REPORT_VERSION, ReportAck, ScrubReport,
};
use uuid::Uuid;

use super::Cluster;
use super::registry::{ReportKind, ValidReport};
use crate::http::tls::PeerCert;

/// Most shards a node may report (far above any core count; bounds the work per report).
pub const MAX_SHARDS: usize = 1024;
/// Longest node name or software string kept.
const MAX_TEXT: usize = 256;
/// Largest report body read (a report with [`MAX_SHARDS`] addresses is far below).
const MAX_BODY: usize = 256 << 10;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code,
            message: message.into(),
        }),
    )
        .into_response()
}

/// The router for the two endpoints, with the cluster as state.
pub fn router(cluster: Cluster) -> axum::Router {
    axum::Router::new()
        .route(REGISTER_PATH, post(register))
        .route(HEARTBEAT_PATH, post(heartbeat))
        .with_state(cluster)
}

async fn register(State(cluster): State<Cluster>, request: Request) -> Response {
    report(cluster, ReportKind::Register, request).await
}

async fn heartbeat(State(cluster): State<Cluster>, request: Request) -> Response {
    report(cluster, ReportKind::Heartbeat, request).await
}

async fn report(cluster: Cluster, kind: ReportKind, request: Request) -> Response {
    let Some(peer) = request.extensions().get::<PeerCert>().cloned() else {
        // Only reachable if the routes were mounted on a listener without mutual TLS.
        tracing::warn!(?kind, "node report without a verified client certificate");
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "node reports need a node certificate of the cluster CA (mutual TLS)",
        );
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(?kind, error = %e, "node report body unreadable or too large");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("report body unreadable or over {MAX_BODY} bytes"),
            );
        }
    };
    let (report, scrub) = match parse_report_full(&body) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(?kind, peer = %peer.0.role, %why, "rejected node report");
            return error(StatusCode::BAD_REQUEST, "bad_request", why);
        }
    };
    if let Err(why) = authorize(&peer, &report) {
        tracing::warn!(
            ?kind,
            peer = %peer.0.role,
            peer_cn = ?peer.0.common_name,
            claimed = %report.id,
            name = ?report.name,
            "refused a node report for another node than the certificate's"
        );
        return error(StatusCode::FORBIDDEN, "forbidden", why);
    }
    let tell = cluster.apply_report(&report, kind).await;
    // Older nodes neither scrub nor send a scrub report.
    let scrubs = scrub.is_some();
    cluster.apply_scrub(report.id, scrub).await;
    let ack = ReportAck {
        heartbeat_interval_ms: u64::try_from(cluster.heartbeat_interval().as_millis())
            .unwrap_or(u64::MAX),
        report_version: REPORT_VERSION,
        cluster_id: tell.map(|id| id.hyphenated().to_string()),
        scrub_now: scrubs && cluster.take_scrub_request(report.id),
    };
    (StatusCode::OK, Json(ack)).into_response()
}

/// The certificate must be a node's, and the report about that node.
pub fn authorize(peer: &PeerCert, report: &ValidReport) -> Result<(), String> {
    match peer.0.role {
        sixfold_certs::PeerRole::Node(id) if id == report.id => Ok(()),
        sixfold_certs::PeerRole::Node(id) => Err(format!(
            "this node certificate is issued for node {id}, the report claims node {}",
            report.id
        )),
        sixfold_certs::PeerRole::Gateway => {
            Err("the gateway's certificate cannot report as a node".into())
        }
    }
}

/// Decodes and checks a report body.
#[cfg(test)]
pub fn parse_report(body: &[u8]) -> Result<ValidReport, String> {
    parse_report_full(body).map(|(report, _)| report)
}

/// [`parse_report`], with the scrub report (version 4) beside it.
pub fn parse_report_full(body: &[u8]) -> Result<(ValidReport, Option<ScrubReport>), String> {
    let r: NodeReport =
        serde_json::from_slice(body).map_err(|e| format!("malformed node report: {e}"))?;
    if r.version < 4 && r.scrub.is_some() {
        return Err("scrub needs node report version 4".into());
    }
    if let Some(scrub) = &r.scrub {
        if scrub.damaged.len() > MAX_DAMAGED_REPORTED {
            return Err(format!(
                "{} damaged chunks reported; at most {MAX_DAMAGED_REPORTED} are accepted",
                scrub.damaged.len()
            ));
        }
        if let Some(bad) = scrub
            .damaged
            .iter()
            .find(|d| super::scrub::parse_chunk_id(&d.chunk_id).is_none())
        {
            return Err(format!(
                "damaged chunk id {:?} is not 32 hex digits",
                bad.chunk_id
            ));
        }
    }
    let scrub = r.scrub.clone();
    if !(MIN_REPORT_VERSION..=REPORT_VERSION).contains(&r.version) {
        return Err(format!(
            "unsupported node report version {} (this gateway reads versions \
             {MIN_REPORT_VERSION} to {REPORT_VERSION})",
            r.version
        ));
    }
    if r.version < 2 && r.read_only {
        return Err("read_only needs node report version 2".into());
    }
    if r.version < 3 && r.cluster_id.is_some() {
        return Err("cluster_id needs node report version 3".into());
    }
    let cluster_id = match &r.cluster_id {
        Some(text) => Some(
            Uuid::parse_str(text).map_err(|e| format!("cluster_id {text:?} is not a UUID: {e}"))?,
        ),
        None => None,
    };
    let id = Uuid::parse_str(&r.node_id)
        .map_err(|e| format!("node_id {:?} is not a UUID: {e}", r.node_id))?;
    if id.is_nil() {
        return Err("node_id must not be the nil UUID".into());
    }
    if r.shard_addrs.is_empty() {
        return Err("shard_addrs is empty: a node needs at least one shard address".into());
    }
    if r.shard_addrs.len() > MAX_SHARDS {
        return Err(format!(
            "{} shard addresses reported; at most {MAX_SHARDS} are accepted",
            r.shard_addrs.len()
        ));
    }
    let mut distinct = HashSet::with_capacity(r.shard_addrs.len());
    for addr in &r.shard_addrs {
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(format!(
                "shard address {addr} cannot be dialled: report the address the gateway should connect to"
            ));
        }
        if !distinct.insert(*addr) {
            return Err(format!("shard address {addr} is reported twice"));
        }
    }
    // Peer-supplied text ends up in logs and /nodes: control characters (a `\n` forging a
    // log line, terminal escapes) are refused outright.
    for (field, text) in [("name", &r.name), ("software", &r.software)] {
        if text.chars().any(char::is_control) {
            return Err(format!("{field} contains control characters"));
        }
    }
    let name = truncate(r.name.trim(), MAX_TEXT);
    let report = ValidReport {
        id,
        name: if name.is_empty() {
            id.to_string()
        } else {
            name
        },
        shard_addrs: r.shard_addrs,
        capacity: r.capacity,
        used: r.used,
        chunk_count: r.chunk_count,
        in_flight: r.in_flight,
        draining: r.draining,
        read_only: r.read_only,
        software: truncate(r.software.trim(), MAX_TEXT),
        cluster_id,
    };
    Ok((report, scrub))
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = serde_json::json!({
            "version": 1,
            "node_id": "6f1c2a0e-8a4b-4c55-9d7e-0a1b2c3d4e5f",
            "name": "n1",
            "shard_addrs": ["127.0.0.1:7000", "127.0.0.1:7001"],
            "capacity": 100,
            "used": 10,
            "chunk_count": 2,
            "in_flight": 0,
            "software": "sixfold-node 0.1.0"
        });
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_good_report_parses() {
        let r = parse_report(&body(|_| {})).expect("valid");
        assert_eq!(r.id.to_string(), "6f1c2a0e-8a4b-4c55-9d7e-0a1b2c3d4e5f");
        assert_eq!(r.shard_addrs.len(), 2);
        assert!(!r.draining, "draining defaults to false");
        let r = parse_report(&body(|v| v["draining"] = true.into())).expect("valid");
        assert!(r.draining);
        let r = parse_report(&body(|v| v["name"] = " ".into())).expect("valid");
        assert_eq!(r.name, r.id.to_string());
        // Version 1 (above) and version 2, which may say the node's disk is full.
        assert!(!r.read_only);
        let r = parse_report(&body(|v| {
            v["version"] = 2.into();
            v["read_only"] = true.into();
        }))
        .expect("valid");
        assert!(r.read_only);
        // Version 3 names the cluster the node joined.
        let r = parse_report(&body(|v| {
            v["version"] = 3.into();
            v["cluster_id"] = "0c1a2b3c-4d5e-4f60-8a1b-2c3d4e5f6071".into();
        }))
        .expect("valid");
        assert_eq!(
            r.cluster_id.map(|id| id.to_string()).as_deref(),
            Some("0c1a2b3c-4d5e-4f60-8a1b-2c3d4e5f6071")
        );
        assert!(
            parse_report(&body(
                |v| v["cluster_id"] = "0c1a2b3c-4d5e-4f60-8a1b-2c3d4e5f6071".into()
            ))
            .is_err(),
            "cluster_id in version 1"
        );
        assert!(
            parse_report(&body(|v| {
                v["version"] = 3.into();
                v["cluster_id"] = "nope".into();
            }))
            .is_err()
        );
    }

    #[test]
    fn version_4_carries_the_scrub_report() {
        let scrub = serde_json::json!({
            "checksum_mismatches": 1, "io_errors": 0, "chunks_scrubbed": 4,
            "bytes_scrubbed": 40, "passes": 1, "rate": 100,
            "damaged": [{"chunk_id": "ab".repeat(16), "damage": "checksum_mismatch",
                         "block": 2, "found_by": "scrub", "found_unix_ms": 5}]
        });
        let with = |version: u32, scrub: serde_json::Value| {
            body(move |v| {
                v["version"] = version.into();
                v["scrub"] = scrub;
            })
        };
        let (_, got) = parse_report_full(&with(4, scrub.clone())).expect("valid");
        let got = got.expect("scrub");
        assert_eq!((got.checksum_mismatches, got.damaged.len()), (1, 1));
        // Versions 1 to 3 have none.
        let (_, got) = parse_report_full(&body(|v| v["version"] = 3.into())).expect("valid");
        assert_eq!(got, None);
        let err = parse_report_full(&with(3, scrub.clone())).unwrap_err();
        assert!(err.contains("version 4"), "{err}");
        let mut bad = scrub.clone();
        bad["damaged"][0]["chunk_id"] = "nope".into();
        let err = parse_report_full(&with(4, bad)).unwrap_err();
        assert!(err.contains("32 hex digits"), "{err}");
        let mut many = scrub;
        let one = many["damaged"][0].clone();
        many["damaged"] = serde_json::Value::Array(vec![one; MAX_DAMAGED_REPORTED + 1]);
        let err = parse_report_full(&with(4, many)).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn only_the_certificate_s_own_node_may_report() {
        let r = parse_report(&body(|_| {})).expect("valid");
        let peer = |role| {
            PeerCert(std::sync::Arc::new(sixfold_certs::PeerIdentity {
                role,
                common_name: Some("n1".into()),
            }))
        };
        assert!(authorize(&peer(sixfold_certs::PeerRole::Node(r.id)), &r).is_ok());
        let other = Uuid::new_v4();
        let err = authorize(&peer(sixfold_certs::PeerRole::Node(other)), &r).unwrap_err();
        assert!(err.contains(&other.to_string()), "{err}");
        assert!(authorize(&peer(sixfold_certs::PeerRole::Gateway), &r).is_err());
    }

    #[test]
    fn bad_reports_are_refused_with_a_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "malformed"),
            (body(|v| v["version"] = 5.into()), "version 5"),
            (body(|v| v["version"] = 0.into()), "version 0"),
            (
                body(|v| v["read_only"] = true.into()),
                "read_only needs node report version 2",
            ),
            (body(|v| v["node_id"] = "node-1".into()), "not a UUID"),
            (
                body(|v| v["node_id"] = Uuid::nil().to_string().into()),
                "nil",
            ),
            (body(|v| v["shard_addrs"] = serde_json::json!([])), "empty"),
            (
                body(|v| v["shard_addrs"] = serde_json::json!(["0.0.0.0:7000"])),
                "cannot be dialled",
            ),
            (
                body(|v| v["shard_addrs"] = serde_json::json!(["10.0.0.1:7000", "10.0.0.1:7000"])),
                "twice",
            ),
            (body(|v| v["extra"] = 1.into()), "malformed"),
            (body(|v| v["capacity"] = (-1).into()), "malformed"),
            (
                body(|v| v["name"] = "n1\nINFO forged line".into()),
                "name contains control characters",
            ),
            (
                body(|v| v["software"] = "x\u{1b}[2J".into()),
                "software contains control characters",
            ),
        ];
        for (b, needle) in cases {
            let err = parse_report(&b).expect_err(needle);
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
