//! The HTTP API end to end in one process: a real listener on 127.0.0.1:0, real metadata, and
//! the in-memory chunk store standing in for the nodes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use xxhash_rust::xxh3::xxh3_128;

use super::{AppState, router};
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::node_client::memory::{Fault, MemoryNodes};
use crate::split::SplitPolicy;
use crate::upload::UploadSettings;
use crate::upload::spool_budget::SpoolBudget;

/// Small parts so that multi-part files stay small in tests.
const MIN_PART: u64 = 1024;

struct Server {
    base: String,
    client: reqwest::Client,
    /// `Authorization: Bearer <admin token>\r\n`, for requests written by hand.
    auth_line: String,
    store: MemoryNodes,
    meta: Meta,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn start(nodes: usize) -> Server {
        Self::start_with(nodes, |_| {}).await
    }

    async fn start_with(nodes: usize, tweak: impl FnOnce(&mut UploadSettings)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("meta");
        let store = MemoryNodes::with_nodes(nodes);
        let mut settings = UploadSettings {
            max_file_size: 1 << 30,
            split: SplitPolicy {
                part_count: 6,
                min_part_size: MIN_PART,
            },
            spool_memory_bytes: 64 * 1024,
            spool_budget: SpoolBudget::new(u64::MAX),
            spool_dir: dir.path().join("spool"),
            session_ttl: Duration::from_secs(3600),
            body_idle_timeout: Duration::from_secs(30),
            gateway_id: None,
        };
        tweak(&mut settings);
        let state = AppState::new(
            Arc::new(meta.clone()),
            Arc::new(store.clone()),
            Arc::new(Metrics::new()),
            settings,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router(state, axum::Router::new()))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        // An admin key for every request of these tests; the access tests use their own.
        let key =
            crate::auth::AccessKey::generate("tests", crate::auth::Scope::Admin, 0).expect("key");
        meta.insert_key(&key).expect("insert key");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", key.token().expose())
                .parse()
                .expect("header"),
        );
        let auth_line = format!("Authorization: Bearer {}\r\n", key.token().expose());
        Server {
            base: format!("http://{addr}"),
            auth_line,
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
            store,
            meta,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn upload(&self, name: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/files"))
            .header("x-file-name", name)
            .header("content-type", "application/x-test")
            .body(body)
            .send()
            .await
            .expect("upload request")
    }

    async fn upload_ok(&self, name: &str, body: Vec<u8>) -> Value {
        let response = self.upload(name, body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    fn sessions(&self) -> u64 {
        self.meta.session_count().expect("sessions")
    }

    fn files(&self) -> u64 {
        self.meta.file_count().expect("files")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (((i as u64 * 2_654_435_761) >> 7) as u8) ^ seed)
        .collect()
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let json: Value = response.json().await.expect("error json");
    assert!(json["message"].is_string(), "{json}");
    (status, json["error"].as_str().expect("code").to_owned())
}

#[tokio::test]
async fn raw_upload_then_download_whole_and_ranges() {
    let server = Server::start(7).await;
    let body = data(10 * MIN_PART as usize + 123, 1);
    let response = server.upload("report \"v2\".bin", body.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let json: Value = response.json().await.expect("json");
    let id = json["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/files/{id}"));
    assert_eq!(json["size"], body.len() as u64);
    assert_eq!(json["parts"], 6);
    assert_eq!(json["name"], "report \"v2\".bin");
    let checksum = format!("{:032x}", xxh3_128(&body));
    assert_eq!(json["checksum"], checksum.as_str());
    assert_eq!(server.store.chunk_count(), 6);
    assert_eq!(server.sessions(), 0);

    let response = server.get(&location).await;
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers().clone();
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    assert_eq!(h["content-type"], "application/x-test");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["etag"], format!("\"{checksum}\"").as_str());
    assert!(
        h["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment; filename=\"report 'v2'.bin\"")
    );
    assert_eq!(response.bytes().await.expect("body"), body);

    // The alias serves the same bytes.
    let response = server.get(&format!("/download/{id}")).await;
    assert_eq!(response.bytes().await.expect("body"), body);

    // Ranges: across part boundaries, open, suffix.
    let len = body.len();
    for (range, from, to) in [
        ("bytes=1000-5000", 1000, 5000),
        ("bytes=0-0", 0, 0),
        ("bytes=9000-", 9000, len - 1),
        ("bytes=-77", len - 77, len - 1),
        ("bytes=5-999999999", 5, len - 1),
    ] {
        let response = server
            .client
            .get(server.url(&location))
            .header("range", range)
            .send()
            .await
            .expect("range");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {from}-{to}/{len}").as_str()
        );
        assert_eq!(
            response.bytes().await.expect("body"),
            &body[from..=to],
            "{range}"
        );
    }
    // Unsatisfiable: 416 with the size.
    let response = server
        .client
        .get(server.url(&location))
        .header("range", format!("bytes={len}-"))
        .send()
        .await
        .expect("range");
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable".into()
        )
    );
    // Several ranges: the whole file.
    let response = server
        .client
        .get(server.url(&location))
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("body"), body);
    // If-Range with another validator: the whole file.
    let response = server
        .client
        .get(server.url(&location))
        .header("range", "bytes=0-1")
        .header("if-range", "\"other\"")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), StatusCode::OK);

    // HEAD: the same headers, no body.
    let response = server
        .client
        .head(server.url(&location))
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        len.to_string().as_str()
    );
    assert_eq!(
        response.headers()["etag"],
        format!("\"{checksum}\"").as_str()
    );
    assert!(response.bytes().await.expect("empty").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn meta_list_and_delete() {
    let server = Server::start(6).await;
    let a = server.upload_ok("a.txt", data(3000, 2)).await;
    let b = server.upload_ok("b.txt", data(10, 3)).await;
    let c = server.upload_ok("empty", Vec::new()).await;
    assert_eq!(c["parts"], 0);
    assert_eq!(b["parts"], 1);
    let a_id = a["id"].as_str().expect("id");

    let meta: Value = server
        .get(&format!("/files/{a_id}/meta"))
        .await
        .json()
        .await
        .expect("meta");
    assert_eq!(meta["size"], 3000);
    assert_eq!(meta["content_type"], "application/x-test");
    assert!(meta["created"].as_str().expect("created").ends_with('Z'));
    let parts = meta["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 3);
    let body = data(3000, 2);
    let mut offset = 0;
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["index"], i as u64);
        assert_eq!(p["offset"], offset);
        let len = p["length"].as_u64().expect("length");
        assert_eq!(
            p["crc32c"],
            u64::from(crc32c::crc32c(
                &body[offset as usize..(offset + len) as usize]
            ))
        );
        assert!(p["node_id"].is_string());
        offset += len;
    }
    assert_eq!(offset, 3000);

    // Paging: 2 at a time.
    let page: Value = server
        .get("/files?limit=2")
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(page["files"].as_array().expect("files").len(), 2);
    let after = page["next_after"].as_str().expect("next").to_owned();
    let page: Value = server
        .get(&format!("/files?limit=2&after={after}"))
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(page["files"].as_array().expect("files").len(), 1);
    assert!(page["next_after"].is_null());
    let all: Value = server.get("/files").await.json().await.expect("list");
    assert_eq!(all["files"].as_array().expect("files").len(), 3);
    assert_eq!(
        error_code(server.get("/files?limit=0").await).await.1,
        "bad_request"
    );
    assert_eq!(
        error_code(server.get("/files?after=xyz").await).await.1,
        "invalid_id"
    );

    // Empty file downloads as zero bytes.
    let c_id = c["id"].as_str().expect("id");
    let response = server.get(&format!("/files/{c_id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.expect("body").is_empty());

    // Delete: 204, then gone everywhere. Every node is up, so the chunks are gone from them
    // before the answer, nothing is left queued and the cleanup has nothing to do.
    let wakes = server.store.wakes();
    let chunks = server.store.chunk_count();
    let response = server
        .client
        .delete(server.url(&format!("/files/{a_id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.store.chunk_count(), chunks - 3);
    assert_eq!(server.store.wakes(), wakes);
    assert_eq!(server.meta.delete_queue_len().expect("queue"), 0);
    assert_eq!(
        error_code(server.get(&format!("/files/{a_id}")).await).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let response = server
        .client
        .delete(server.url(&format!("/files/{a_id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.files(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_delete_with_a_node_down_deletes_the_other_parts_now_and_queues_the_rest() {
    let server = Server::start(6).await;
    let a = server.upload_ok("a.txt", data(3000, 2)).await;
    let a_id = a["id"].as_str().expect("id");
    let meta: Value = server
        .get(&format!("/files/{a_id}/meta"))
        .await
        .json()
        .await
        .expect("meta");
    let down: uuid::Uuid = meta["parts"][1]["node_id"]
        .as_str()
        .expect("node")
        .parse()
        .expect("uuid");
    server.store.set_up(down, false);
    let wakes = server.store.wakes();
    let chunks = server.store.chunk_count();
    let response = server
        .client
        .delete(server.url(&format!("/files/{a_id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.store.chunk_count(), chunks - 2);
    assert_eq!(server.meta.delete_queue_len().expect("queue"), 1);
    assert_eq!(
        server.store.wakes(),
        wakes + 1,
        "the cleanup is woken for the rest"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_ids_unknown_ids_and_routes() {
    let server = Server::start(6).await;
    for path in ["/files/not-a-uuid", "/files/123/meta", "/download/zz"] {
        assert_eq!(
            error_code(server.get(path).await).await,
            (StatusCode::BAD_REQUEST, "invalid_id".into()),
            "{path}"
        );
    }
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/files/{unknown}"),
        format!("/files/{unknown}/meta"),
    ] {
        assert_eq!(
            error_code(server.get(&path).await).await,
            (StatusCode::NOT_FOUND, "not_found".into())
        );
    }
    assert_eq!(
        error_code(server.get("/nope").await).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let response = server
        .client
        .put(server.url("/files"))
        .send()
        .await
        .expect("put");
    assert_eq!(error_code(response).await.0, StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await;
}

#[tokio::test]
async fn chunked_upload_spools_to_disk_and_round_trips() {
    let server = Server::start(6).await;
    let body = data(300_000, 4);
    let frames: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(7000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let response = server
        .client
        .post(server.url("/upload?name=streamed.dat"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            frames,
        )))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let json: Value = response.json().await.expect("json");
    assert_eq!(json["name"], "streamed.dat");
    assert_eq!(json["size"], body.len() as u64);
    assert_eq!(json["parts"], 6);
    assert_eq!(
        json["checksum"],
        format!("{:032x}", xxh3_128(&body)).as_str()
    );
    let id = json["id"].as_str().expect("id");
    let got = server
        .get(&format!("/files/{id}"))
        .await
        .bytes()
        .await
        .expect("body");
    assert_eq!(got, body);
    // The spool is gone once the upload is done.
    let spool = server.dir.path().join("spool");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0);
    server.stop().await;
}

#[tokio::test]
async fn multipart_upload_takes_name_and_type_from_the_field() {
    let server = Server::start(6).await;
    // Larger than axum's default 2 MB body limit, which the upload routes must not apply.
    let file = data(3 << 20, 5);
    let boundary = "XyZ-boundary-42";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n")
            .as_bytes(),
    );
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"photo é.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(&file);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = server
        .client
        .post(server.url("/files"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let json: Value = response.json().await.expect("json");
    assert_eq!(json["name"], "photo é.jpg");
    assert_eq!(json["content_type"], "image/jpeg");
    assert_eq!(json["size"], 3 << 20);
    assert_eq!(
        json["checksum"],
        format!("{:032x}", xxh3_128(&file)).as_str()
    );
    let id = json["id"].as_str().expect("id");
    let response = server.get(&format!("/files/{id}")).await;
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''photo%20%C3%A9.jpg"),
        "{disposition}"
    );
    assert_eq!(response.bytes().await.expect("body"), file);

    // A form without a file field is a bad request and stores nothing.
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--{boundary}--\r\n"
    );
    let response = server
        .client
        .post(server.url("/files"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    assert_eq!(server.files(), 1);
    server.stop().await;
}

#[tokio::test]
async fn size_limit_from_content_length_and_while_streaming() {
    let server = Server::start_with(6, |s| s.max_file_size = 10_000).await;
    let response = server.upload("big", data(10_001, 6)).await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into())
    );
    // A client still streaming a large body gets the 413, not a reset connection: the gateway
    // drains what it refused.
    let big = 8usize << 20;
    let frames: Vec<Result<Bytes, std::io::Error>> = (0..big / 65536)
        .map(|_| Ok(Bytes::from(vec![3u8; 65536])))
        .collect();
    let response = server
        .client
        .post(server.url("/files"))
        .header("content-length", big)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            frames,
        )))
        .send()
        .await
        .expect("the response arrives, not a broken pipe");
    assert_eq!(
        error_code(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into())
    );
    // Exactly the limit is fine.
    server.upload_ok("fits", data(10_000, 6)).await;
    // Without a length: refused once the stream passes the limit.
    let frames: Vec<Result<Bytes, std::io::Error>> =
        (0..20).map(|_| Ok(Bytes::from(vec![1u8; 1000]))).collect();
    let response = server
        .client
        .post(server.url("/files"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            frames,
        )))
        .send()
        .await
        .expect("upload");
    assert_eq!(
        error_code(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into())
    );
    assert_eq!(server.files(), 1);
    assert_eq!(server.sessions(), 0);
    server.stop().await;
}

#[tokio::test]
async fn not_enough_nodes_is_503_and_health_follows() {
    let server = Server::start(6).await;
    let health = server.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    let json: Value = health.json().await.expect("json");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["nodes_up"], 6);

    server.store.set_up(server.store.node_ids()[0], false);
    let health = server.get("/health").await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let json: Value = health.json().await.expect("json");
    assert_eq!(json["error"], "not_enough_nodes");
    assert_eq!(json["nodes_up"], 5);

    // A six-part file needs six nodes; nothing is stored or left behind.
    let response = server.upload("x", data(6 * MIN_PART as usize, 7)).await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "not_enough_nodes".into())
    );
    // Also when the refused body is large and still streaming.
    let frames: Vec<Result<Bytes, std::io::Error>> = (0..128)
        .map(|_| Ok(Bytes::from(vec![4u8; 65536])))
        .collect();
    let response = server
        .client
        .post(server.url("/files"))
        .header("content-length", 128 * 65536)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            frames,
        )))
        .send()
        .await
        .expect("the response arrives, not a broken pipe");
    assert_eq!(
        error_code(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "not_enough_nodes".into())
    );
    assert_eq!(server.store.chunk_count(), 0);
    assert_eq!(server.sessions(), 0);
    // A small file fits on the nodes that are up.
    server.upload_ok("small", data(100, 7)).await;
    server.stop().await;
}

#[tokio::test]
async fn no_room_is_507() {
    let server = Server::start(6).await;
    server.store.set_capacity_all(100);
    let response = server.upload("x", data(6 * MIN_PART as usize, 8)).await;
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage".into()
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn node_failures_abort_the_upload_and_leave_no_file() {
    for fault in [Fault::FailWrites, Fault::WrongAckCrc] {
        let server = Server::start(6).await;
        for node in server.store.node_ids() {
            server.store.set_fault(node, fault);
        }
        let wakes = server.store.wakes();
        let response = server.upload("x", data(8 * MIN_PART as usize, 9)).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_GATEWAY, "node_error".into()),
            "{fault:?}"
        );
        assert_eq!(server.files(), 0);
        assert_eq!(server.sessions(), 0, "{fault:?}: session aborted");
        assert!(server.store.wakes() > wakes, "{fault:?}: cleanup woken");
        let list: Value = server.get("/files").await.json().await.expect("list");
        assert!(list["files"].as_array().expect("files").is_empty());
        server.stop().await;
    }
}

#[tokio::test]
async fn corrupt_or_failing_reads_cut_the_response() {
    for fault in [Fault::CorruptReads, Fault::FailReadsMidway] {
        let server = Server::start(6).await;
        let body = data(20 * MIN_PART as usize, 10);
        let json = server.upload_ok("x", body.clone()).await;
        let id = json["id"].as_str().expect("id");
        for node in server.store.node_ids() {
            server.store.set_fault(node, fault);
        }
        let response = server.get(&format!("/files/{id}")).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{fault:?}: headers went out first"
        );
        let read = response.bytes().await;
        assert!(read.is_err(), "{fault:?}: the body must not complete");
        let metrics = server.get("/metrics").await.text().await.expect("metrics");
        if fault == Fault::CorruptReads {
            assert!(
                metrics.contains("sixfold_checksum_mismatches_total 1"),
                "{metrics}"
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn nodes_and_metrics_endpoints() {
    let server = Server::start(6).await;
    server.upload_ok("m", data(2000, 11)).await;
    let nodes: Value = server.get("/nodes").await.json().await.expect("nodes");
    assert_eq!(nodes.as_array().expect("array").len(), 6);
    let response = server.get("/metrics").await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    assert!(
        text.contains("sixfold_uploads_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("sixfold_bytes_in_total 2000"), "{text}");
    assert!(text.contains("sixfold_files 1"), "{text}");
    assert!(text.contains("sixfold_node_used_bytes{node="), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn client_disconnect_mid_body_aborts_the_session() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(6).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\n{}Content-Length: 100000\r\nX-File-Name: cut\r\n\r\n",
        server.auth_line
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&data(30_000, 12)).await.expect("some body");
    tcp.flush().await.expect("flush");
    // Wait until the upload is under way (its session recorded), then vanish.
    for _ in 0..500 {
        if server.sessions() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.sessions(), 1, "the upload started");
    drop(tcp);
    // The abort removes the session, then wakes the cleanup: wait for both states.
    for _ in 0..500 {
        if server.sessions() == 0 && server.store.wakes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.sessions(), 0, "the session was aborted");
    assert_eq!(server.files(), 0);
    assert!(server.store.wakes() > 0, "the cleanup was woken");
    server.stop().await;
}

/// Reads from `tcp` until `needle` was seen (or the connection ends); returns what was read.
async fn read_until(tcp: &mut tokio::net::TcpStream, needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains(needle) {
            return text;
        }
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return text,
        }
    }
}

#[tokio::test]
async fn a_refused_body_is_drained_so_the_connection_survives() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start_with(6, |s| s.max_file_size = 1000).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let len = 4 << 20;
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\n{}Content-Length: {len}\r\n\r\n",
        server.auth_line
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    // The refusal comes before any body byte is sent.
    let response = read_until(&mut tcp, "}").await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // The client, unaware, sends the whole body; the gateway reads and discards it, so the
    // connection is neither reset nor closed under the client.
    let chunk = vec![5u8; 64 * 1024];
    for _ in 0..len / chunk.len() {
        tcp.write_all(&chunk)
            .await
            .expect("the gateway keeps reading the refused body");
    }
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("next request");
    let next = read_until(&mut tcp, "nodes_needed").await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    server.stop().await;
}

/// A form around `file`: a text field before it, the file field, a text field after it.
fn form_around(boundary: &str, file: &[u8], name: &str) -> Vec<u8> {
    let mut form = Vec::new();
    form.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"before\"\r\n\r\nfirst\r\n")
            .as_bytes(),
    );
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/x-form-test\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(file);
    form.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nlast\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    form
}

impl Server {
    /// Posts `form` with a Content-Length, in frames of the given sizes (cycled).
    async fn post_form(&self, boundary: &str, form: Vec<u8>, cuts: &[usize]) -> reqwest::Response {
        let mut frames: Vec<Result<Bytes, std::io::Error>> = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < form.len() {
            let n = (*cut.next().expect("cuts")).min(form.len() - at);
            frames.push(Ok(Bytes::copy_from_slice(&form[at..at + n])));
            at += n;
        }
        self.client
            .post(self.url("/files"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary=\"{boundary}\""),
            )
            .header("content-length", form.len())
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                frames,
            )))
            .send()
            .await
            .expect("upload")
    }

    fn spool_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("spool"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Uploads `file` as a form in awkward frames and checks what comes back: the whole file, its
/// meta, and ranges around every part boundary.
async fn form_round_trip(server: &Server, file: &[u8], cuts: &[usize]) -> Value {
    let boundary = "form;boundary-77";
    let form = form_around(boundary, file, "f.bin");
    let response = server.post_form(boundary, form, cuts).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{} bytes",
        file.len()
    );
    let json: Value = response.json().await.expect("json");
    assert_eq!(json["size"], file.len() as u64);
    assert_eq!(json["name"], "f.bin");
    assert_eq!(json["content_type"], "application/x-form-test");
    assert_eq!(
        json["checksum"],
        format!("{:032x}", xxh3_128(file)).as_str()
    );
    let id = json["id"].as_str().expect("id").to_owned();
    let got = server
        .get(&format!("/files/{id}"))
        .await
        .bytes()
        .await
        .expect("body");
    assert!(got == file, "{} bytes differ", file.len());
    let meta: Value = server
        .get(&format!("/files/{id}/meta"))
        .await
        .json()
        .await
        .expect("meta");
    assert_eq!(meta["size"], file.len() as u64);
    let parts = meta["parts"].as_array().expect("parts");
    // The parts tile the file; only the last one(s) store more (the form's end).
    let mut offset = 0;
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["offset"], offset, "part {i}");
        offset += p["length"].as_u64().expect("length");
        if let Some(stored) = p["stored_length"].as_u64() {
            assert!(stored > p["length"].as_u64().expect("length"));
            assert!(
                parts[i + 1..]
                    .iter()
                    .all(|q| q["stored_length"].as_u64().is_some() && q["length"] == 0),
                "only parts at the end hold the trailer: {meta}"
            );
        }
    }
    assert_eq!(offset, file.len() as u64);
    let last_with_bytes = parts.iter().rev().find(|p| p["length"] != 0);
    assert!(
        parts
            .last()
            .and_then(|p| p["stored_length"].as_u64())
            .is_some()
            || parts.is_empty(),
        "the last part absorbs the closing boundary: {meta}"
    );
    // Ranges across each part boundary and the file's end.
    if let Some(last) = last_with_bytes {
        let end = file.len() as u64;
        let edges: Vec<u64> = parts
            .iter()
            .map(|p| p["offset"].as_u64().expect("offset"))
            .chain([last["offset"].as_u64().expect("offset"), end])
            .collect();
        for edge in edges {
            let from = edge.saturating_sub(3);
            let to = (edge + 2).min(end - 1);
            if from > to {
                continue;
            }
            let response = server
                .client
                .get(server.url(&format!("/files/{id}")))
                .header("range", format!("bytes={from}-{to}"))
                .send()
                .await
                .expect("range");
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
            let got = response.bytes().await.expect("range body");
            assert_eq!(got, &file[from as usize..=to as usize], "{from}-{to}");
        }
    }
    json
}

