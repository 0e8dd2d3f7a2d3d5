//! Many transfers at once, with tiny QUIC windows and I/O pools so that the deadlock classes of
//! issue #11 show within seconds: every upload and download makes progress whatever order the
//! clients send or read in, beyond the admission limits requests get `503 busy` with
//! `Retry-After` (never a hang), and a failing node fails its transfers fast and clearly.
//!
//! Each scenario runs under one overall bound: a deadlock fails the test instead of hanging it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, Pattern, TestCluster, pattern};
use tokio::sync::{Barrier, watch};

/// Six nodes whose QUIC stream windows and I/O pools are a small fraction of a part, and a
/// gateway whose part read-ahead is as small: with the connection windows of old (a few
/// stream windows per connection) a few dozen transfers exhaust them.
fn tight(extra_gateway: &str) -> ClusterOptions {
    ClusterOptions {
        nodes: 6,
        gateway_config: format!(
            "node_stream_window = \"64KiB\"\nheartbeat_interval = \"500ms\"\n\
             down_after = \"2s\"\ncleanup_interval = \"500ms\"\n{extra_gateway}"
        ),
        node_args: ["--stream-window", "64KiB", "--io-buffers", "4"]
            .map(String::from)
            .to_vec(),
    }
}

async fn upload_all(c: &TestCluster, files: &[(Pattern, u64)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, (p, size)) in files.iter().enumerate() {
        ids.push(upload_ok(c, &format!("f{i}"), *p, *size).await);
    }
    ids
}

/// Reads a response body to the end, comparing it with `p` from `offset`.
async fn read_verified(resp: reqwest::Response, p: Pattern, offset: u64, len: u64) {
    let mut stream = resp.bytes_stream();
    let mut got = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("body piece");
        assert_eq!(
            p.first_mismatch(offset + got, &piece),
            None,
            "wrong bytes at {}",
            offset + got
        );
        got += piece.len() as u64;
    }
    assert_eq!(got, len, "body length");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_make_progress_whatever_order_clients_read_in() {
    let c = TestCluster::start(tight("max_downloads = 64\n")).await;
    let files: Vec<(Pattern, u64)> = (0..8)
        .map(|i| (pattern(100 + i), 6 * MIB + 4096 * i + 7))
        .collect();
    let ids = upload_all(&c, &files).await;

    // 64 downloads open at once; each reads a little, then all of them wait until every one
    // has had its first bytes (so every download holds its part streams at the same time),
    // then they finish one by one in reverse order: download 0 holds its streams until all
    // others are done.
    let n = 64;
    let started = Arc::new(Barrier::new(n));
    let (done_tx, done_rx) = watch::channel(n);
    let mut tasks = Vec::new();
    for k in 0..n {
        let (p, size) = files[k % files.len()];
        let url = format!("{}/files/{}", c.url, ids[k % ids.len()]);
        let http = c.http.clone();
        let started = Arc::clone(&started);
        let done_tx = done_tx.clone();
        let mut done_rx = done_rx.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http.get(&url).send().await.expect("GET");
            assert_eq!(resp.status(), StatusCode::OK);
            let mut stream = resp.bytes_stream();
            let first = stream.next().await.expect("first piece").expect("bytes");
            assert_eq!(p.first_mismatch(0, &first), None);
            started.wait().await;
            // Wait until every download after this one has finished.
            while *done_rx.borrow_and_update() > k + 1 {
                done_rx.changed().await.expect("watch");
            }
            let mut got = first.len() as u64;
            while let Some(piece) = stream.next().await {
                let piece = piece.expect("body piece");
                assert_eq!(p.first_mismatch(got, &piece), None, "download {k}");
                got += piece.len() as u64;
            }
            assert_eq!(got, size, "download {k}");
            done_tx.send_modify(|left| *left -= 1);
        }));
    }
    bounded("64 downloads", async {
        for t in tasks {
            t.await.expect("download task");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_make_progress_whatever_order_clients_send_in() {
    let c = TestCluster::start(tight("max_uploads = 64\n")).await;
    // 64 uploads send their first part and half of the second, all wait until every one got
    // that far, then they finish one by one in reverse order.
    let n = 64;
    let size = 6 * MIB + 5;
    let halfway = size / 6 + size / 12;
    let reached = Arc::new(Barrier::new(n + 1));
    let (done_tx, done_rx) = watch::channel(n);
    let mut tasks = Vec::new();
    for k in 0..n {
        let p = pattern(500 + k as u64);
        let url = format!("{}/files", c.url);
        let http = c.http.clone();
        let reached = Arc::clone(&reached);
        let done_tx = done_tx.clone();
        let mut done_rx = done_rx.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, body) = channel_body();
            let request = http
                .post(&url)
                .header("X-File-Name", format!("u{k}"))
                .header("Content-Length", size)
                .body(body)
                .send();
            let request = tokio::spawn(request);
            send_range(&tx, p, 0, halfway).await;
            reached.wait().await;
            while *done_rx.borrow_and_update() > k + 1 {
                done_rx.changed().await.expect("watch");
            }
            send_range(&tx, p, halfway, size).await;
            drop(tx);
            let resp = request.await.expect("task").expect("response");
            let status = resp.status();
            let json: Value = resp.json().await.expect("json");
            assert_eq!(status, StatusCode::CREATED, "upload {k}: {json}");
            done_tx.send_modify(|left| *left -= 1);
            (json["id"].as_str().expect("id").to_owned(), p)
        }));
    }
    let uploaded = bounded("64 uploads", async {
        // The gateway has read every client's first 1.5 MiB before any client finishes.
        reached.wait().await;
        let mut uploaded = Vec::new();
        for t in tasks {
            uploaded.push(t.await.expect("upload task"));
        }
        uploaded
    })
    .await;
    for (id, p) in uploaded {
        assert_download_matches(&c, &id, p, size).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_of_uploads_downloads_ranges_and_deletes_verifies_every_byte() {
    let c = TestCluster::start(tight("max_uploads = 16\nmax_downloads = 32\n")).await;
    let seed: Vec<(Pattern, u64)> = (0..6)
        .map(|i| (pattern(700 + i), 3 * MIB + 1000 * i + 1))
        .collect();
    let ids = upload_all(&c, &seed).await;
    let c = Arc::new(c);
    let mut tasks = Vec::new();
    // Per file: two whole downloads and two ranges across part boundaries, while new files
    // are uploaded and read back and the seed files are deleted once their reads are done.
    for (i, (id, (p, size))) in ids.iter().cloned().zip(seed.iter().copied()).enumerate() {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            let url = format!("{}/files/{id}", c.url);
            let mut reads = Vec::new();
            for r in 0..4u64 {
                let c = Arc::clone(&c);
                let url = url.clone();
                reads.push(tokio::spawn(async move {
                    let (start, len) = if r < 2 {
                        (0, size)
                    } else {
                        let start = size / 6 - 1000 * r;
                        (start, size / 3)
                    };
                    let mut req = c.http.get(&url);
                    if r >= 2 {
                        req = req.header("Range", format!("bytes={start}-{}", start + len - 1));
                    }
                    let resp = req.send().await.expect("GET");
                    let want = if r < 2 {
                        StatusCode::OK
                    } else {
                        StatusCode::PARTIAL_CONTENT
                    };
                    assert_eq!(resp.status(), want);
                    read_verified(resp, p, start, len).await;
                }));
            }
            for r in reads {
                r.await.expect("read task");
            }
            let resp = c.http.delete(&url).send().await.expect("DELETE");
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
            let resp = c.http.get(&url).send().await.expect("GET after delete");
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);

            let fresh = pattern(800 + i as u64);
            let fresh_size = 2 * MIB + 333 * i as u64;
            let fresh_id = upload_ok(&c, &format!("fresh{i}"), fresh, fresh_size).await;
            assert_download_matches(&c, &fresh_id, fresh, fresh_size).await;
        }));
    }
    bounded("mixed run", async {
        for t in tasks {
            t.await.expect("mixed task");
        }
    })
    .await;
    assert_eq!(list_ids(&c).await.len(), ids.len());
}

