//! Capacity: a node out of space fails the upload with 507 and keeps nothing; concurrent
//! uploads near full never overcommit a node (201 or 507, never 502); a node started on a
//! full disk serves reads, takes no parts, shows as read-only and comes back after a delete;
//! beyond `node_max_parts` an upload gets 503 busy with Retry-After.
//!
//! Real ENOSPC needs a small filesystem: those tests mount a tmpfs (root only) and skip, saying
//! so, where they cannot. The others make "full" happen in the gateway's accounting with the
//! node's declared `--capacity`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

const FAST: &str =
    "heartbeat_interval = \"300ms\"\ndown_after = \"3s\"\ncleanup_interval = \"500ms\"\n";
const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// A tmpfs mounted for one test; lazily unmounted when dropped (even if a node still has it
/// open: the node is killed right after, by the cluster).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "16m") on `path`, or says why not.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Node `i`'s chunk store directory (its only shard).
fn shard_dir(c: &TestCluster, i: usize) -> PathBuf {
    c.node_dir(i).join("shard-0")
}

/// Mounts a tmpfs for node `i`'s chunk store (before the node is added), or prints why the
/// test is skipped. The rest of the data dir (certificates, node id, the test's log) stays on
/// the ordinary disk, as the data disk of a real node would be separate.
fn tmpfs_for_node(c: &TestCluster, i: usize, size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(&shard_dir(c, i), size) {
        Ok(t) => Some(t),
        Err(why) => {
            eprintln!("SKIPPED: this test needs a small tmpfs (root) for a real ENOSPC: {why}");
            None
        }
    }
}

/// Writes a file into `dir` until its filesystem is full.
fn fill_up(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0xee_u8; 64 * 1024];
    for len in [block.len(), 4096, 1] {
        while let Ok(n) = f.write(&block[..len]) {
            if n == 0 {
                break;
            }
        }
    }
    let _ = f.sync_all();
}

async fn start(nodes: usize, extra_config: &str) -> TestCluster {
    TestCluster::start(ClusterOptions {
        nodes,
        gateway_config: format!("{FAST}{extra_config}"),
        ..ClusterOptions::default()
    })
    .await
}

fn add_node(c: &mut TestCluster, args: &[&str]) -> usize {
    c.add_node_with(LOOPBACK.into(), args)
}

async fn node_named(c: &TestCluster, name: &str) -> Value {
    c.nodes_json()
        .await
        .into_iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in /nodes"))
}

