//! Losing the gateway's metadata never costs a chunk (issue #13): nodes holding data the new
//! metadata cannot account for are never cleaned, and `/health` says `recovery_needed`.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::cluster::authorized_client;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

async fn total_chunks(c: &TestCluster) -> u64 {
    chunk_counts(c).await.iter().sum()
}

/// The value of a counter line of `/metrics`.
async fn counter(c: &TestCluster, name: &str) -> u64 {
    metrics_text(c)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_metadata_file_deletes_nothing_and_says_recovery_needed() {
    // Scans every 300 ms with no grace: without the guard, every chunk would be an orphan
    // deleted by the second scan.
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: "cleanup_interval = \"300ms\"\nheartbeat_interval = \"500ms\"\n\
                         orphan_scan_interval = \"300ms\"\norphan_scan_delay = \"300ms\"\n\
                         orphan_grace = \"0s\"\n"
            .into(),
        ..ClusterOptions::default()
    })
    .await;
    for i in 0..3u64 {
        upload_ok(&c, &format!("kept-{i}"), pattern(70 + i), 6 * MIB).await;
    }
    bounded("18 chunks reported", async {
        while total_chunks(&c).await != 18 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // The operator loses meta.redb (and moves the old admin token aside, as the gateway
    // asks when its metadata holds no key).
    if let Some(mut gateway) = c.gateway.take() {
        gateway.kill9();
    }
    let gw = c.gateway_dir();
    std::fs::remove_file(gw.join("meta.redb")).expect("remove meta.redb");
    std::fs::rename(gw.join("admin.token"), gw.join("admin.token.old")).expect("move token");
    c.start_gateway();
    let token = c.admin_token().await;
    c.http = authorized_client(&token);
    c.wait_nodes_up(6).await;

    let health = bounded("health says recovery_needed", async {
        loop {
            let r = c
                .http
                .get(format!("{}/health", c.url))
                .send()
                .await
                .expect("health");
            let status = r.status();
            let body: serde_json::Value = r.json().await.expect("json");
            if status == StatusCode::SERVICE_UNAVAILABLE && body["reason"] == "recovery_needed" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(health["error"], "recovery_needed", "{health}");
    // Three scan rounds on every node, each one skipped, and not a chunk gone.
    bounded("three orphan scan rounds", async {
        while counter(&c, "sixfold_orphan_scans_skipped_total").await < 18 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(total_chunks(&c).await, 18);
    assert_eq!(counter(&c, "sixfold_orphans_deleted_total").await, 0);
    assert_eq!(counter(&c, "sixfold_orphans_quarantined_total").await, 0);
}

/// Runs `sixfold-gateway admin recover` against the cluster and returns its report.
fn admin_recover(c: &TestCluster, token_file: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(sixfold_tests::bin_path("sixfold-gateway"))
        .args(["admin", "recover", "--timeout", "2m", "--gateway", &c.url])
        .arg("--token-file")
        .arg(token_file)
        .output()
        .expect("run admin recover");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "admin recover failed: {stderr}");
    eprintln!("admin recover: {stderr}");
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

async fn health(c: &TestCluster) -> (StatusCode, serde_json::Value) {
    let r = c
        .http
        .get(format!("{}/health", c.url))
        .send()
        .await
        .expect("health");
    let status = r.status();
    (status, r.json().await.expect("json"))
}

/// Loses the metadata as an operator would (kill, remove `meta.redb`, move the old token
/// aside) and starts the gateway again on the same nodes.
async fn lose_metadata(c: &mut TestCluster, nodes: usize) {
    if let Some(mut gateway) = c.gateway.take() {
        gateway.kill9();
    }
    let gw = c.gateway_dir();
    std::fs::remove_file(gw.join("meta.redb")).expect("remove meta.redb");
    std::fs::rename(gw.join("admin.token"), gw.join("admin.token.old")).expect("move token");
    c.start_gateway();
    let token = c.admin_token().await;
    c.http = authorized_client(&token);
    c.wait_nodes_up(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_recover_brings_back_committed_files_and_nothing_deleted_or_uncommitted() {
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: "cleanup_interval = \"300ms\"\nheartbeat_interval = \"500ms\"\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    // Three committed files (one of them a streamed form would be clipped; here raw bodies of
    // odd sizes), one deleted, and one upload cut before its 201.
    let sizes = [6 * MIB + 5, 3 * MIB, 777];
    let mut kept = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let id = upload_ok(&c, &format!("kept {i}.bin"), pattern(200 + i as u64), *size).await;
        kept.push((
            id.clone(),
            meta(&c, &id).await,
            pattern(200 + i as u64),
            *size,
        ));
    }
    let gone = upload_ok(&c, "deleted.bin", pattern(300), 2 * MIB).await;
    let r = c
        .http
        .delete(format!("{}/files/{gone}", c.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let before = chunk_counts(&c).await.iter().sum::<u64>();
    let (tx, cut) = held_upload(&c, "cut.bin", 6 * MIB);
    send_range(&tx, pattern(400), 0, 4 * MIB).await;
    bounded("four parts of the cut upload on their nodes", async {
        while chunk_counts(&c).await.iter().sum::<u64>() < before + 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // Every node keeps the id of the cluster it joined.
    let node_dirs: Vec<_> = (0..6).map(|i| c.node_dir(i)).collect();
    bounded("the nodes keep the cluster id", async {
        while !node_dirs.iter().all(|d| d.join("cluster_id").exists()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let kept_id = std::fs::read_to_string(node_dirs[0].join("cluster_id")).expect("cluster id");

    // The gateway dies before the cut upload's 201, and its metadata is lost.
    lose_metadata(&mut c, 6).await;
    drop(tx);
    assert!(
        cut.await.expect("join").is_err(),
        "the cut upload got an answer"
    );
    bounded("health says recovery_needed", async {
        while health(&c).await.0 != StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(list_ids(&c).await.is_empty());

    let report = admin_recover(&c, &c.gateway_dir().join("admin.token"));
    assert_eq!(report["files_restored"], 3, "{report}");
    assert_eq!(report["files_from_version_1_chunks"], 0, "{report}");
    assert_eq!(report["sets_not_restored"], 1, "{report}");
    assert_eq!(
        report["not_restored"][0]["reason"], "never committed (the upload did not answer 201)",
        "{report}"
    );
    assert!(
        report["chunks_quarantined"].as_u64().unwrap_or(0) >= 4,
        "{report}"
    );

    // Same ids, names, sizes, types and checksums, and the same bytes.
    let mut ids = list_ids(&c).await;
    ids.sort();
    let mut expected: Vec<String> = kept.iter().map(|k| k.0.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for (id, before, p, size) in &kept {
        let after = meta(&c, id).await;
        for field in ["id", "name", "size", "checksum", "content_type", "parts"] {
            assert_eq!(after[field], before[field], "{field} of {id}");
        }
        assert_download_matches(&c, id, *p, *size).await;
    }
    let r = c
        .http
        .get(format!("{}/files/{gone}", c.url))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the deleted file came back"
    );
    let (status, body) = health(&c).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The rebuilt metadata took the nodes' cluster id: after a restart they are members, not
    // strangers, and the cluster stays healthy. The nodes kept their id.
    if let Some(mut gateway) = c.gateway.take() {
        gateway.kill9();
    }
    c.start_gateway();
    c.wait_nodes_up(6).await;
    bounded("healthy after a restart", async {
        while health(&c).await.0 != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    for d in &node_dirs {
        assert_eq!(
            std::fs::read_to_string(d.join("cluster_id")).expect("id"),
            kept_id
        );
    }

    // The restored files are whole files again: they can be deleted like any other.
    let r = c
        .http
        .delete(format!("{}/files/{}", c.url, kept[2].0))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// Puts one part as the first release's gateway did: a version 1 `Put`, no file facts.
async fn put_v1(
    c: &TestCluster,
    node: &serde_json::Value,
    chunk_id: [u8; 16],
    meta: sixfold_wire::ChunkMeta,
    body: Vec<u8>,
) {
    let addrs: Vec<std::net::SocketAddr> = node["shard_addrs"]
        .as_array()
        .expect("shard addrs")
        .iter()
        .map(|a| a.as_str().expect("addr").parse().expect("socket addr"))
        .collect();
    let shard = sixfold_wire::shard_for(&chunk_id, addrs.len() as u16);
    let tls = sixfold_certs::GatewayTls::load(&c.gateway_certs_dir())
        .expect("gateway certs")
        .client_config();
    let (_endpoint, conn) = quic_connect(addrs[usize::from(shard)], tls)
        .await
        .expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let request = sixfold_wire::Request::Put {
        chunk_id,
        meta,
        resume_from: 0,
        facts: None,
    };
    send.write_all(&request.to_vec()).await.expect("header");
    send.write_all(&body).await.expect("body");
    send.finish().expect("finish");
    let answer = recv.read_to_end(64 * 1024).await.expect("answer");
    let (response, _) = sixfold_wire::Response::decode(&answer).expect("response");
    assert!(
        matches!(response, sixfold_wire::Response::Put { length, .. } if length == meta.length),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_version_1_chunks_is_rebuilt_named_after_its_id() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 6,
        ..ClusterOptions::default()
    })
    .await;
    // A 6-part file written the way the first release wrote it: version 1 headers, no facts
    // and no commit marks (the bytes of such headers are pinned in the node's format tests).
    let file_id = uuid::Uuid::new_v4();
    let p = pattern(500);
    let size = 6 * MIB + 3;
    let part = size.div_ceil(6);
    let nodes = c.nodes_json().await;
    for (i, node) in nodes.iter().enumerate().take(6) {
        let offset = i as u64 * part;
        let len = part.min(size - offset);
        let meta = sixfold_wire::ChunkMeta {
            file_id: *file_id.as_bytes(),
            part_index: i as u32,
            part_count: 6,
            file_offset: offset,
            length: len,
        };
        let chunk_id = *uuid::Uuid::new_v4().as_bytes();
        put_v1(&c, node, chunk_id, meta, p.bytes(offset, len as usize)).await;
    }

    let report = admin_recover(&c, &c.gateway_dir().join("admin.token"));
    assert_eq!(report["files_restored"], 1, "{report}");
    assert_eq!(report["files_from_version_1_chunks"], 1, "{report}");
    let id = file_id.to_string();
    let m = meta(&c, &id).await;
    assert_eq!(m["name"], id);
    assert_eq!(m["size"], size);
    let expected = format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(&p.bytes(0, size as usize))
    );
    assert_eq!(m["checksum"], expected);
    assert_download_matches(&c, &id, p, size).await;
}
