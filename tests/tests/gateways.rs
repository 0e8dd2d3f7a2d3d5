//! Several gateways over one PostgreSQL (issue 16), with the real binaries: two gateways, one
//! database, six nodes that know both gateways. Needs `SIXFOLD_TEST_POSTGRES_URL` (see
//! `postgres.rs`): skipped with a message without it, failed without it under `CI`.

mod common;

use std::time::{Duration, Instant};

use common::postgres::{TestDatabase, test_database};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, ExtraGateway, Pattern, TestCluster, pattern};

/// The TOML both gateways run with: one database, short timers so that heartbeats, cleanup
/// passes and the death of a gateway are noticed within seconds.
fn shared_config(db: &TestDatabase) -> String {
    format!(
        "metadata = \"{}\"\n\
         heartbeat_interval = \"300ms\"\n\
         down_after = \"2s\"\n\
         cleanup_interval = \"300ms\"\n\
         gateway_timeout = \"2s\"\n",
        db.url
    )
}

/// Gateway A (the cluster's own) with no node yet, gateway B beside it, then six nodes given
/// both gateways (A first), all up as both gateways see them.
async fn two_gateways(db: &TestDatabase) -> (TestCluster, ExtraGateway) {
    let config = shared_config(db);
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 0,
        gateway_config: config.clone(),
        ..ClusterOptions::default()
    })
    .await;
    let b = c.start_extra_gateway("gateway-b", &config);
    let gateways = [c.internal_url(), b.internal_url()];
    for _ in 0..6 {
        c.add_node_with_gateways(&gateways);
    }
    wait_up(&c, &c.url, 6).await;
    wait_up(&c, &b.url, 6).await;
    (c, b)
}

async fn nodes_at(c: &TestCluster, url: &str) -> Vec<Value> {
    let v: Value = c
        .http
        .get(format!("{url}/nodes"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /nodes")
        .json()
        .await
        .expect("nodes json");
    v.as_array()
        .cloned()
        .or_else(|| v["nodes"].as_array().cloned())
        .expect("node list")
}

/// Waits until the gateway at `url` shows `n` nodes up.
async fn wait_up(c: &TestCluster, url: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = match c.http.get(format!("{url}/nodes")).send().await {
            Ok(r) if r.status().is_success() => nodes_at(c, url)
                .await
                .iter()
                .filter(|n| n["state"] == "up")
                .count(),
            _ => 0,
        };
        if up >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: {up} of {n} nodes up in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn upload_at(c: &TestCluster, url: &str, name: &str, p: Pattern, len: u64) -> String {
    let resp = c
        .http
        .post(format!("{url}/files"))
        .header("X-File-Name", name)
        .header("Content-Length", len)
        .body(reqwest::Body::wrap_stream(p.stream(len, 256 * 1024)))
        .send()
        .await
        .expect("upload request");
    let status = resp.status();
    let json: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "upload via {url}: {json}");
    json["id"].as_str().expect("id").to_owned()
}

async fn assert_served_at(c: &TestCluster, url: &str, id: &str, p: Pattern, len: u64) {
    let resp = c
        .http
        .get(format!("{url}/files/{id}"))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}/files/{id}");
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len() as u64, len);
    assert_eq!(p.first_mismatch(0, &body), None, "bytes via {url} differ");
}

