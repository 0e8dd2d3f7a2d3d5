//! Timeouts at the HTTP edge, with the real binaries: slow or silent clients get their
//! connections closed (`header_timeout`, `keepalive_timeout`), a stalled upload body ends with
//! `408` and frees what the upload held on the nodes (`body_idle_timeout`), and a chunked form
//! with an endless preamble is refused after a bounded read.
//!
//! Every wait polls for a state with a deadline far above the configured timeout; no assertion
//! is about speed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// How long a test waits for something the gateway should do within a few seconds.
const DEADLINE: Duration = Duration::from_secs(30);

fn cluster_with(extra: &str) -> ClusterOptions {
    ClusterOptions {
        nodes: 6,
        gateway_config: format!(
            "cleanup_interval = \"500ms\"\nheartbeat_interval = \"500ms\"\ndown_after = \"2s\"\n{extra}"
        ),
        ..ClusterOptions::default()
    }
}

/// `Authorization: Bearer <admin token>\r\n` for requests written by hand.
fn auth_line(c: &TestCluster) -> String {
    let token = std::fs::read_to_string(c.gateway_dir().join("admin.token")).expect("admin token");
    format!("Authorization: Bearer {}\r\n", token.trim())
}

async fn connect(c: &TestCluster) -> TcpStream {
    TcpStream::connect(("127.0.0.1", c.port))
        .await
        .expect("connect")
}

/// Sends `prefix` and then one more header byte every `pace`, never finishing the headers,
/// until the server closes the connection (a write fails) or `stop` is set.
async fn trickle(
    mut w: OwnedWriteHalf,
    prefix: &'static [u8],
    pace: Duration,
    stop: Arc<AtomicBool>,
) {
    if w.write_all(prefix).await.is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(pace).await;
        if w.write_all(b"a").await.is_err() {
            return;
        }
    }
}

/// Waits until the server closes `r` (EOF or reset); panics if it answers instead, or if the
/// connection is still open at the deadline.
async fn assert_closed_by_server(r: &mut tokio::net::tcp::OwnedReadHalf, what: &str) {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(DEADLINE, r.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{what}: the server answered instead of closing: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("{what}: still open after {DEADLINE:?}"),
    }
}