#[tokio::test]
async fn multipart_with_a_length_streams_with_fields_before_and_after() {
    let server = Server::start(6).await;
    let d = "\r\n--form;boundary-77".len();
    // Frames cut around the delimiter in every way, a file that lands exactly on part
    // boundaries (1, 2, 6 min-parts), files smaller than the delimiter, an empty one.
    let sizes = [
        0,
        1,
        d - 1,
        d,
        MIN_PART as usize,
        2 * MIN_PART as usize,
        6 * MIN_PART as usize,
        6 * MIN_PART as usize + 5,
        300_000,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let mut file = data(size, 20 + i as u8);
        // Bytes that look like the start of the delimiter inside the file.
        if size > 40 {
            file[size - 30..size - 10].copy_from_slice(b"\r\n--form;boundary-7X");
        }
        for cuts in [&[1usize][..], &[7, 3, 11], &[d - 1, d + 1], &[65536]] {
            if size > 10_000 && cuts[0] < 10 {
                continue;
            }
            let json = form_round_trip(&server, &file, cuts).await;
            if size == 0 {
                // One part holding only the form's end.
                assert_eq!(json["parts"], 1);
            }
        }
    }
    // Nothing was spooled and nothing is left open.
    assert_eq!(server.spool_files(), 0);
    assert_eq!(server.sessions(), 0);
    server.stop().await;
}

