//! Background scrub and damaged files (issue #15): a byte flipped in a chunk on disk is found
//! by a scrub pass started through the admin API, without any read of the file; the file is
//! then reported damaged (meta, `/admin/damaged`, `/health`, the node's metrics) and its
//! downloads are refused with `503 file_damaged` before any header of success.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

const MIB: u64 = 1 << 20;

/// Flips every bit of the byte at `at` in `path` and syncs it to disk.
fn flip_byte(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open chunk file");
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).expect("read byte");
    file.write_all_at(&[b[0] ^ 0xff], at).expect("write byte");
    file.sync_all().expect("sync chunk file");
}

/// The chunk file of a part on disk: the node named `node-<i>` holding `node_id`, one shard.
async fn chunk_path(c: &TestCluster, node_id: &str, chunk_id: &str) -> PathBuf {
    let node = c
        .nodes_json()
        .await
        .into_iter()
        .find(|n| n["id"] == node_id)
        .expect("node listed");
    let i: usize = node["name"]
        .as_str()
        .and_then(|n| n.strip_prefix("node-"))
        .and_then(|n| n.parse().ok())
        .expect("node-<i>");
    c.node_dir(i)
        .join("shard-0")
        .join("chunks")
        .join(format!("{chunk_id}.chunk"))
}

async fn get_json(c: &TestCluster, path: &str) -> Value {
    let resp = c
        .http
        .get(format!("{}{path}", c.url))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.json().await.expect("json")
}

