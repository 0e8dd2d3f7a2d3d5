//! The run loop against a small in-memory stand-in of the gateway's HTTP API (DESIGN.md §2),
//! until the real gateway exists: uploads with a known length, verified downloads, and the
//! errors (HTTP codes, flipped bytes, cut bodies) ending up in the report.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sixfold_bench::soak::mix::Mix;
use sixfold_bench::soak::sizes::SizeDist;
use sixfold_bench::{Config, Mode, Report, SoakConfig, SoakReport, run, soak};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Behaviour {
    /// Answer every upload with 503 not_enough_nodes after reading the body.
    refuse_uploads: bool,
    /// Answer every upload with 503 at once, without reading the body.
    refuse_early: bool,
    /// Flip the byte at this offset of every download.
    flip_at: Option<usize>,
    /// Send only this many bytes of every download, then break the connection.
    cut_at: Option<usize>,
    /// Answer every n-th request (of any kind) with `503 busy` and this `Retry-After`, as
    /// the gateway's admission control does. Uploads are read first, so the client always
    /// gets to see the answer.
    busy_every: Option<(u64, u64)>,
}

#[derive(Default)]
struct Gateway {
    files: Mutex<HashMap<String, Bytes>>,
    next_id: Mutex<u64>,
    behaviour: Behaviour,
    deleted: Mutex<u64>,
    requests: Mutex<u64>,
    busy_sent: Mutex<u64>,
    /// The most files stored at once.
    peak_files: Mutex<usize>,
}

impl Gateway {
    /// `503 busy` for this request, when the behaviour says so.
    fn busy(&self) -> Option<Response> {
        let (every, retry_after) = self.behaviour.busy_every?;
        let n = {
            let mut r = self.requests.lock().unwrap();
            *r += 1;
            *r
        };
        if !n.is_multiple_of(every) {
            return None;
        }
        *self.busy_sent.lock().unwrap() += 1;
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "at the concurrent upload limit",
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            retry_after.to_string().parse().unwrap(),
        );
        Some(resp)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, axum::Json(body)).into_response()
}

async fn upload(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    // The bench promises uploads with a known length.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return error(
            StatusCode::BAD_REQUEST,
            "chunked",
            "expected Content-Length",
        );
    }
    let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "no_length",
            "missing Content-Length",
        );
    };
    let Some(name) = headers.get("x-file-name").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::BAD_REQUEST, "no_name", "missing X-File-Name");
    };
    let name = name.to_string();
    if gw.behaviour.refuse_early {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_enough_nodes",
            "2 of 6 nodes up",
        );
    }
    let Ok(data) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::BAD_REQUEST, "body", "body failed");
    };
    if gw.behaviour.refuse_uploads {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_enough_nodes",
            "2 of 6 nodes up",
        );
    }
    if data.len() != len {
        return error(StatusCode::BAD_REQUEST, "length", "body length differs");
    }
    if let Some(busy) = gw.busy() {
        return busy;
    }
    let id = {
        let mut n = gw.next_id.lock().unwrap();
        *n += 1;
        format!("00000000-0000-4000-8000-{:012}", *n)
    };
    {
        let mut files = gw.files.lock().unwrap();
        files.insert(id.clone(), data);
        let mut peak = gw.peak_files.lock().unwrap();
        *peak = (*peak).max(files.len());
    }
    let body = serde_json::json!({
        "id": id, "name": name, "size": len, "parts": 6, "checksum": "not-checked",
    });
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/files/{id}"))],
        axum::Json(body),
    )
        .into_response()
}

