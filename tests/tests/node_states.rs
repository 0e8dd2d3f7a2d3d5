//! Node states an operator sets (issue #15): `read_only` and `draining` nodes get no new
//! parts, the state is kept over restarts of the gateway and of the node, and `up` undoes it.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

/// Runs `sixfold-gateway admin nodes ARGS...` against the cluster.
fn admin_nodes(c: &TestCluster, args: &[&str]) -> String {
    let out = std::process::Command::new(sixfold_tests::bin_path("sixfold-gateway"))
        .args(["admin", "nodes"])
        .args(args)
        .args(["--gateway", &c.url])
        .arg("--token-file")
        .arg(c.gateway_dir().join("admin.token"))
        .output()
        .expect("run admin nodes");
    assert!(
        out.status.success(),
        "admin nodes {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn node_json(c: &TestCluster, id: &str) -> Value {
    c.nodes_json()
        .await
        .into_iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("node {id} not listed"))
}

async fn parts_on(c: &TestCluster, file: &str, node: &str) -> usize {
    meta(c, file).await["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter(|p| p["node_id"] == node)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_node_gets_no_new_parts_and_stays_so_over_restarts() {
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 7,
        gateway_config: "heartbeat_interval = \"300ms\"\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    let nodes = c.nodes_json().await;
    let ro = nodes[0]["id"].as_str().expect("id").to_owned();
    let ro_index = node_index(&c, 0).await;
    admin_nodes(&c, &["read-only", &ro]);
    let n = node_json(&c, &ro).await;
    assert_eq!(
        (n["state"].as_str(), n["operator_state"].as_str()),
        (Some("read_only"), Some("read_only"))
    );

    // Six nodes take the parts: every file avoids the read-only one.
    for i in 0..4u64 {
        let id = upload_ok(&c, &format!("f{i}"), pattern(600 + i), 6 * MIB).await;
        assert_eq!(
            parts_on(&c, &id, &ro).await,
            0,
            "a part on the read-only node"
        );
        assert_download_matches(&c, &id, pattern(600 + i), 6 * MIB).await;
    }

    // Kept over a restart of the gateway and of the node itself.
    if let Some(mut gw) = c.gateway.take() {
        gw.kill9();
    }
    c.start_gateway();
    c.stop_node(ro_index, Duration::from_secs(10));
    c.start_node(ro_index);
    bounded("the node back, still read-only", async {
        loop {
            let n = node_json(&c, &ro).await;
            if n["state"] == "read_only" {
                return;
            }
            assert_ne!(n["state"], "up", "the node came back up: {n}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let listed = admin_nodes(&c, &["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&ro) && l.contains("read_only")),
        "{listed}"
    );

    // With another node stopped only six are eligible: read-only leaves too few (503), and
    // `up` makes the node take parts again, so every file then uses it.
    let other = node_index(&c, 1).await;
    c.stop_node(other, Duration::from_secs(10));
    bounded("five nodes up", async {
        loop {
            let up = c
                .nodes_json()
                .await
                .iter()
                .filter(|n| n["state"] == "up")
                .count();
            if up == 5 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (status, body) = upload_raw(&c, "refused", pattern(700), 6 * MIB).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    admin_nodes(&c, &["up", &ro]);
    c.wait_nodes_up(6).await;
    let id = upload_ok(&c, "back", pattern(701), 6 * MIB).await;
    assert_eq!(parts_on(&c, &id, &ro).await, 1);
    assert_download_matches(&c, &id, pattern(701), 6 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_state_requests_get_clear_errors() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 6,
        ..ClusterOptions::default()
    })
    .await;
    let id = c.nodes_json().await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let patch = |node: String, body: &'static str| {
        c.http
            .patch(format!("{}/admin/nodes/{node}", c.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        r#"{"state":"down"}"#,
        r#"{"state":"removed"}"#,
        r#"{"state":"gone"}"#,
        "up",
    ] {
        let r = patch(id.clone(), body).await.expect("patch");
        assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    let r = patch(uuid::Uuid::new_v4().to_string(), r#"{"state":"up"}"#)
        .await
        .expect("patch");
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = patch(id.clone(), r#"{"state":"draining"}"#)
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let n: Value = r.json().await.expect("json");
    assert_eq!(
        (n["state"].as_str(), n["operator_state"].as_str()),
        (Some("draining"), Some("draining"))
    );
    // A draining node also gets no parts: five eligible nodes are too few.
    let (status, _) = upload_raw(&c, "refused", pattern(702), 6 * MIB).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