/// Runs `sixfold-gateway admin ARGS...` against the cluster; returns stdout.
fn admin(c: &TestCluster, args: &[&str]) -> String {
    let out = std::process::Command::new(sixfold_tests::bin_path("sixfold-gateway"))
        .arg("admin")
        .args(args)
        .args(["--gateway", &c.url])
        .arg("--token-file")
        .arg(c.gateway_dir().join("admin.token"))
        .output()
        .expect("run admin");
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_found_by_scrub_without_a_read_and_the_file_is_damaged() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: "heartbeat_interval = \"300ms\"\n".into(),
        // No periodic pass: only the one the test asks for.
        node_args: ["--scrub-rate", "64MiB", "--scrub-interval", "0s"]
            .map(String::from)
            .to_vec(),
    })
    .await;
    let len = 6 * MIB + 123;
    let id = upload_ok(&c, "bitrot.bin", pattern(1500), len).await;
    let good = upload_ok(&c, "fine.bin", pattern(1501), 2 * MIB).await;
    let file = meta(&c, &id).await;
    assert!(file.get("damaged").is_none(), "{file}");
    let part = file["parts"][2].clone();
    let node_id = part["node_id"].as_str().expect("node").to_owned();
    let path = chunk_path(&c, &node_id, part["chunk_id"].as_str().expect("chunk")).await;
    // The body ends the chunk file: its last byte is the part's last byte.
    let file_len = std::fs::metadata(&path).expect("chunk file").len();
    flip_byte(&path, file_len - 1);

    // A pass on every node, through the admin API; nothing reads the file meanwhile.
    let started: Value = c
        .http
        .post(format!("{}/admin/scrub", c.url))
        .send()
        .await
        .expect("start scrub")
        .json()
        .await
        .expect("json");
    assert_eq!(
        started["requested"].as_array().map(Vec::len),
        Some(6),
        "{started}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let damaged = loop {
        let m = meta(&c, &id).await;
        if let Some(d) = m.get("damaged") {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "not reported damaged: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let parts = damaged["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 1, "{damaged}");
    assert_eq!(parts[0]["index"], 2);
    assert_eq!(parts[0]["node_id"], node_id.as_str());
    assert_eq!(parts[0]["chunk_id"], part["chunk_id"]);
    assert_eq!(parts[0]["damage"], "checksum_mismatch");
    assert_eq!(parts[0]["found_by"], "scrub");
    assert!(damaged["since"].as_str().is_some(), "{damaged}");
    assert!(meta(&c, &good).await.get("damaged").is_none());

    let list = get_json(&c, "/admin/damaged").await;
    let files = list["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{list}");
    assert_eq!(files[0]["id"], id.as_str());
    assert_eq!(files[0]["name"], "bitrot.bin");
    assert_eq!(files[0]["damaged"]["parts"][0]["index"], 2);

    // Every node finished its pass; the damaged node counts exactly one mismatch.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = get_json(&c, "/admin/scrub").await;
        let nodes = status["nodes"].as_array().expect("nodes");
        let done = nodes.len() == 6
            && nodes
                .iter()
                .all(|n| n["passes"].as_u64() >= Some(1) && n["pass"]["running"] == false);
        if done {
            let n = nodes
                .iter()
                .find(|n| n["node_id"] == node_id.as_str())
                .expect("node");
            assert_eq!(n["checksum_mismatches"], 1, "{n}");
            assert_eq!(n["pass"]["found"], 1, "{n}");
            assert_eq!(n["pass"]["chunks_done"], n["pass"]["chunks_total"], "{n}");
            assert!(n["pass"]["bytes_done"].as_u64() >= Some(MIB), "{n}");
            break;
        }
        assert!(Instant::now() < deadline, "passes not finished: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each node keeps when its pass ended, for the schedule over restarts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(0..6).all(|i| c.node_dir(i).join("scrub_last_pass").exists()) {
        assert!(Instant::now() < deadline, "scrub_last_pass not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = std::fs::read_to_string(c.node_dir(0).join("scrub_last_pass")).expect("read");
    assert!(kept.starts_with("1 "), "{kept:?}");
    let metrics = metrics_text(&c).await;
    let line = format!("sixfold_node_checksum_mismatches_total{{node=\"{node_id}\"}} 1");
    assert!(
        metrics.lines().any(|l| l == line),
        "{line} not in\n{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "sixfold_damaged_files 1"),
        "{metrics}"
    );
    let nodes = c.nodes_json().await;
    let n = nodes
        .iter()
        .find(|n| n["id"] == node_id.as_str())
        .expect("node");
    assert_eq!(n["scrub"]["checksum_mismatches"], 1, "{n}");
    assert_eq!(
        n["scrub"]["damaged"][0]["chunk_id"], part["chunk_id"],
        "{n}"
    );
    let table = admin(&c, &["scrub", "status"]);
    assert!(table.contains(&node_id), "{table}");

    // Downloads touching part 2 are refused before any header of success; others are served.
    let at = part["offset"].as_u64().expect("offset");
    let in_part = format!("bytes={}-{}", at + 5, at + 9);
    let across = format!("bytes={}-{}", at - 5, at + 5);
    for range in [None, Some("bytes=0-"), Some(&*in_part), Some(&*across)] {
        let mut req = c.http.get(format!("{}/files/{id}", c.url));
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let resp = req.send().await.expect("download");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{range:?}"
        );
        assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "file_damaged").await;
    }
    // Bytes of sound parts are still served.
    let (status, _, body) = download(&c, &id, Some(&format!("bytes=0-{}", at - 1))).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.len() as u64, at);
    assert_eq!(pattern(1500).first_mismatch(0, &body), None);
    assert_download_matches(&c, &good, pattern(1501), 2 * MIB).await;

    // Uploads are taken: 200, but degraded.
    let resp = c
        .http
        .get(format!("{}/health", c.url))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status(), StatusCode::OK);
    let health: Value = resp.json().await.expect("json");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["damaged_files"], 1, "{health}");

    // A damaged file is deleted like any other, and with it its mark.
    let resp = c
        .http
        .delete(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let list = get_json(&c, "/admin/damaged").await;
    assert_eq!(list["files"].as_array().map(Vec::len), Some(0), "{list}");
    let health = get_json(&c, "/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    // The node forgets the deleted chunk too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = c.nodes_json().await;
        let n = nodes
            .iter()
            .find(|n| n["id"] == node_id.as_str())
            .expect("node");
        if n["scrub"]["damaged_chunks"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still reported: {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the scrub off, a read that meets a bad block is what finds it: the node counts it and
/// reports it, and the file is marked damaged from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_meets_a_bad_block_marks_the_file_damaged_when_the_scrub_is_off() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: "heartbeat_interval = \"300ms\"\n".into(),
        node_args: ["--scrub-rate", "0"].map(String::from).to_vec(),
    })
    .await;
    let len = 6 * MIB;
    let id = upload_ok(&c, "read.bin", pattern(1600), len).await;
    let part = meta(&c, &id).await["parts"][0].clone();
    let node_id = part["node_id"].as_str().expect("node").to_owned();
    let path = chunk_path(&c, &node_id, part["chunk_id"].as_str().expect("chunk")).await;
    let file_len = std::fs::metadata(&path).expect("chunk file").len();
    // The first byte of the body: the first block of the first part.
    flip_byte(&path, file_len - MIB);

    // The scrub is off: asking for one starts nothing.
    let resp = c
        .http
        .post(format!("{}/admin/scrub", c.url))
        .send()
        .await
        .expect("start scrub");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // The bad first block is refused by its node before any header of success.
    let (status, _, _) = download(&c, &id, None).await;
    assert!(status.is_server_error(), "{status}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let damaged = loop {
        if let Some(d) = meta(&c, &id).await.get("damaged") {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "not reported damaged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(damaged["parts"][0]["index"], 0, "{damaged}");
    assert_eq!(damaged["parts"][0]["found_by"], "read", "{damaged}");
    assert_eq!(damaged["parts"][0]["block"], 0, "{damaged}");
    let resp = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("download");
    assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "file_damaged").await;
    let status = get_json(&c, "/admin/scrub").await;
    for n in status["nodes"].as_array().expect("nodes") {
        assert_eq!(n["rate"], 0, "{n}");
        assert_eq!(n["passes"], 0, "{n}");
        assert_eq!(n["chunks_scrubbed"], 0, "{n}");
    }
    let n = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == node_id.as_str())
        .expect("node")
        .clone();
    assert!(n["checksum_mismatches"].as_u64() >= Some(1), "{n}");
}
