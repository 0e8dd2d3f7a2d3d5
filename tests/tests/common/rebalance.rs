//! Helpers of the rebalancing tests (`rebalance.rs`, and `postgres.rs` with its metadata in
//! PostgreSQL): a cluster with small parts and a short grace, a set of files, where their parts
//! are, the rebalancer's status and runs, and the admin CLI.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sixfold_tests::{ClusterOptions, Pattern, TestCluster, pattern};

use super::{assert_download_matches, bounded, chunk_counts, download, meta, upload_ok};
use reqwest::StatusCode;

pub const KIB: u64 = 1 << 10;
pub const FILES: u64 = 30;

/// Small parts (64 KiB minimum) so that small files still have six; a short grace period so
/// that moved parts' sources go soon; a quick cleanup.
pub fn options(extra: &str) -> ClusterOptions {
    ClusterOptions {
        nodes: 6,
        gateway_config: format!(
            "heartbeat_interval = \"300ms\"\ndown_after = \"3s\"\ncleanup_interval = \"300ms\"\n\
             min_part_size = \"64KiB\"\nnode_timeout = \"5s\"\nrebalance_grace = \"6s\"\n{extra}"
        ),
        node_args: vec!["--capacity".into(), "1GiB".into()],
    }
}

pub fn size_of(i: u64) -> u64 {
    384 * KIB + i * 37 * KIB
}

/// Uploads the test's files; (id, pattern, size) of each.
pub async fn upload_files(c: &TestCluster) -> Vec<(String, Pattern, u64)> {
    let mut files = Vec::new();
    for i in 0..FILES {
        let (p, len) = (pattern(1500 + i), size_of(i));
        let id = upload_ok(c, &format!("f{i}"), p, len).await;
        files.push((id, p, len));
    }
    files
}

/// Every file's part nodes, by file id, in part order.
pub async fn placement(
    c: &TestCluster,
    files: &[(String, Pattern, u64)],
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for (id, _, _) in files {
        let m = meta(c, id).await;
        let nodes: Vec<String> = m["parts"]
            .as_array()
            .expect("parts")
            .iter()
            .map(|p| p["node_id"].as_str().expect("node id").to_owned())
            .collect();
        let distinct: HashSet<&String> = nodes.iter().collect();
        assert_eq!(
            distinct.len(),
            nodes.len(),
            "two parts of {id} on one node: {m}"
        );
        out.insert(id.clone(), nodes);
    }
    out
}

pub async fn rebalance_status(c: &TestCluster) -> Value {
    let r = c
        .http
        .get(format!("{}/admin/rebalance", c.url))
        .send()
        .await
        .expect("GET /admin/rebalance");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("status json")
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits until a run started by `trigger` at or after `since_ms` has finished; returns its
/// status.
pub async fn finished_run(c: &TestCluster, trigger: &str, since_ms: u64) -> Value {
    bounded(&format!("a {trigger} rebalance runs to its end"), async {
        loop {
            let s = rebalance_status(c).await;
            if s["trigger"] == trigger
                && s["state"] == "idle"
                && s["finished_unix_ms"].is_u64()
                && s["started_unix_ms"].as_u64().unwrap_or(0) >= since_ms
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

pub async fn verify_all(c: &TestCluster, files: &[(String, Pattern, u64)]) {
    for (id, p, len) in files {
        assert_download_matches(c, id, *p, *len).await;
    }
}

/// Waits until the nodes' chunk counts add up to exactly the files' parts: every moved part's
/// source and every abandoned copy is gone, and nothing is missing.
pub async fn chunks_settle(c: &TestCluster, parts: u64) {
    bounded("the chunk counts settle on one chunk per part", async {
        loop {
            let total: u64 = chunk_counts(c).await.iter().sum();
            if total == parts {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

pub fn admin(c: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(sixfold_tests::bin_path("sixfold-gateway"))
        .arg("admin")
        .args(args)
        .args(["--gateway", &c.url])
        .arg("--token-file")
        .arg(c.gateway_dir().join("admin.token"))
        .output()
        .expect("run admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compares each file's part nodes `before` and `after` a run that a new node (started as
/// `node-{newcomer}`) caused: at most one part of a file moved, and only to the new node.
/// Returns how many parts moved.
pub async fn moved_to_newcomer(
    c: &TestCluster,
    newcomer: usize,
    before: &HashMap<String, Vec<String>>,
    after: &HashMap<String, Vec<String>>,
) -> u64 {
    let new_id = c
        .nodes_json()
        .await
        .into_iter()
        .find(|n| n["name"] == format!("node-{newcomer}"))
        .expect("newcomer listed")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut moved = 0u64;
    for (id, nodes) in after {
        let changed: Vec<usize> = (0..nodes.len())
            .filter(|&k| nodes[k] != before[id][k])
            .collect();
        assert!(
            changed.len() <= 1,
            "{id}: more than one part moved: {changed:?}"
        );
        for k in changed {
            assert_eq!(
                nodes[k], new_id,
                "{id} part {k} moved elsewhere than to the new node"
            );
            moved += 1;
        }
    }
    moved
}

/// sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sha256 of the first `len` bytes of pattern `p` (what an upload of it sent).
pub fn pattern_sha256(p: Pattern, len: u64) -> String {
    let mut h = Sha256::new();
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(1 << 20) as usize;
        h.update(p.bytes(pos, n));
        pos += n as u64;
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads every file and asserts that the sha256 of its bytes is the uploaded bytes'.
pub async fn verify_sha256(c: &TestCluster, files: &[(String, Pattern, u64)]) {
    for (id, p, len) in files {
        let (status, _, body) = download(c, id, None).await;
        assert_eq!(status, StatusCode::OK, "download of {id}");
        assert_eq!(body.len() as u64, *len, "length of {id}");
        assert_eq!(
            sha256_hex(&body),
            pattern_sha256(*p, *len),
            "sha256 of {id} differs from the uploaded bytes'"
        );
    }
}