#[tokio::test]
async fn multipart_with_a_length_starts_storing_before_the_body_ends() {
    use tokio::io::AsyncWriteExt;
    // Spooling would need a file for anything past 64 KiB.
    let server = Server::start(6).await;
    let boundary = "b0und";
    let file = data(400_000, 31);
    let form = form_around(boundary, &file, "slow.bin");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\n{}Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        server.auth_line,
        form.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let half = form.len() / 2;
    tcp.write_all(&form[..half]).await.expect("first half");
    tcp.flush().await.expect("flush");
    // The session (planned from Content-Length) is recorded while half the body is unsent; a
    // spooled form would only begin its session at the body's end.
    for _ in 0..500 {
        if server.sessions() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        server.sessions(),
        1,
        "the upload began before the body ended"
    );
    assert_eq!(server.spool_files(), 0, "nothing spooled");
    tcp.write_all(&form[half..]).await.expect("second half");
    let response = read_until(&mut tcp, "}").await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(server.files(), 1);
    assert_eq!(server.sessions(), 0);
    server.stop().await;
}

#[tokio::test]
async fn bad_streamed_forms_are_refused_and_leave_nothing() {
    let server = Server::start_with(6, |s| s.max_file_size = 200_000).await;
    let boundary = "XyZ";
    let file = data(150_000, 40);
    let whole = form_around(boundary, &file, "x.bin");
    let file_end = whole.len()
        - "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nlast\r\n--XyZ--\r\n"
            .len();
    let mut second_file = whole[..file_end].to_vec();
    second_file.extend_from_slice(
        b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"two\"; filename=\"2.bin\"\r\n\r\nzz\r\n--XyZ--\r\n",
    );
    // Within the Content-Length allowance, but more than a trailer may hold.
    let mut huge_epilogue = form_around(boundary, &data(10_000, 42), "e.bin");
    huge_epilogue.extend_from_slice(&vec![b'e'; 140_000]);
    let mut no_closing = whole[..file_end].to_vec();
    no_closing.extend_from_slice(
        b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nla",
    );
    let mut too_large = form_around(boundary, &data(200_001, 41), "big.bin");
    let fits = form_around(boundary, &data(200_000, 41), "fits.bin");
    let wakes = server.store.wakes();
    let cases: [(&str, Vec<u8>, StatusCode); 6] = [
        // Cut inside the file: the body ends before the file's closing delimiter.
        (
            "cut in the file",
            whole[..file_end - 10].to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        ("cut after the file", no_closing, StatusCode::BAD_REQUEST),
        ("second file", second_file, StatusCode::BAD_REQUEST),
        ("huge epilogue", huge_epilogue, StatusCode::BAD_REQUEST),
        (
            "file over the limit",
            std::mem::take(&mut too_large),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "no file field",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nx\r\n--XyZ--\r\n".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, body, status) in cases {
        let response = server.post_form(boundary, body, &[4096]).await;
        assert_eq!(error_code(response).await.0, status, "{what}");
        assert_eq!(server.files(), 0, "{what}");
        assert_eq!(server.sessions(), 0, "{what}: session aborted");
    }
    // The uploads that had begun queued their chunks for deletion and woke the cleanup.
    assert!(server.store.wakes() > wakes);
    assert!(server.meta.delete_queue_len().expect("queue") > 0);
    // A form with no boundary parameter is refused before reading.
    let response = server
        .client
        .post(server.url("/files"))
        .header("content-type", "multipart/form-data")
        .body("x")
        .send()
        .await
        .expect("upload");
    assert_eq!(error_code(response).await.0, StatusCode::BAD_REQUEST);
    // Exactly the limit is fine.
    let response = server.post_form(boundary, fits, &[4096]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(server.spool_files(), 0);
    server.stop().await;
}

#[tokio::test]
async fn requests_without_credentials_are_refused_before_any_handler_runs() {
    let server = Server::start(6).await;
    let anonymous = reqwest::Client::new();
    let r = anonymous
        .get(server.url("/files"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"sixfold\"");
    let json: Value = r.json().await.expect("json");
    assert_eq!(json["error"], "unauthorized");
    // An upload refused at the edge never starts a session.
    let r = anonymous
        .post(server.url("/files"))
        .body(vec![1u8; 10_000])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((server.sessions(), server.files()), (0, 0));
    // Unknown routes: 401 to the anonymous, the router's 404 to a key holder.
    let r = anonymous
        .get(server.url("/nope"))
        .send()
        .await
        .expect("nope");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.get("/nope").await.status(), StatusCode::NOT_FOUND);
    // A read key: 403 for uploads, and counted.
    let key = crate::auth::AccessKey::generate("r", crate::auth::Scope::Read, 0).expect("key");
    server.meta.insert_key(&key).expect("insert");
    let r = anonymous
        .post(server.url("/files"))
        .bearer_auth(key.token().expose())
        .body(vec![1u8; 100])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let metrics = server.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("sixfold_errors_total{kind=\"unauthorized\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sixfold_errors_total{kind=\"forbidden\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

/// The edge names endpoints from the raw path, as the router matches them: a percent-encoded
/// path cannot reach a handler under a smaller endpoint's scope.
#[tokio::test]
async fn encoded_paths_do_not_slip_past_the_edge() {
    let server = Server::start(6).await;
    let key = crate::auth::AccessKey::generate("r", crate::auth::Scope::Read, 0).expect("key");
    server.meta.insert_key(&key).expect("insert");
    let reader = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::POST, "/fil%65s"),
        (reqwest::Method::POST, "/%66iles"),
        (reqwest::Method::POST, "/upload%2F"),
        (reqwest::Method::GET, "/admin/%6beys"),
        (reqwest::Method::POST, "/admin/keys%2F"),
    ] {
        let r = reader
            .request(method.clone(), server.url(path))
            .bearer_auth(key.token().expose())
            .body(vec![1u8; 10])
            .send()
            .await
            .expect("request");
        assert!(
            matches!(r.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "{method} {path}: {}",
            r.status()
        );
    }
    assert_eq!(server.files(), 0);
    server.stop().await;
}
