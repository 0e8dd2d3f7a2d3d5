//! Every error of the HTTP API comes with its status code and a JSON body
//! `{"error": code, "message": text}`, and a refused request stores nothing.

mod common;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_their_status_and_json_code() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: "max_file_size = 8388608\n".into(),
        ..ClusterOptions::default()
    })
    .await;

    // 400: an id that is not a UUID.
    let r = c
        .http
        .get(format!("{}/files/not-a-uuid", c.url))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_id").await;

    // 404: a well-formed id nobody uploaded, for every verb that takes one.
    let ghost = uuid::Uuid::new_v4();
    let r = c
        .http
        .get(format!("{}/files/{ghost}", c.url))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = c
        .http
        .get(format!("{}/files/{ghost}/meta", c.url))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = c
        .http
        .delete(format!("{}/files/{ghost}", c.url))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = c
        .http
        .head(format!("{}/files/{ghost}", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // 413 from Content-Length, before the body is read.
    let (status, json) = upload_raw(&c, "too-big.bin", pattern(1), 8 * MIB + 1).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["error"], "too_large");

    // 413 for a body without a length, as soon as it passes the limit.
    let body = reqwest::Body::wrap_stream(pattern(2).stream(9 * MIB, 64 * 1024));
    let r = c
        .http
        .post(format!("{}/files", c.url))
        .header("X-File-Name", "chunked-too-big.bin")
        .body(body)
        .send()
        .await
        .expect("the gateway drains a refused body, so the client gets its answer");
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;

    // 416: a range past the end, with Content-Range: bytes */size.
    let id = upload_ok(&c, "small.bin", pattern(3), 1000).await;
    let r = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .header("Range", "bytes=1000-2000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes */1000");
    assert_error(
        r,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
    )
    .await;

    // Nothing of the refused uploads is listed.
    assert_eq!(list_ids(&c).await, vec![id.clone()]);

    // DELETE: 204, then the file is gone.
    let r = c
        .http
        .delete(format!("{}/files/{id}", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert!(list_ids(&c).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_than_six_nodes_refuses_big_uploads_with_503_before_storing_anything() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 5,
        ..Default::default()
    })
    .await;
    let r = c
        .http
        .get(format!("{}/health", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    let (status, json) = upload_raw(&c, "six-parts.bin", pattern(4), 6 * MIB).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(json["error"], "not_enough_nodes");
    assert!(list_ids(&c).await.is_empty());
    let stored: u64 = c
        .nodes_json()
        .await
        .iter()
        .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(stored, 0, "no chunk may be stored for a refused upload");
}