async fn metric(c: &TestCluster, line_prefix: &str) -> f64 {
    let text = metrics_text(c).await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix:?} in\n{text}"))
}

async fn assert_busy(resp: reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .expect("seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    let json: Value = resp.json().await.expect("json");
    assert_eq!(json["error"], "busy", "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_admission_limits_requests_get_503_busy_with_retry_after() {
    let c = TestCluster::start(ClusterOptions {
        gateway_config: "max_uploads = 1\nmax_downloads = 1\nadmission_queue = 1\n\
                         admission_wait = \"1s\"\n"
            .into(),
        ..ClusterOptions::default()
    })
    .await;
    let p = pattern(42);
    let size = 7 * MIB;
    let id = upload_ok(&c, "kept", p, size).await;

    // One upload holds the only slot (its body is held open) ...
    let (tx, held) = held_upload(&c, "held", size);
    send_range(&tx, p, 0, MIB).await;
    bounded("upload slot taken", async {
        while metric(&c, "sixfold_admission_running{kind=\"upload\"}").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // ... so the next one waits its bounded time and is refused, before its body is read.
    let refused = c
        .http
        .post(format!("{}/files", c.url))
        .header("X-File-Name", "refused")
        .body(p.bytes(0, MIB as usize))
        .send()
        .await
        .expect("response");
    assert_busy(refused).await;
    assert_eq!(
        metric(
            &c,
            "sixfold_admission_refused_total{kind=\"upload\",reason=\"waited_too_long\"}"
        )
        .await,
        1.0
    );

    // One download holds the only download slot while its client reads nothing.
    let reading = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(reading.status(), StatusCode::OK);
    let refused = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("GET");
    assert_busy(refused).await;
    // HEAD and metadata need no slot.
    let head = c
        .http
        .head(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    read_verified(reading, p, 0, size).await;
    // The slot is back once the first download is done.
    bounded("download slot freed", async {
        while metric(&c, "sixfold_admission_running{kind=\"download\"}").await > 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_download_matches(&c, &id, p, size).await;

    // The held upload completes normally once its client sends the rest.
    send_range(&tx, p, MIB, size).await;
    drop(tx);
    let resp = held.await.expect("task").expect("response");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let json: Value = resp.json().await.expect("json");
    assert_download_matches(&c, json["id"].as_str().expect("id"), p, size).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_an_upload_fails_it_as_marked_down_and_reads_from_it_get_503() {
    let mut c = TestCluster::start(tight("")).await;
    let p = pattern(77);
    let size = 12 * MIB;
    let kept = upload_ok(&c, "kept", p, size).await;
    // Heartbeats carry the counts: wait until they show the kept file's six parts.
    let before = bounded("heartbeats show the kept file", async {
        loop {
            let counts = chunk_counts(&c).await;
            if counts.iter().sum::<u64>() == 6 {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // The body stops inside part 0: only part 0's node has been asked for anything, and its
    // part is provably still in flight when that node is killed.
    let (tx, upload) = held_upload(&c, "doomed", size);
    send_range(&tx, p, 0, MIB).await;
    let holder = node_with_new_chunk(&c, &before).await;
    let victim = node_index(&c, holder).await;
    c.kill_node(victim);
    let resp = bounded("upload fails", upload)
        .await
        .expect("task")
        .expect("the gateway answers");
    let status = resp.status();
    let json: Value = resp.json().await.expect("json");
    assert!(
        status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {json}"
    );
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("marked down")),
        "the upload failed because its node was marked down, not by a QUIC timeout: {json}"
    );
    drop(tx);
    assert_eq!(list_ids(&c).await, vec![kept.clone()]);

    // The kept file has a part on the dead node: a download is refused before any byte.
    let resp = c
        .http
        .get(format!("{}/files/{kept}", c.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let json: Value = resp.json().await.expect("json");
    assert_eq!(json["error"], "node_unavailable", "{json}");

    // Back up: the file reads again and the failed upload's chunk is gone.
    c.start_node(victim);
    c.wait_nodes_up(6).await;
    assert_download_matches(&c, &kept, p, size).await;
    bounded("the aborted part is deleted", async {
        while chunk_counts(&c).await != before {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_answering_mid_download_cuts_the_body_after_node_timeout() {
    // Heartbeats are slow here, so only node_timeout can end the wait on a frozen node.
    let c = TestCluster::start(ClusterOptions {
        gateway_config: "node_stream_window = \"64KiB\"\nnode_timeout = \"2s\"\n\
                         heartbeat_interval = \"10s\"\ndown_after = \"120s\"\n"
            .into(),
        node_args: ["--stream-window", "64KiB"].map(String::from).to_vec(),
        ..ClusterOptions::default()
    })
    .await;
    let p = pattern(91);
    let size = 6 * MIB + 17;
    let id = upload_ok(&c, "frozen", p, size).await;
    let meta: Value = c
        .http
        .get(format!("{}/files/{id}/meta", c.url))
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    let holder = meta["parts"][0]["node_id"].as_str().expect("node id");
    let nodes = c.nodes_json().await;
    let json_index = nodes
        .iter()
        .position(|n| n["id"] == holder)
        .expect("part 0's node is listed");
    let frozen = node_index(&c, json_index).await;

    let resp = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.expect("a first piece").expect("bytes");
    assert_eq!(p.first_mismatch(0, &first), None);
    // Part 0's node freezes (SIGSTOP: its connection stays open but silent) while the rest of
    // part 0 is still to come: more than the 64 KiB windows the gateway may have buffered.
    c.nodes[frozen]
        .as_ref()
        .expect("running")
        .signal(libc::SIGSTOP);
    let cut = bounded("the body is cut off", async {
        let mut got = first.len() as u64;
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(piece) => {
                    assert_eq!(p.first_mismatch(got, &piece), None);
                    got += piece.len() as u64;
                }
                Err(_) => return got,
            }
        }
        got
    })
    .await;
    c.nodes[frozen]
        .as_ref()
        .expect("running")
        .signal(libc::SIGCONT);
    assert!(cut < size, "the body must be cut off, got all {size} bytes");
    let log = c.gateway.as_ref().expect("gateway").log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("download failed mid-stream") && l.contains("request timed out")),
        "the cut came from node_timeout"
    );
    // Thawed, the node serves the file again.
    assert_download_matches(&c, &id, p, size).await;
}
