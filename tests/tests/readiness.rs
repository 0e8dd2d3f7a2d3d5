//! systemd `Type=notify` readiness of both binaries, checked with a fake service manager: a
//! Unix datagram socket named in `NOTIFY_SOCKET`, as systemd provides it.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sixfold_tests::{ClusterOptions, Proc, TestCluster, bin_path, free_tcp_port, run_ok};

/// Longest wait for one notification: covers a cold start of a debug build on a busy machine.
const NOTIFY_WAIT: Duration = Duration::from_secs(60);

/// The fake service manager's end of `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        NotifySocket { socket, path }
    }

    fn env_value(&self) -> &str {
        self.path.to_str().expect("utf-8 socket path")
    }

    /// Receives datagrams until one has the line `want`; returns every line seen before it.
    /// Panics after [`NOTIFY_WAIT`] or when `proc` exits first.
    fn wait_for(&self, want: &str, proc: &mut Proc) -> Vec<String> {
        let deadline = Instant::now() + NOTIFY_WAIT;
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    for line in text.lines() {
                        if line == want {
                            return seen;
                        }
                        seen.push(line.to_owned());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
            assert!(
                proc.is_running(),
                "{} exited before sending {want} (saw {seen:?}):\n{}",
                proc.name,
                proc.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "no {want} from {} in time (saw {seen:?})",
                proc.name
            );
        }
    }
}

/// SIGTERM, then wait for `STOPPING=1` and a clean exit.
fn stop_and_expect_clean_exit(notify: &NotifySocket, proc: &mut Proc) {
    proc.signal(libc::SIGTERM);
    notify.wait_for("STOPPING=1", proc);
    let code = proc.terminate(Duration::from_secs(60));
    assert_eq!(
        code,
        Some(0),
        "exit code of {}:\n{}",
        proc.name,
        proc.log_text()
    );
}

#[test]
fn gateway_notifies_ready_after_binding_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("gateway");
    let certs = data.join("certs");
    let gateway = bin_path("sixfold-gateway");
    run_ok(
        &gateway,
        &["certs", "init", "--dir", certs.to_str().expect("utf-8")],
    );
    let notify = NotifySocket::bind(dir.path());
    let port = free_tcp_port();
    let args = vec![
        "serve".to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    let mut proc = Proc::spawn_with_env(
        "gateway",
        &gateway,
        &args,
        // A short watchdog period makes keep-alives observable; no WATCHDOG_PID means "this
        // process", as sd_watchdog_enabled(3) defines it.
        &[
            ("NOTIFY_SOCKET", notify.env_value()),
            ("WATCHDOG_USEC", "200000"),
        ],
        dir.path().join("gateway.log"),
    );

    let before = notify.wait_for("READY=1", &mut proc);
    assert!(
        before.is_empty(),
        "notifications before READY=1: {before:?}"
    );
    TcpStream::connect(("127.0.0.1", port)).expect("HTTP port accepts once READY=1 is sent");
    notify.wait_for("WATCHDOG=1", &mut proc);
    stop_and_expect_clean_exit(&notify, &mut proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_notifies_ready_after_registering_and_stopping_on_sigterm() {
    let cluster = TestCluster::start(ClusterOptions {
        nodes: 0,
        ..ClusterOptions::default()
    })
    .await;
    let node_dir = cluster.dir.path().join("notify-node");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    run_ok(
        &bin_path("sixfold-gateway"),
        &[
            "certs",
            "issue-node",
            "--dir",
            cluster.gateway_dir().join("certs").to_str().expect("utf-8"),
            "--name",
            "n0",
            "--ip",
            "127.0.0.1",
            "--out",
            node_dir.join("certs").to_str().expect("utf-8"),
        ],
    );
    let notify = NotifySocket::bind(&node_dir);
    let args = vec![
        "--data-dir".to_string(),
        node_dir.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--gateway".into(),
        cluster.internal_url(),
        "--shards".into(),
        "1".into(),
        "--name".into(),
        "n0".into(),
    ];
    let mut proc = Proc::spawn_with_env(
        "node",
        &bin_path("sixfold-node"),
        &args,
        &[
            ("NOTIFY_SOCKET", notify.env_value()),
            ("WATCHDOG_USEC", "200000"),
        ],
        node_dir.join("node.log"),
    );

    // The socket is read on a blocking thread; the runtime stays free for the HTTP client.
    let (notify, mut proc) = tokio::task::spawn_blocking(move || {
        let before = notify.wait_for("READY=1", &mut proc);
        // Keep-alives may start before readiness (systemd accepts them); nothing else may.
        assert!(
            before.iter().all(|l| l == "WATCHDOG=1"),
            "notifications before READY=1: {before:?}"
        );
        (notify, proc)
    })
    .await
    .expect("wait for READY=1");

    // READY=1 comes after the gateway accepted the registration: the node is listed, joining
    // or (once the gateway verified it over QUIC) up.
    let nodes = cluster.nodes_json().await;
    assert!(
        nodes
            .iter()
            .any(|n| n["name"] == "n0" && (n["state"] == "up" || n["state"] == "joining")),
        "node not registered at READY=1: {nodes:?}"
    );
    cluster.wait_nodes_up(1).await;

    // ... and its QUIC port takes data: a small file (one part) goes to it and comes back.
    let body: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = cluster
        .http
        .post(format!("{}/files", cluster.url))
        .header("X-File-Name", "ready.bin")
        .body(body.clone())
        .send()
        .await
        .expect("upload after READY=1");
    assert_eq!(
        put.status(),
        reqwest::StatusCode::CREATED,
        "upload after READY=1"
    );
    let created: serde_json::Value = put.json().await.expect("upload response");
    let id = created["id"].as_str().expect("file id").to_owned();
    let got = cluster
        .http
        .get(format!("{}/files/{id}", cluster.url))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("download body");
    assert_eq!(
        got.as_ref(),
        body.as_slice(),
        "bytes read back from the node"
    );

    tokio::task::spawn_blocking(move || {
        notify.wait_for("WATCHDOG=1", &mut proc);
        stop_and_expect_clean_exit(&notify, &mut proc);
    })
    .await
    .expect("stop the node");
}