/// Waits (bounded) until node `name` shows `state` in `/nodes`.
async fn wait_state(c: &TestCluster, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let node = c
            .nodes_json()
            .await
            .into_iter()
            .find(|n| n["name"] == name)
            .unwrap_or(Value::Null);
        if node["state"] == state {
            return node;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not become {state}: {node}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the nodes report `want` chunks in all.
async fn wait_total_chunks(c: &TestCluster, want: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = c.nodes_json().await;
        let got: u64 = nodes
            .iter()
            .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
            .sum();
        if got == want {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "nodes hold {got} chunks, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chunk_files(shard_dir: &Path) -> Vec<String> {
    match std::fs::read_dir(shard_dir.join("chunks")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Node ids holding the parts of file `id`.
async fn part_nodes(c: &TestCluster, id: &str) -> Vec<String> {
    meta(c, id).await["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["node_id"].as_str().expect("node_id").to_owned())
        .collect()
}

/// The pattern's bytes `[from, to)` in 256 KiB frames.
fn pattern_from(
    p: sixfold_tests::Pattern,
    from: u64,
    to: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(from, move |pos| async move {
        if pos >= to {
            return None;
        }
        let n = (256 * 1024).min(to - pos);
        Some((Ok(bytes::Bytes::from(p.bytes(pos, n as usize))), pos + n))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_hits_enospc_fails_with_507_and_leaves_no_chunk() {
    // Small parts, so node-0's filesystem (64 KiB, declared as 1 GiB) is what refuses its
    // 72 KiB chunk file (header, crc table, body).
    let mut c = start(0, "min_part_size = \"64KiB\"\n").await;
    let Some(_fs) = tmpfs_for_node(&c, 0, "64k") else {
        return;
    };
    add_node(&mut c, &["--capacity", "1GiB"]);
    for _ in 1..6 {
        add_node(&mut c, &[]);
    }
    c.wait_nodes_up(6).await;
    let small = shard_dir(&c, 0);

    // Six parts of 64 KiB: one on every node; node-0's chunk file does not fit.
    let size = 6 * 64 * 1024;
    let (status, json) = upload_raw(&c, "too-big-for-node-0", pattern(1), size).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{json}");
    assert_eq!(json["error"], "insufficient_storage", "{json}");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk_full")),
        "{json}"
    );
    // The full node kept nothing; the others' parts are cleaned up; no file is visible.
    assert_eq!(chunk_files(&small), Vec::<String>::new());
    assert!(list_ids(&c).await.is_empty());
    wait_total_chunks(&c, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_near_full_get_201_or_507_and_never_overcommit() {
    // Each node declares room for four and a half parts of 2 MiB: at most four of the eight
    // files fit, whatever the timing.
    let capacity = 9 * MIB;
    let mut c = start(0, "").await;
    let cap = capacity.to_string();
    for _ in 0..6 {
        add_node(&mut c, &["--capacity", &cap]);
    }
    c.wait_nodes_up(6).await;

    let size = 12 * MIB;
    let uploads: Vec<_> = (0..8u64)
        .map(|i| {
            let (url, http) = (c.url.clone(), c.http.clone());
            tokio::spawn(async move {
                let body = reqwest::Body::wrap_stream(pattern(100 + i).stream(size, 256 * 1024));
                let resp = http
                    .post(format!("{url}/files"))
                    .header("X-File-Name", format!("near-full-{i}"))
                    .header("Content-Length", size)
                    .body(body)
                    .send()
                    .await
                    .expect("upload request");
                let status = resp.status();
                (i, status, resp.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut stored = Vec::new();
    let mut refused = 0;
    for u in uploads {
        let (i, status, json) = u.await.expect("upload task");
        match status {
            StatusCode::CREATED => stored.push((i, json["id"].as_str().expect("id").to_owned())),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(json["error"], "insufficient_storage", "{json}");
                refused += 1;
            }
            other => panic!("upload {i}: {other} {json}: only 201 or 507 may come back"),
        }
    }
    assert!(
        (1..=4).contains(&stored.len()),
        "{} uploads stored on nodes with room for 4",
        stored.len()
    );
    assert_eq!(stored.len() + refused, 8);
    for (i, id) in &stored {
        assert_download_matches(&c, id, pattern(100 + i), size).await;
    }
    // Once the failed uploads are cleaned up, no node holds more than it offers.
    let nodes = wait_total_chunks(&c, 6 * stored.len() as u64).await;
    for n in nodes {
        let used = n["used"].as_u64().expect("used");
        assert!(used <= capacity, "overcommitted: {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_on_a_full_disk_serves_reads_takes_no_parts_and_recovers() {
    let mut c = start(0, "").await;
    let Some(_fs) = tmpfs_for_node(&c, 0, "16m") else {
        return;
    };
    for _ in 0..6 {
        add_node(&mut c, &[]);
    }
    c.wait_nodes_up(6).await;
    let full_id = node_named(&c, "node-0").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Six nodes: the file has a part on node-0.
    let size = 6 * MIB + 3;
    let kept = upload_ok(&c, "kept", pattern(7), size).await;
    assert!(part_nodes(&c, &kept).await.contains(&full_id));

    // Restart node-0 on a 100 % full filesystem.
    c.stop_node(0, Duration::from_secs(10));
    fill_up(&shard_dir(&c, 0));
    c.start_node(0);
    let shown = wait_state(&c, "node-0", "read_only").await;
    assert!(c.node_running(0), "the node must start on a full disk");
    assert_eq!(shown["chunk_count"], 1, "{shown}");
    let log = c.nodes[0].as_ref().expect("node-0").log_text();
    assert!(log.contains("disk full"), "the node says so in its log");

    // Reads of its chunk are served, byte for byte.
    assert_download_matches(&c, &kept, pattern(7), size).await;

    // New parts go elsewhere: with node-0 read-only, six other nodes are needed.
    add_node(&mut c, &[]);
    c.wait_nodes_up(6).await;
    for seed in 8..11 {
        let id = upload_ok(&c, "elsewhere", pattern(seed), size).await;
        assert!(!part_nodes(&c, &id).await.contains(&full_id));
    }

    // A delete frees its chunk: it takes parts again.
    let resp = c
        .http
        .delete(format!("{}/files/{kept}", c.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    wait_state(&c, "node-0", "up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_node_max_parts_uploads_get_503_busy_with_retry_after() {
    let c = start(6, "node_max_parts = 1\n").await;
    let size = 12 * MIB;

    // The first upload holds every node's only slot: its body waits for a go.
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let (url, http) = (c.url.clone(), c.http.clone());
        let head = pattern(1).stream(MIB, 256 * 1024);
        let tail = futures_util::StreamExt::flat_map(futures_util::stream::once(wait), move |_| {
            pattern_from(pattern(1), MIB, size)
        });
        let body = futures_util::StreamExt::chain(head, tail);
        tokio::spawn(async move {
            http.post(format!("{url}/files"))
                .header("X-File-Name", "first")
                .header("Content-Length", size)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .expect("first upload")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_flight: u64 = c
            .nodes_json()
            .await
            .iter()
            .map(|n| n["parts_in_flight"].as_u64().unwrap_or(0))
            .sum();
        if in_flight == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "the first upload never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Meanwhile the surplus is refused at once, before any byte, with a time to come back.
    let surplus: Vec<_> = (0..3u64)
        .map(|i| {
            let (url, http) = (c.url.clone(), c.http.clone());
            tokio::spawn(async move {
                http.post(format!("{url}/files"))
                    .header("X-File-Name", format!("surplus-{i}"))
                    .header("Content-Length", 6 * MIB)
                    .body(reqwest::Body::wrap_stream(
                        pattern(20 + i).stream(6 * MIB, 256 * 1024),
                    ))
                    .send()
                    .await
                    .expect("surplus upload")
            })
        })
        .collect();
    for s in surplus {
        let resp = s.await.expect("surplus task");
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
        assert_error(resp, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    }

    // The first goes through, and then the slots are free for the next.
    go.send(()).expect("first upload still running");
    let resp = first.await.expect("first task");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let json: Value = resp.json().await.expect("json");
    let id = json["id"].as_str().expect("id").to_owned();
    assert_download_matches(&c, &id, pattern(1), size).await;
    let next = upload_ok(&c, "next", pattern(30), 6 * MIB).await;
    assert_download_matches(&c, &next, pattern(30), 6 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_cannot_be_written_keeps_running() {
    // A node whose log shares its full disk: every line it writes fails with ENOSPC.
    let c = start(0, "").await;
    let logs = c.dir.path().join("full-logs");
    let _fs = match Tmpfs::mount(&logs, "64k") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: this test needs a small tmpfs (root) for a full log disk: {why}");
            return;
        }
    };
    let log = logs.join("node-0.log");
    std::fs::File::create(&log).expect("log file");
    fill_up(&logs);
    let dir = c.node_dir(0);
    std::fs::create_dir_all(&dir).expect("node dir");
    let certs = dir.join("certs");
    sixfold_tests::run_ok(
        &sixfold_tests::bin_path("sixfold-gateway"),
        &[
            "certs",
            "issue-node",
            "--dir",
            c.gateway_certs_dir().to_str().expect("utf-8"),
            "--name",
            "node-0",
            "--ip",
            "127.0.0.1",
            "--out",
            certs.to_str().expect("utf-8"),
        ],
    );
    let args: Vec<String> = [
        "--data-dir",
        dir.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
        "--gateway",
        &c.internal_url(),
        "--shards",
        "1",
        "--name",
        "node-0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut node = sixfold_tests::Proc::spawn(
        "node-0",
        &sixfold_tests::bin_path("sixfold-node"),
        &args,
        log,
    );
    let first = wait_state(&c, "node-0", "up").await["last_heartbeat_unix_ms"]
        .as_u64()
        .expect("heartbeat");
    // Several heartbeats later (each one logs nothing, but startup logged plenty) it still runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let node_view = node_named(&c, "node-0").await;
        let last = node_view["last_heartbeat_unix_ms"].as_u64().unwrap_or(0);
        if last >= first + 1_000 && node_view["state"] == "up" {
            break;
        }
        assert!(node.is_running(), "the node died: {node_view}");
        assert!(Instant::now() < deadline, "no heartbeats: {node_view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.is_running());
}
