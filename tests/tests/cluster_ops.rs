//! Concurrency and membership: many uploads at once, and a node that joins a running cluster.

mod common;

use std::collections::HashSet;

use common::*;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_uploads_and_downloads_all_verify() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let c_url = c.url.clone();
        let http = c.http.clone();
        tasks.push(tokio::spawn(async move {
            let size = (i + 1) * 700_001;
            let p = pattern(2000 + i);
            let r = http
                .post(format!("{c_url}/files"))
                .header("X-File-Name", format!("c{i}"))
                .header("Content-Length", size)
                .body(reqwest::Body::wrap_stream(p.stream(size, 128 * 1024)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::CREATED);
            let id = r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            let body = http
                .get(format!("{c_url}/files/{id}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(body.len() as u64, size);
            assert_eq!(p.first_mismatch(0, &body), None);
            id
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 20);
    assert_eq!(list_ids(&c).await.into_iter().collect::<HashSet<_>>(), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seventh_node_joins_and_receives_parts() {
    let mut c = TestCluster::start(ClusterOptions::default()).await;
    let before: HashSet<String> = c
        .nodes_json()
        .await
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    c.add_node();
    c.wait_nodes_up(7).await;
    let nodes = c.nodes_json().await;
    assert_eq!(nodes.len(), 7);
    let new_id = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .find(|id| !before.contains(id))
        .expect("the new node is listed");

    // Six parts per file over seven nodes: within a few uploads the new node gets parts.
    let mut got_parts = false;
    for i in 0..10u64 {
        let p = pattern(3000 + i);
        let id = upload_ok(&c, &format!("after-join-{i}"), p, 6 * MIB).await;
        let m = meta(&c, &id).await;
        if m["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|part| part["node_id"] == new_id.as_str())
        {
            got_parts = true;
            assert_download_matches(&c, &id, p, 6 * MIB).await;
            break;
        }
    }
    assert!(got_parts, "the joined node never received a part");
}