/// A response read off a raw connection.
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads one response with a `Content-Length` from `r`.
async fn read_response<R: AsyncReadExt + Unpin>(r: &mut R) -> RawResponse {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = r.read(&mut buf).await.expect("read response");
        assert!(n > 0, "connection closed before a response: {data:?}");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = r.read(&mut buf).await.expect("read body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    RawResponse { status, body }
}

/// The value of one sample line of `/metrics`.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

/// Polls `/metrics` until `name` reaches at least `want`.
async fn wait_sample_at_least(c: &TestCluster, name: &str, want: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = sample(&metrics_text(c).await, name);
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {got}, expected >= {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_healthy(c: &TestCluster) {
    let health = c
        .http
        .get(format!("{}/health", c.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_sent_a_byte_at_a_time_are_cut_off() {
    let c = TestCluster::start(cluster_with("header_timeout = \"1s\"\n")).await;
    let (mut r, w) = connect(&c).await.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(trickle(
        w,
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_millis(200),
        Arc::clone(&stop),
    ));
    assert_closed_by_server(&mut r, "slow headers").await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    // A silent socket (not a byte sent) is closed the same way.
    let (mut r, _w) = connect(&c).await.into_split();
    assert_closed_by_server(&mut r, "silent socket").await;

    assert_healthy(&c).await;
    let text = metrics_text(&c).await;
    assert!(
        sample(&text, "sixfold_http_timeouts_total{kind=\"header\"}") >= 2,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_closed() {
    let c = TestCluster::start(cluster_with(
        "header_timeout = \"1s\"\nkeepalive_timeout = \"4s\"\n",
    ))
    .await;
    let (mut r, mut w) = connect(&c).await.into_split();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    w.write_all(request).await.expect("first request");
    assert_eq!(read_response(&mut r).await.status, 200);
    // Idle for longer than header_timeout (but well within keepalive_timeout): an idle
    // keep-alive is judged by keepalive_timeout alone, so the connection still serves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.write_all(request).await.expect("second request");
    assert_eq!(read_response(&mut r).await.status, 200);
    // Then idle for good: closed.
    assert_closed_by_server(&mut r, "idle keep-alive").await;
    let text = metrics_text(&c).await;
    assert!(
        sample(&text, "sixfold_http_timeouts_total{kind=\"keepalive\"}") >= 1,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slowloris_sockets_are_closed_while_uploads_succeed() {
    const SOCKETS: usize = 200;
    let c = TestCluster::start(cluster_with("header_timeout = \"3s\"\n")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..SOCKETS {
        let (r, w) = connect(&c).await.into_split();
        readers.push(r);
        writers.push(tokio::spawn(trickle(
            w,
            b"POST /files HTTP/1.1\r\nHost: x\r\n",
            Duration::from_millis(500),
            Arc::clone(&stop),
        )));
    }
    // Every slow socket is being served (counted open) before the real traffic starts.
    wait_sample_at_least(&c, "sixfold_http_connections_open", SOCKETS as u64).await;

    let p = pattern(4242);
    let size = 6 * MIB + 123;
    let (status, json) = upload_raw(&c, "during-slowloris", p, size).await;
    assert_eq!(status.as_u16(), 201, "{json}");
    let id = json["id"].as_str().expect("id").to_owned();
    assert_download_matches(&c, &id, p, size).await;
    // The checksum the gateway computed is the one of the bytes sent.
    let expected = format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(&p.bytes(0, size as usize))
    );
    assert_eq!(json["checksum"], expected.as_str());

    for (i, r) in readers.iter_mut().enumerate() {
        assert_closed_by_server(r, &format!("slowloris socket {i}")).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    assert_healthy(&c).await;
    wait_sample_at_least(
        &c,
        "sixfold_http_timeouts_total{kind=\"header\"}",
        SOCKETS as u64,
    )
    .await;
}

/// Chunk files in the nodes' data dirs.
fn chunk_files(c: &TestCluster) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|e| e == "chunk") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    for i in 0..c.nodes.len() {
        walk(&c.node_dir(i), &mut n);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_body_gets_408_and_leaves_no_chunk() {
    let c = TestCluster::start(cluster_with("body_idle_timeout = \"3s\"\n")).await;
    assert_eq!(chunk_files(&c), 0);
    let (mut r, mut w) = connect(&c).await.into_split();
    let declared = 64 * MIB;
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\n{}X-File-Name: stalled\r\nContent-Length: {declared}\r\n\r\n",
        auth_line(&c)
    );
    w.write_all(head.as_bytes()).await.expect("head");
    w.write_all(&pattern(7).bytes(0, MIB as usize))
        .await
        .expect("first MiB");
    // The upload is under way: the nodes hold chunk files for it.
    let deadline = Instant::now() + DEADLINE;
    while chunk_files(&c) == 0 {
        assert!(Instant::now() < deadline, "no chunk file appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then nothing more, with the socket kept open.
    let response = tokio::time::timeout(DEADLINE, read_response(&mut r))
        .await
        .expect("a response while the client stalls");
    assert_eq!(response.status, 408, "{:?}", response.json());
    let json = response.json();
    assert_eq!(json["error"], "request_timeout", "{json}");
    drop(w);

    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = chunk_files(&c);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} chunk files remain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(list_ids(&c).await.is_empty(), "no file is listed");
    let text = metrics_text(&c).await;
    assert_eq!(
        sample(&text, "sixfold_http_timeouts_total{kind=\"body\"}"),
        1,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_form_with_an_endless_preamble_is_refused_after_a_bounded_read() {
    // The head limit of a form (boundaries, part headers, small fields) is 128 KiB.
    const SENT: u64 = 2 * MIB;
    let c = TestCluster::start(cluster_with("")).await;
    let (mut r, mut w) = connect(&c).await.into_split();
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\n{}Transfer-Encoding: chunked\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n",
        auth_line(&c)
    );
    w.write_all(head.as_bytes()).await.expect("head");
    // 2 MiB of text that never reaches a boundary, in 64 KiB chunks; then the client waits
    // with the body unfinished. Only a server that gives up on its own answers now.
    let piece = vec![b'x'; 64 * 1024];
    let mut sent = 0u64;
    while sent < SENT {
        w.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .expect("chunk size");
        w.write_all(&piece).await.expect("chunk");
        w.write_all(b"\r\n").await.expect("chunk end");
        sent += piece.len() as u64;
    }
    let response = tokio::time::timeout(DEADLINE, read_response(&mut r))
        .await
        .expect("a response before the body ends");
    assert_eq!(response.status, 400, "{:?}", response.json());
    let json = response.json();
    assert_eq!(json["error"], "bad_request", "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("before the file exceed"),
        "{json}"
    );
    drop(w);
    assert_healthy(&c).await;
}

/// Whether the server has closed `s` (EOF or reset already delivered), without waiting.
fn closed_now(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_until_one_closes() {
    // The nodes' registrations and heartbeats come over HTTP too and hold one keep-alive
    // connection each (6), the harness's pooled client one more: 12 leaves 5 for the test.
    const MAX: usize = 12;
    let c = TestCluster::start(cluster_with(&format!(
        "max_connections = {MAX}\nheader_timeout = \"2s\"\n"
    )))
    .await;
    // Take every free slot with silent sockets: they are queued in the kernel's backlog before
    // the next client, and accepted first.
    let silent: Vec<TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..MAX {
            v.push(connect(&c).await);
        }
        v
    };
    // One more client: its connection waits in the backlog until a silent one is closed.
    let mut extra = connect(&c).await;
    extra
        .write_all(
            format!(
                "GET /files HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
                auth_line(&c)
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let response = tokio::time::timeout(DEADLINE, read_response(&mut extra))
        .await
        .expect("served once a slot is free");
    assert_eq!(response.status, 200);
    let closed = silent.iter().filter(|s| closed_now(s)).count();
    assert!(
        closed >= 1,
        "the extra connection was served while all {MAX} slots were taken"
    );
    let text = metrics_text(&c).await;
    assert_eq!(
        sample(&text, "sixfold_http_connections_limit"),
        MAX as u64,
        "{text}"
    );
}