async fn download(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    if let Some(busy) = gw.busy() {
        return busy;
    }
    let Some(data) = gw.files.lock().unwrap().get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such file");
    };
    let len = data.len();
    let mut data = data.to_vec();
    if let Some(at) = gw.behaviour.flip_at {
        data[at] ^= 0x40;
    }
    let body = match gw.behaviour.cut_at {
        Some(at) => {
            let head = Bytes::copy_from_slice(&data[..at]);
            let pieces: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(head),
                Err(std::io::Error::other("crc mismatch, cutting the body")),
            ];
            Body::from_stream(futures_util::stream::iter(pieces))
        }
        // Many small pieces, so the verifier sees chunk edges everywhere.
        None => {
            let pieces: Vec<Result<Bytes, std::io::Error>> = data
                .chunks(7919)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::from_stream(futures_util::stream::iter(pieces))
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, len)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap()
}

async fn delete(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    if let Some(busy) = gw.busy() {
        return busy;
    }
    match gw.files.lock().unwrap().remove(&id) {
        Some(_) => {
            *gw.deleted.lock().unwrap() += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such file"),
    }
}

/// Starts the stand-in on 127.0.0.1 at a free port; it stops with the test's runtime.
async fn start(behaviour: Behaviour) -> (String, Arc<Gateway>) {
    let gw = Arc::new(Gateway {
        behaviour,
        ..Default::default()
    });
    let app = Router::new()
        .route("/files", post(upload))
        .route("/files/{id}", get(download).delete(delete))
        .with_state(Arc::clone(&gw));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), gw)
}

fn config(gateway: &str, size: u64, files: u64, concurrency: usize) -> Config {
    let mut c = Config::new(gateway);
    c.size = size;
    c.files = files;
    c.concurrency = concurrency;
    c.seed = Some(1234);
    c.chunk_size = 64 << 10;
    c.stall_timeout = Some(Duration::from_secs(30));
    c
}

