//! The admin API on a listener of its own (`admin_listen`, issue 18): the main listener refuses
//! every admin path with a 404 that says where the admin API is, the admin listener serves it
//! with the same keys, and files are served on the main listener as before.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, TestCluster, free_tcp_port, pattern};

#[tokio::test]
async fn admin_paths_live_only_on_the_admin_listener() {
    let port = free_tcp_port();
    let c = TestCluster::start(ClusterOptions {
        gateway_config: format!("admin_listen = \"127.0.0.1:{port}\"\n"),
        ..ClusterOptions::default()
    })
    .await;
    let admin = format!("http://127.0.0.1:{port}");

    // The main listener: files yes, admin no, even with the admin token.
    let id = upload_ok(&c, "kept.bin", pattern(3), 3 * MIB).await;
    assert_download_matches(&c, &id, pattern(3), 3 * MIB).await;
    for path in ["/admin/keys", "/admin/recover"] {
        let resp = c
            .http
            .get(format!("{}{path}", c.url))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "not_found", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("admin_listen")),
            "{body}"
        );
    }
    let patch = c
        .http
        .patch(format!("{}/admin/nodes/{}", c.url, uuid::Uuid::new_v4()))
        .json(&serde_json::json!({"state": "draining"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patch.status(), StatusCode::NOT_FOUND);

    // The admin listener: the same keys decide.
    let keys = c
        .http
        .get(format!("{admin}/admin/keys"))
        .send()
        .await
        .expect("keys");
    assert_eq!(keys.status(), StatusCode::OK);
    let keys: Value = keys.json().await.expect("json");
    assert!(
        keys.to_string().contains("bootstrap-admin"),
        "the first admin key is listed: {keys}"
    );
    let anonymous = reqwest::Client::new()
        .get(format!("{admin}/admin/keys"))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let health = reqwest::Client::new()
        .get(format!("{}/health", c.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
}
