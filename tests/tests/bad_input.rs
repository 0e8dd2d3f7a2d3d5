//! Requests a careless or hostile client sends get a clear JSON error and store nothing.

mod common;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` and `body` on a fresh connection and reads the whole answer (the request
/// says `Connection: close`).
async fn raw_exchange(c: &TestCluster, head: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let addr = c.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    // The gateway may answer before reading the body and close; a failed write is fine then.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_else(|| panic!("no JSON body in {text:?}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_transfer_coding_is_refused_not_stored_encoded() {
    let mut c = TestCluster::start(ClusterOptions::default()).await;
    let token = c.admin_token().await;
    // One chunk of "gzip" bytes: hyper removes the chunked framing and would hand the gzip
    // stream through as if it were the file.
    let payload = b"\x1f\x8b\x08\x00compressed";
    let body = format!("{:x}\r\n", payload.len()).into_bytes();
    let body = [body.as_slice(), payload, b"\r\n0\r\n\r\n"].concat();
    let head = format!(
        "POST /files?name=z.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    );
    let (status, json) = bounded("gzip upload", raw_exchange(&c, &head, &body)).await;
    assert_eq!(status, 501, "{json}");
    assert_eq!(json["error"], "not_implemented");
    assert!(
        json["message"].as_str().unwrap_or("").contains("gzip"),
        "{json}"
    );
    assert!(list_ids(&c).await.is_empty(), "nothing may be stored");
    // Refusals, panics and the orphan reconciler all show in /metrics.
    let text = metrics_text(&c).await;
    for line in [
        "sixfold_errors_total{kind=\"not_implemented\"} 1",
        "sixfold_http_panics_total 0",
        "sixfold_orphans_quarantined_total 0",
        "sixfold_orphans_deleted_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_file_name_obeys_the_same_limit_as_every_name() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let upload = |name: String| {
        let part = reqwest::multipart::Part::bytes(vec![5u8; 1000]).file_name(name);
        c.http
            .post(format!("{}/files", c.url))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    let r = upload("n".repeat(100 * 1024)).await.expect("request");
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(list_ids(&c).await.is_empty(), "nothing may be stored");

    // At the limit (in bytes: 512 two-byte characters) the name is kept whole.
    let name = "é".repeat(512);
    let r = upload(name.clone()).await.expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(meta(&c, &id).await["name"], name.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_file_name_header_round_trips() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    // Raw UTF-8 bytes in X-File-Name: "résumé.pdf" once panicked the handler (a slice inside
    // the two bytes of "é").
    let name = "résumé.pdf";
    let value = reqwest::header::HeaderValue::from_bytes(name.as_bytes()).expect("value");
    let r = c
        .http
        .post(format!("{}/files", c.url))
        .header("x-file-name", value)
        .body(vec![1u8; 100])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(meta(&c, &id).await["name"], name);
}
