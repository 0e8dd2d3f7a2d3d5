//! Upload bodies of every kind (raw with a length, chunked without one, multipart) and names that
//! are hard to put in a header all come back as they went in.

mod common;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_multipart_bodies_round_trip() {
    let c = TestCluster::start(ClusterOptions::default()).await;

    for (i, size) in [0u64, 1, 6 * MIB + 3, 21 * MIB].into_iter().enumerate() {
        // Chunked: no Content-Length.
        let p = pattern(500 + i as u64);
        let r = c
            .http
            .post(format!("{}/files?name=chunked-{size}.bin", c.url))
            .body(reqwest::Body::wrap_stream(p.stream(size, 100_000)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["size"], size);
        assert_eq!(json["name"], format!("chunked-{size}.bin"));
        assert_download_matches(&c, json["id"].as_str().unwrap(), p, size).await;

        // Multipart with one file field.
        let p = pattern(600 + i as u64);
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(p.stream(size, 100_000)),
            size,
        )
        .file_name(format!("form-{size}.dat"))
        .mime_str("application/x-test")
        .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = c
            .http
            .post(format!("{}/upload", c.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["size"], size, "{json}");
        assert_eq!(json["name"], format!("form-{size}.dat"));
        let id = json["id"].as_str().unwrap();
        assert_download_matches(&c, id, p, size).await;
        let r = c
            .http
            .head(format!("{}/files/{id}", c.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "application/x-test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_kept_and_served_safely() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    for name in [
        "quote\"and\\back.txt",
        "naïve résumé ✓.pdf",
        "../../etc/passwd",
        "a\r\nSet-Cookie: x=1",
    ] {
        let r = c
            .http
            .post(format!("{}/files", c.url))
            .query(&[("name", name)])
            .body(vec![7u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{name:?}");
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["name"], name, "the stored name is the given one");
        let id = json["id"].as_str().unwrap();
        let r = c
            .http
            .get(format!("{}/files/{id}", c.url))
            .send()
            .await
            .unwrap();
        let cd = r.headers()["content-disposition"]
            .to_str()
            .expect("header is visible ASCII")
            .to_string();
        assert!(cd.starts_with("attachment"), "{cd}");
        assert!(
            !cd.contains('/') || cd.contains("%2F"),
            "no path separator in a served name: {cd}"
        );
        assert!(!r.headers().contains_key("set-cookie"));
        assert_eq!(r.bytes().await.unwrap().as_ref(), &[7u8; 10]);
    }
}
