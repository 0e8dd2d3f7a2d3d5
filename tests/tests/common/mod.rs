//! Helpers shared by the end-to-end test files: upload and download through the HTTP API and
//! verify bytes against the deterministic pattern.

#![allow(dead_code)]

pub mod postgres;
pub mod rebalance;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_node::quic::QuicSettings;
use sixfold_tests::{Pattern, TestCluster};
use tokio::sync::mpsc;

pub const MIB: u64 = 1 << 20;

/// Bound on a whole scenario; reaching it means requests stopped making progress.
pub const SCENARIO_BOUND: Duration = Duration::from_secs(240);

/// Runs `fut` to its end, or fails the test once [`SCENARIO_BOUND`] has passed: a deadlock
/// fails instead of hanging the suite.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(SCENARIO_BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress within {SCENARIO_BOUND:?} (deadlock)"),
    }
}

/// Uploads `len` pattern bytes as a raw body with a known length; returns (status, json).
pub async fn upload_raw(c: &TestCluster, name: &str, p: Pattern, len: u64) -> (StatusCode, Value) {
    let body = reqwest::Body::wrap_stream(p.stream(len, 256 * 1024));
    let resp = c
        .http
        .post(format!("{}/files", c.url))
        .header("X-File-Name", name)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len)
        .body(body)
        .send()
        .await
        .expect("upload request");
    let status = resp.status();
    let json = resp.json().await.unwrap_or(Value::Null);
    (status, json)
}

/// Uploads and asserts 201; returns the file id.
pub async fn upload_ok(c: &TestCluster, name: &str, p: Pattern, len: u64) -> String {
    let (status, json) = upload_raw(c, name, p, len).await;
    assert_eq!(status, StatusCode::CREATED, "upload of {len} bytes: {json}");
    assert_eq!(json["size"], len, "{json}");
    assert_eq!(json["name"], name, "{json}");
    json["id"].as_str().expect("id").to_string()
}

/// Downloads a file (optionally a range) and returns status, headers and the body.
pub async fn download(
    c: &TestCluster,
    id: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = c.http.get(format!("{}/files/{id}", c.url));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.expect("download request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("download body").to_vec();
    (status, headers, body)
}

/// Downloads the whole file and asserts every byte matches the pattern.
pub async fn assert_download_matches(c: &TestCluster, id: &str, p: Pattern, len: u64) {
    let (status, headers, body) = download(c, id, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"].to_str().unwrap(), len.to_string());
    assert_eq!(body.len() as u64, len);
    assert_eq!(
        p.first_mismatch(0, &body),
        None,
        "downloaded bytes differ from uploaded ones"
    );
}

pub async fn meta(c: &TestCluster, id: &str) -> Value {
    c.http
        .get(format!("{}/files/{id}/meta", c.url))
        .send()
        .await
        .expect("meta request")
        .json()
        .await
        .expect("meta json")
}

/// The gateway's `/metrics` text.
pub async fn metrics_text(c: &TestCluster) -> String {
    c.http
        .get(format!("{}/metrics", c.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

pub async fn list_ids(c: &TestCluster) -> Vec<String> {
    let v: Value = c
        .http
        .get(format!("{}/files?limit=1000", c.url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    v["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect()
}

/// Asserts an error response: status and the JSON `error` code, with a human message.
pub async fn assert_error(resp: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status);
    let json: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(json["error"], code, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
}

/// Expected part lengths per the splitting rule (6 parts, 1 MiB minimum).
pub fn expected_parts(size: u64) -> Vec<u64> {
    if size == 0 {
        return vec![];
    }
    let (count, part) = if size >= 6 * MIB {
        (6, size.div_ceil(6))
    } else {
        (size.div_ceil(MIB), MIB)
    };
    (0..count)
        .map(|i| {
            if i + 1 < count {
                part
            } else {
                size - part * (count - 1)
            }
        })
        .collect()
}

/// A request body fed by the test, piece by piece.
pub fn channel_body() -> (mpsc::Sender<Bytes>, reqwest::Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

/// An upload of `size` bytes whose body the test feeds through the returned sender; the task
/// resolves with the gateway's answer.
pub fn held_upload(
    c: &TestCluster,
    name: &str,
    size: u64,
) -> (
    mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (tx, body) = channel_body();
    let request = c
        .http
        .post(format!("{}/files", c.url))
        .header("X-File-Name", name)
        .header("Content-Length", size)
        .body(body)
        .send();
    (tx, tokio::spawn(request))
}

/// Sends pattern bytes `[from, to)` in 64 KiB pieces.
pub async fn send_range(tx: &mpsc::Sender<Bytes>, p: Pattern, from: u64, to: u64) {
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(64 * 1024) as usize;
        tx.send(Bytes::from(p.bytes(pos, n)))
            .await
            .expect("the gateway reads the body");
        pos += n as u64;
    }
}

/// Waits until exactly one node's heartbeat shows one more chunk than `before`; returns it.
pub async fn node_with_new_chunk(c: &TestCluster, before: &[u64]) -> usize {
    bounded("a part reaches its node", async {
        loop {
            let now: Vec<u64> = c
                .nodes_json()
                .await
                .iter()
                .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
                .collect();
            let grown: Vec<usize> = (0..now.len()).filter(|&i| now[i] > before[i]).collect();
            if grown.len() == 1 {
                return grown[0];
            }
            assert!(
                grown.len() < 2,
                "parts on several nodes: {now:?} vs {before:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

pub async fn chunk_counts(c: &TestCluster) -> Vec<u64> {
    c.nodes_json()
        .await
        .iter()
        .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
        .collect()
}

/// Index in `nodes_json` order of the node started as `node-{i}`.
pub async fn node_index(c: &TestCluster, json_index: usize) -> usize {
    let nodes = c.nodes_json().await;
    let name = nodes[json_index]["name"].as_str().expect("name").to_owned();
    name.strip_prefix("node-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected node name {name}"))
}

/// A quinn client connection to a node shard at `addr` with `tls`, configured as the gateway's
/// (the node runs `--mtu auto`: jumbo datagrams on loopback). Node certificates carry their IP
/// addresses as SANs, so the address is the server name.
pub async fn quic_connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let settings = QuicSettings::loopback_jumbo();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let endpoint = quinn::Endpoint::new(
        settings.endpoint_config().map_err(|e| e.to_string())?,
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?,
    ));
    config.transport_config(Arc::new(settings.transport_config()));
    let conn = endpoint
        .connect_with(config, addr, &addr.ip().to_string())
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok((endpoint, conn))
}
