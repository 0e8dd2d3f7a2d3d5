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