async fn listed_at(c: &TestCluster, url: &str) -> Vec<String> {
    let v: Value = c
        .http
        .get(format!("{url}/files?limit=1000"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    let mut ids: Vec<String> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// `(held, passes)` of the cleanup job on the gateway at `url`, from its `/metrics`.
async fn cleanup_job(c: &TestCluster, url: &str) -> (u64, u64) {
    job(c, url, "cleanup").await
}

/// `(held, passes)` of background job `name` on the gateway at `url`, from its `/metrics`.
async fn job(c: &TestCluster, url: &str, name: &str) -> (u64, u64) {
    let text = c
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let value = |metric: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{metric}{{job=\"{name}\"}} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{url}: no {metric} for the {name} job in /metrics"))
    };
    (
        value("sixfold_job_lease_held"),
        value("sixfold_job_passes_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_serve_the_same_files_and_run_the_cleanup_once() {
    let Some(db) = test_database("two gateways").await else {
        return;
    };
    let (c, b) = two_gateways(&db).await;
    let a = c.url.clone();
    bounded("two gateways", async {
        // Uploaded through A, served by B the moment the 201 is in, and the other way round.
        let size = 7 * MIB + 5;
        let pa = pattern(2601);
        let via_a = upload_at(&c, &a, "via-a.bin", pa, size).await;
        assert_served_at(&c, &b.url, &via_a, pa, size).await;
        let pb = pattern(2602);
        let via_b = upload_at(&c, &b.url, "via-b.bin", pb, 1000).await;
        assert_served_at(&c, &a, &via_b, pb, 1000).await;

        // Deleted through B: A answers 404 at once.
        let resp = c
            .http
            .delete(format!("{}/files/{via_b}", b.url))
            .send()
            .await
            .expect("delete");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let resp = c
            .http
            .get(format!("{a}/files/{via_b}"))
            .send()
            .await
            .expect("get");
        assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;

        // Concurrent uploads through both: every one committed, once.
        let uploads = (0..12u64).map(|i| {
            let url = if i % 2 == 0 { a.clone() } else { b.url.clone() };
            let c = &c;
            async move {
                let p = pattern(2700 + i);
                let len = MIB + i * 4099;
                (
                    upload_at(c, &url, &format!("c{i}.bin"), p, len).await,
                    p,
                    len,
                )
            }
        });
        let done = futures_util::future::join_all(uploads).await;
        let mut expected: Vec<String> = done.iter().map(|(id, _, _)| id.clone()).collect();
        expected.push(via_a.clone());
        expected.sort();
        expected.dedup();
        assert_eq!(expected.len(), 13, "every upload has an id of its own");
        assert_eq!(listed_at(&c, &a).await, expected);
        assert_eq!(listed_at(&c, &b.url).await, expected);
        assert_eq!(db.rows("files").await, 13);
        assert_eq!(db.rows("sessions").await, 0);
        for (i, (id, p, len)) in done.iter().enumerate() {
            let url = if i % 2 == 0 { &b.url } else { &a };
            assert_served_at(&c, url, id, *p, *len).await;
        }

        // An operator state set through B holds on A, which the node reports to.
        let node = nodes_at(&c, &a).await[0]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let set = |state: &'static str| {
            c.http
                .patch(format!("{}/admin/nodes/{node}", b.url))
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"state":"{state}"}}"#))
                .send()
        };
        assert_eq!(
            set("read_only").await.expect("patch").status(),
            StatusCode::OK
        );
        let state_at_a = || async {
            nodes_at(&c, &a)
                .await
                .into_iter()
                .find(|n| n["id"] == node.as_str())
                .map(|n| n["state"].as_str().unwrap_or_default().to_owned())
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while state_at_a().await.as_deref() != Some("read_only") {
            assert!(
                Instant::now() < deadline,
                "A never saw the read-only state set through B"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(set("up").await.expect("patch").status(), StatusCode::OK);
        let deadline = Instant::now() + Duration::from_secs(30);
        while state_at_a().await.as_deref() != Some("up") {
            assert!(
                Instant::now() < deadline,
                "A never saw the node set up again through B"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The cleanup runs on exactly one of them: one holds its lease, and only its passes
        // grow while the other's stand still.
        let (holder, other): (String, String) = loop {
            let (ha, _) = cleanup_job(&c, &a).await;
            let (hb, _) = cleanup_job(&c, &b.url).await;
            match (ha, hb) {
                (1, 0) => break (a.clone(), b.url.clone()),
                (0, 1) => break (b.url.clone(), a.clone()),
                (1, 1) => panic!("both gateways hold the cleanup's lease"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let (_, other_before) = cleanup_job(&c, &other).await;
        let (_, holder_before) = cleanup_job(&c, &holder).await;
        loop {
            let (held, passes) = cleanup_job(&c, &holder).await;
            assert_eq!(held, 1, "{holder} lost the lease while both run");
            if passes >= holder_before + 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            cleanup_job(&c, &other).await,
            (0, other_before),
            "{other} ran cleanup passes while {holder} held the lease"
        );
        // So does the rebalancer: one gateway holds its lease, the other waits.
        loop {
            let (ha, _) = job(&c, &a, "rebalance").await;
            let (hb, _) = job(&c, &b.url, "rebalance").await;
            assert!(ha + hb <= 1, "both gateways hold the rebalancer's lease");
            if ha + hb == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_upload_leaves_its_session_to_the_other() {
    let Some(db) = test_database("gateway killed mid-upload").await else {
        return;
    };
    let (mut c, b) = two_gateways(&db).await;
    bounded("kill -9 of gateway A mid-upload", async {
        let kept = pattern(2801);
        let kept_id = upload_at(&c, &c.url, "kept.bin", kept, 6 * MIB).await;

        // 12 MiB in six 2 MiB parts through A; 5 MiB sent: two parts stored, a third being
        // written, when A dies.
        let (tx, task) = held_upload(&c, "cut.bin", 12 * MIB);
        send_range(&tx, pattern(2802), 0, 5 * MIB).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let total: u64 = nodes_at(&c, &c.url)
                .await
                .iter()
                .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
                .sum();
            if total >= 8 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cut upload's parts never landed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(db.rows("sessions").await, 1);
        c.gateway.take().expect("gateway A").kill9();
        drop(tx);
        let _ = task.await;

        // B, once A's liveness and lease lapse, aborts the session and deletes its chunks; the
        // nodes, having moved their heartbeats to B, report only the kept file's six.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let sessions = db.rows("sessions").await;
            let queued = db.rows("delete_queue").await;
            let nodes = nodes_at(&c, &b.url).await;
            let up = nodes.iter().filter(|n| n["state"] == "up").count();
            let total: u64 = nodes
                .iter()
                .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
                .sum();
            if sessions == 0 && queued == 0 && up == 6 && total == 6 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after A's death: {sessions} sessions, {queued} queued deletes, {up} nodes up, \
                 {total} chunks on the nodes (want 0, 0, 6, 6)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            b.log_text().contains("OwnerGone"),
            "B's log should say why it aborted A's session"
        );
        assert_served_at(&c, &b.url, &kept_id, kept, 6 * MIB).await;
        assert_eq!(listed_at(&c, &b.url).await, vec![kept_id]);
    })
    .await;
}