const SIZE: u64 = 3 * (1 << 20) + 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_verifies_every_byte() {
    let (url, gw) = start(Behaviour::default()).await;
    let mut cfg = config(&url, SIZE, 3, 2);
    cfg.delete_after = true;
    let r = run(&cfg).await.unwrap();
    assert!(r.is_ok(), "{:?}", r.errors);
    assert_eq!(r.verified_bytes, 3 * SIZE);
    assert_eq!(
        (r.upload.files_ok, r.upload.files_failed, r.upload.bytes),
        (3, 0, 3 * SIZE)
    );
    assert_eq!((r.download.files_ok, r.download.bytes), (3, 3 * SIZE));
    assert_eq!(r.upload.latency_ms.count, 3);
    assert_eq!(r.download.latency_ms.count, 3);
    assert!(r.upload.latency_ms.p50.is_some() && r.download.latency_ms.max.is_some());
    assert_eq!(r.config.seed, 1234);
    assert!(
        r.files
            .iter()
            .all(|f| f.id.is_some() && f.verified == Some(true))
    );
    assert_eq!(r.files[1].name, "sixfold-bench-1234-0001");
    // Deleted at the end.
    assert_eq!(*gw.deleted.lock().unwrap(), 3);
    assert!(gw.files.lock().unwrap().is_empty());
    // The report's JSON reads back.
    let json = serde_json::to_string(&r).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.verified_bytes, r.verified_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_content_is_what_the_generator_makes() {
    let (url, gw) = start(Behaviour::default()).await;
    let r = run(&config(&url, 100_000, 2, 1)).await.unwrap();
    assert!(r.is_ok(), "{:?}", r.errors);
    for f in &r.files {
        let stored = gw.files.lock().unwrap()[f.id.as_ref().unwrap()].clone();
        let mut expect = vec![0u8; 100_000];
        sixfold_bench::datagen::DataGen::for_file(1234, f.index).fill(0, &mut expect);
        assert_eq!(&stored[..], &expect[..], "file {}", f.index);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_an_error_at_its_offset() {
    let flip = 2_000_001usize;
    let (url, _gw) = start(Behaviour {
        flip_at: Some(flip),
        ..Default::default()
    })
    .await;
    let r = run(&config(&url, SIZE, 2, 2)).await.unwrap();
    assert!(!r.is_ok());
    assert_eq!(r.error_count, 2);
    for e in &r.errors {
        assert_eq!(
            (e.phase.as_str(), e.kind.as_str()),
            ("download", "mismatch")
        );
        assert_eq!(e.offset, Some(flip as u64));
        assert!(e.id.is_some());
    }
    assert_eq!(r.upload.files_ok, 2);
    assert_eq!((r.download.files_ok, r.download.files_failed), (0, 2));
    assert_eq!(
        r.verified_bytes,
        2 * flip as u64,
        "bytes before the flip verified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_body_is_a_short_body_error() {
    let (url, _gw) = start(Behaviour {
        cut_at: Some(1 << 20),
        ..Default::default()
    })
    .await;
    let r = run(&config(&url, SIZE, 1, 1)).await.unwrap();
    assert_eq!(r.error_count, 1, "{:?}", r.errors);
    let e = &r.errors[0];
    assert_eq!(
        (e.phase.as_str(), e.kind.as_str()),
        ("download", "short_body")
    );
    assert_eq!(r.download.files_failed, 1);
    assert!(r.verified_bytes <= 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_keep_status_and_code() {
    let (url, _gw) = start(Behaviour {
        refuse_uploads: true,
        ..Default::default()
    })
    .await;
    let r = run(&config(&url, SIZE, 3, 3)).await.unwrap();
    assert_eq!(r.error_count, 3);
    for e in &r.errors {
        assert_eq!(e.phase, "upload");
        assert_eq!(e.status, Some(503));
        assert_eq!(e.code.as_deref(), Some("not_enough_nodes"));
    }
    assert_eq!((r.upload.files_ok, r.upload.files_failed), (0, 3));
    // Nothing uploaded, so nothing downloaded.
    assert_eq!((r.download.files_ok, r.download.files_failed), (0, 0));
    assert_eq!(r.verified_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_is_an_error_whichever_way_it_arrives() {
    // A server that answers before reading the body and closes the connection may reset it
    // before the client reads the answer: the client then sees a broken pipe or a reset
    // instead of the 503. Either way it is an upload error, never a success or a hang.
    let (url, _gw) = start(Behaviour {
        refuse_early: true,
        ..Default::default()
    })
    .await;
    let r = run(&config(&url, SIZE, 4, 2)).await.unwrap();
    assert_eq!(r.error_count, 4);
    for e in &r.errors {
        assert_eq!(e.phase, "upload");
        assert!(e.status == Some(503) || e.kind == "transport", "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_is_a_transport_error_not_a_hang() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(&config(&format!("http://127.0.0.1:{port}"), 1000, 2, 1))
        .await
        .unwrap();
    assert_eq!(r.error_count, 2);
    assert!(
        r.errors.iter().all(|e| e.kind == "transport"),
        "{:?}",
        r.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_from_the_report() {
    let (url, _gw) = start(Behaviour::default()).await;
    let mut up = config(&url, 200_003, 3, 2);
    up.mode = Mode::Upload;
    up.seed = Some(77);
    let r1 = run(&up).await.unwrap();
    assert!(r1.is_ok(), "{:?}", r1.errors);
    assert!(!r1.download.ran);
    assert_eq!(r1.verified_bytes, 0);

    let earlier: Report = serde_json::from_str(&serde_json::to_string(&r1).unwrap()).unwrap();
    let mut down = config(&url, 0, 0, 2);
    down.mode = Mode::Download;
    down.existing = earlier.files;
    down.seed = Some(earlier.config.seed);
    let r2 = run(&down).await.unwrap();
    assert!(r2.is_ok(), "{:?}", r2.errors);
    assert!(!r2.upload.ran);
    assert_eq!(r2.download.files_ok, 3);
    assert_eq!(r2.verified_bytes, 3 * 200_003);

    // With the wrong seed every file fails verification.
    down.seed = Some(78);
    let r3 = run(&down).await.unwrap();
    assert_eq!(r3.error_count, 3);
    assert!(r3.errors.iter().all(|e| e.kind == "mismatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_file_roundtrip() {
    let (url, gw) = start(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.bin");
    let data: Vec<u8> = (0..1_234_567u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let mut cfg = config(&url, 1, 2, 2);
    cfg.source = Some(path.clone());
    let r = run(&cfg).await.unwrap();
    assert!(r.is_ok(), "{:?}", r.errors);
    assert_eq!(
        r.config.size,
        data.len() as u64,
        "the source's size replaces --size"
    );
    assert_eq!(r.verified_bytes, 2 * data.len() as u64);
    for f in &r.files {
        let stored = gw.files.lock().unwrap()[f.id.as_ref().unwrap()].clone();
        assert!(stored[..] == data[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_processes_and_the_limits_are_in_the_report() {
    let (url, _gw) = start(Behaviour::default()).await;
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    // Until exec completes the child still carries this thread's name.
    for _ in 0..500 {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
        if comm.trim() == "sleep" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&url, 100_000, 1, 1);
    cfg.pids = vec![child.id()];
    cfg.sample_interval = Duration::from_millis(20);
    cfg.baseline = Some(sixfold_bench::BaselineConfig {
        dir: dir.path().to_path_buf(),
        size: 4 << 20,
    });
    let r = run(&cfg).await;
    let _ = child.kill();
    let _ = child.wait();
    let r = r.unwrap();
    let p = r.processes.expect("process report");
    assert_eq!(p.processes.len(), 1);
    assert_eq!(p.processes[0].pid, cfg.pids[0]);
    assert_eq!(p.processes[0].name, "sleep");
    assert!(p.processes[0].rss_peak_mib > 0.0);
    assert!(p.bench.is_some(), "the bench itself is reported apart");
    assert!(p.cpu_seconds_per_gib.is_some());
    let disk = r.baseline.expect("disk baseline");
    assert_eq!(
        disk.write.map(|w| w.bytes),
        Some(4 << 20),
        "{:?}",
        disk.error
    );
    let loopback = r.loopback.expect("loopback baseline");
    assert_eq!((loopback.bytes, loopback.error), (4 << 20, None));
    assert!(loopback.cpu_seconds_per_gib.is_some_and(|c| c > 0.0));
    assert!(r.ratios.upload_cpu_vs_loopback.is_some());
    assert!(r.ratios.download_cpu_vs_loopback.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_do_not_start() {
    let mut c = Config::new("https://example.invalid");
    assert!(run(&c).await.is_err());
    c.gateway = "http://127.0.0.1:1".into();
    c.concurrency = 0;
    assert!(run(&c).await.is_err());
    c.concurrency = 1;
    c.mode = Mode::Download;
    assert!(run(&c).await.is_err(), "download without files");
    c.mode = Mode::Roundtrip;
    c.source = Some("/nonexistent/file".into());
    let err = run(&c).await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/file"), "{err}");
}

fn soak_config(gateway: &str) -> SoakConfig {
    let mut c = SoakConfig::new(gateway);
    c.duration = Duration::from_secs(2);
    c.concurrency = 8;
    c.sizes = SizeDist::Uniform {
        min: 1,
        max: 100_000,
    };
    c.mix = Mix::default();
    c.seed = Some(99);
    c.max_files = 64;
    c.chunk_size = 16 << 10;
    // Nothing here should take long; a hang fails the test instead of stalling it.
    c.request_timeout = Duration::from_secs(30);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixes_reads_writes_and_deletes_and_verifies_every_read() {
    let (url, gw) = start(Behaviour::default()).await;
    let cfg = soak_config(&url);
    let r = soak(&cfg).await.unwrap();
    assert!(r.is_ok(), "{:?}", r.errors);
    assert!(r.errors_by_kind.is_empty());
    let o = &r.ops;
    assert!(o.read.ok > 0 && o.write.ok > 0 && o.delete.ok > 0, "{o:?}");
    assert_eq!((o.read.failed, o.write.failed, o.delete.failed), (0, 0, 0));
    assert!(o.read.bytes > 0);
    assert_eq!(
        r.verified_bytes, o.read.bytes,
        "every byte read was verified"
    );
    assert_eq!(o.read.latency_ms.count, o.read.ok);
    assert!(o.write.latency_ms.p99.is_some() && o.delete.latency_ms.max.is_some());
    // What the mock saw agrees with the report, and the soak cleaned up after itself.
    assert_eq!(*gw.next_id.lock().unwrap(), o.write.ok);
    assert_eq!(*gw.deleted.lock().unwrap(), o.delete.ok + r.cleanup.deleted);
    assert!(r.cleanup.ran && r.cleanup.failed == 0);
    assert_eq!(r.cleanup.deleted, r.cleanup.files);
    assert!(gw.files.lock().unwrap().is_empty());
    assert!(*gw.peak_files.lock().unwrap() <= cfg.max_files);
    assert_eq!(r.config.seed, 99);
    // The JSON reads back (floats may differ in their last bit through serde_json).
    let back: SoakReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(
        (back.ops.read.ok, back.verified_bytes),
        (o.read.ok, r.verified_bytes)
    );
    assert_eq!((back.config.mix, back.report.as_str()), (cfg.mix, "soak"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_counts_busy_answers_as_busy() {
    let (url, gw) = start(Behaviour {
        busy_every: Some((5, 1)),
        ..Default::default()
    })
    .await;
    let r = soak(&soak_config(&url)).await.unwrap();
    let sent = *gw.busy_sent.lock().unwrap();
    assert!(sent > 0);
    assert_eq!(r.error_count, sent, "{:?}", r.errors_by_kind);
    assert_eq!(
        r.errors_by_kind.keys().collect::<Vec<_>>(),
        ["busy"],
        "busy is a kind of its own"
    );
    let per_op = r.ops.read.errors.get("busy").copied().unwrap_or(0)
        + r.ops.write.errors.get("busy").copied().unwrap_or(0)
        + r.ops.delete.errors.get("busy").copied().unwrap_or(0);
    assert_eq!(per_op + r.cleanup.failed, sent);
    assert!(
        r.errors
            .iter()
            .all(|e| e.status == Some(503) && e.kind == "busy")
    );
    assert!(!r.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_retries_busy_answers_with_retry_busy() {
    // Retry-After: 0 keeps the test quick; the wait it asks for is honoured all the same.
    let (url, gw) = start(Behaviour {
        busy_every: Some((5, 0)),
        ..Default::default()
    })
    .await;
    let mut cfg = soak_config(&url);
    cfg.retry_busy = true;
    let r = soak(&cfg).await.unwrap();
    assert!(r.is_ok(), "{:?}", r.errors);
    let sent = *gw.busy_sent.lock().unwrap();
    assert!(sent > 0);
    let retried = r.ops.read.busy_retries
        + r.ops.write.busy_retries
        + r.ops.delete.busy_retries
        + r.cleanup.busy_retries;
    assert_eq!(retried, sent, "every busy answer was retried");
    assert!(r.verified_bytes > 0 && r.verified_bytes == r.ops.read.bytes);
    assert!(gw.files.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_against_nothing_counts_connect_errors_and_ends() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = soak_config(&format!("http://127.0.0.1:{port}"));
    cfg.duration = Duration::from_millis(300);
    cfg.concurrency = 2;
    let r = soak(&cfg).await.unwrap();
    assert!(r.error_count > 0);
    assert_eq!(r.errors_by_kind.keys().collect::<Vec<_>>(), ["connect"]);
    // Nothing was written, so only writes were tried.
    assert_eq!(r.error_count, r.ops.write.failed);
    assert_eq!(r.cleanup.files, 0);
}
