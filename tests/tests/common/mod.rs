//! Helpers shared by the end-to-end test files: upload and download through the HTTP API and
//! verify bytes against the deterministic pattern.

#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::Value;
use sixfold_tests::{Pattern, TestCluster};

pub const MIB: u64 = 1 << 20;

/// Uploads `len` pattern bytes as a raw body with a known length; returns (status, json).
pub async fn upload_raw(c: &TestCluster, name: &str, p: Pattern, len: u64) -> (StatusCode, Value) {
    let body = reqwest::Body::wrap_stream(p.stream(len, 256 * 1024));
    let resp = c
        .http
        .post(format!("{}/files", c.url))
        .header("X-File-Name", name)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len)
        .body(body)
        .send()
        .await
        .expect("upload request");
    let status = resp.status();
    let json = resp.json().await.unwrap_or(Value::Null);
    (status, json)
}

/// Uploads and asserts 201; returns the file id.
pub async fn upload_ok(c: &TestCluster, name: &str, p: Pattern, len: u64) -> String {
    let (status, json) = upload_raw(c, name, p, len).await;
    assert_eq!(status, StatusCode::CREATED, "upload of {len} bytes: {json}");
    assert_eq!(json["size"], len, "{json}");
    assert_eq!(json["name"], name, "{json}");
    json["id"].as_str().expect("id").to_string()
}

/// Downloads a file (optionally a range) and returns status, headers and the body.
pub async fn download(
    c: &TestCluster,
    id: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = c.http.get(format!("{}/files/{id}", c.url));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.expect("download request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("download body").to_vec();
    (status, headers, body)
}

/// Downloads the whole file and asserts every byte matches the pattern.
pub async fn assert_download_matches(c: &TestCluster, id: &str, p: Pattern, len: u64) {
    let (status, headers, body) = download(c, id, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"].to_str().unwrap(), len.to_string());
    assert_eq!(body.len() as u64, len);
    assert_eq!(
        p.first_mismatch(0, &body),
        None,
        "downloaded bytes differ from uploaded ones"
    );
}

pub async fn meta(c: &TestCluster, id: &str) -> Value {
    c.http
        .get(format!("{}/files/{id}/meta", c.url))
        .send()
        .await
        .expect("meta request")
        .json()
        .await
        .expect("meta json")
}

pub async fn list_ids(c: &TestCluster) -> Vec<String> {
    let v: Value = c
        .http
        .get(format!("{}/files?limit=1000", c.url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    v["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect()
}

/// Asserts an error response: status and the JSON `error` code, with a human message.
pub async fn assert_error(resp: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status);
    let json: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(json["error"], code, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
}

/// Expected part lengths per the splitting rule (6 parts, 1 MiB minimum).
pub fn expected_parts(size: u64) -> Vec<u64> {
    if size == 0 {
        return vec![];
    }
    let (count, part) = if size >= 6 * MIB {
        (6, size.div_ceil(6))
    } else {
        (size.div_ceil(MIB), MIB)
    };
    (0..count)
        .map(|i| {
            if i + 1 < count {
                part
            } else {
                size - part * (count - 1)
            }
        })
        .collect()
}
