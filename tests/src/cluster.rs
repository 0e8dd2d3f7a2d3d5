//! A whole cluster of real processes on loopback: one `sixfold-gateway serve` and N
//! `sixfold-node`s, each with its own data dir under one temp dir, certificates made with the
//! gateway's own `certs` commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Proc, bin_path, free_tcp_port};

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// Extra lines for the gateway's TOML config (tests shorten timers here).
    pub gateway_config: String,
    /// Extra flags for every `sixfold-node` (tests shrink windows and pools here).
    pub node_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 6,
            gateway_config: String::new(),
            node_args: Vec::new(),
        }
    }
}

pub struct TestCluster {
    pub port: u16,
    pub url: String,
    /// Port of the gateway's internal (node registration, mutual TLS) listener.
    pub internal_port: u16,
    pub gateway: Option<Proc>,
    pub nodes: Vec<Option<Proc>>,
    /// QUIC address each node's shard 0 is started with (port 0: the node picks one).
    node_listen: Vec<SocketAddr>,
    /// Extra command-line arguments of each node (e.g. `--capacity`), kept by restarts.
    node_args: Vec<Vec<String>>,
    pub http: reqwest::Client,
    opts: ClusterOptions,
    /// Declared last so it is dropped last: the processes are stopped (and a failing test
    /// prints their logs) before their data dirs and log files are removed.
    pub dir: tempfile::TempDir,
}

fn gateway_bin() -> PathBuf {
    bin_path("sixfold-gateway")
}

fn node_bin() -> PathBuf {
    bin_path("sixfold-node")
}

/// Runs a command to completion and panics with its output unless it succeeded.
pub fn run_ok(program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {:?} failed: {}{}",
        program.display(),
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCluster {
    /// Starts the gateway and `opts.nodes` nodes and waits until `/health` says 200 (or, with
    /// fewer than six nodes, until every node shows as up).
    pub async fn start(opts: ClusterOptions) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("sixfold-test-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp dir");
        let gw_dir = dir.path().join("gateway");
        std::fs::create_dir_all(&gw_dir).expect("gateway dir");
        let certs = gw_dir.join("certs");
        run_ok(
            &gateway_bin(),
            &[
                "certs",
                "init",
                "--dir",
                certs.to_str().expect("utf-8 path"),
            ],
        );
        let port = free_tcp_port();
        let internal_port = free_tcp_port();
        let mut cluster = TestCluster {
            port,
            url: format!("http://127.0.0.1:{port}"),
            internal_port,
            gateway: None,
            nodes: Vec::new(),
            node_listen: Vec::new(),
            node_args: Vec::new(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(32)
                .build()
                .expect("http client"),
            dir,
            opts: opts.clone(),
        };
        cluster.start_gateway();
        cluster.http = authorized_client(&cluster.admin_token().await);
        for _ in 0..opts.nodes {
            cluster.add_node();
        }
        cluster.wait_nodes_up(opts.nodes).await;
        cluster
    }

    /// The admin token the gateway's first start wrote to `<gateway data dir>/admin.token`,
    /// waiting (bounded) for the file to appear. The file is written whole, then linked into
    /// place, so once it exists it is complete.
    pub async fn admin_token(&mut self) -> String {
        let path = self.gateway_dir().join("admin.token");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.trim().is_empty()
            {
                return text.trim().to_owned();
            }
            if let Some(gateway) = self.gateway.as_mut() {
                assert!(
                    gateway.is_running(),
                    "the gateway exited before writing {}",
                    path.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not appear in time",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What nodes take as `--gateway`: the internal listener.
    pub fn internal_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.internal_port)
    }

    pub fn gateway_dir(&self) -> PathBuf {
        self.dir.path().join("gateway")
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    /// The cluster CA's dir (`ca.pem`, `gateway.pem`, `gateway-key.pem`, ...): what a test
    /// needs to talk to the nodes over QUIC as the gateway does
    /// (`sixfold_certs::GatewayTls::load`).
    pub fn gateway_certs_dir(&self) -> PathBuf {
        self.gateway_dir().join("certs")
    }

    /// The QUIC address node `i`'s shard 0 was started with (port 0 unless it was added with
    /// [`TestCluster::add_node_at`]).
    pub fn node_listen(&self, i: usize) -> SocketAddr {
        self.node_listen[i]
    }

    /// Replaces the extra lines of the gateway's TOML config, for its next start.
    pub fn set_gateway_config(&mut self, config: String) {
        self.opts.gateway_config = config;
    }

    /// (Re)starts the gateway on the same port and data dir.
    pub fn start_gateway(&mut self) {
        let gw_dir = self.gateway_dir();
        let config = gw_dir.join("gateway.toml");
        std::fs::write(&config, &self.opts.gateway_config).expect("write gateway config");
        let args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            gw_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--internal-listen".into(),
            format!("127.0.0.1:{}", self.internal_port),
            "--config".into(),
            config.display().to_string(),
        ];
        let log = gw_dir.join(format!("gateway-{}.log", unique()));
        self.gateway = Some(Proc::spawn("gateway", &gateway_bin(), &args, log));
    }

    /// Adds one more node (certificate issued by the cluster CA) and starts it; its shards pick
    /// free ports.
    pub fn add_node(&mut self) -> usize {
        self.add_node_at(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// [`TestCluster::add_node`] with shard 0 listening on `listen`, kept by every restart
    /// ([`TestCluster::start_node`]), so a test can talk QUIC to the node directly (e.g. on
    /// a port from [`crate::free_udp_port`]).
    pub fn add_node_at(&mut self, listen: SocketAddr) -> usize {
        self.add_node_with(listen, &[])
    }

    /// [`TestCluster::add_node_at`] with extra node arguments (`["--capacity", "1GiB"]`),
    /// passed again by every restart.
    pub fn add_node_with(&mut self, listen: SocketAddr, args: &[&str]) -> usize {
        let i = self.nodes.len();
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir).expect("node dir");
        let certs_out = dir.join("certs");
        run_ok(
            &gateway_bin(),
            &[
                "certs",
                "issue-node",
                "--dir",
                self.gateway_dir().join("certs").to_str().expect("utf-8"),
                "--name",
                &format!("node-{i}"),
                "--ip",
                "127.0.0.1",
                "--out",
                certs_out.to_str().expect("utf-8"),
            ],
        );
        self.nodes.push(None);
        self.node_listen.push(listen);
        self.node_args
            .push(args.iter().map(|a| (*a).to_owned()).collect());
        self.start_node(i);
        i
    }

    /// [`TestCluster::add_node`] registering with `gateways` (each an internal URL, tried in
    /// this order) instead of this cluster's gateway alone; kept by every restart.
    pub fn add_node_with_gateways(&mut self, gateways: &[String]) -> usize {
        let list = gateways.join(",");
        self.add_node_with(SocketAddr::from(([127, 0, 0, 1], 0)), &["--gateway", &list])
    }

    /// (Re)starts node `i` on its data dir and listen address; with this cluster's gateway
    /// unless its extra arguments name gateways.
    pub fn start_node(&mut self, i: usize) {
        let dir = self.node_dir(i);
        let mut args = vec![
            "--data-dir".to_string(),
            dir.display().to_string(),
            "--listen".into(),
            self.node_listen[i].to_string(),
            "--shards".into(),
            "1".into(),
            "--name".into(),
            format!("node-{i}"),
        ];
        if !self.node_args[i].iter().any(|a| a == "--gateway") {
            args.extend(["--gateway".into(), self.internal_url()]);
        }
        args.extend(self.opts.node_args.iter().cloned());
        args.extend(self.node_args[i].iter().cloned());
        let log = dir.join(format!("node-{}.log", unique()));
        self.nodes[i] = Some(Proc::spawn(&format!("node-{i}"), &node_bin(), &args, log));
    }

    /// Stops node `i` the way systemd does (SIGTERM, then waits up to `grace` for it to exit;
    /// SIGKILL after that). Returns the exit code if it exited by itself in time.
    pub fn stop_node(&mut self, i: usize, grace: Duration) -> Option<i32> {
        self.nodes[i].take().and_then(|mut p| p.terminate(grace))
    }

    /// Whether node `i`'s process is still running (false once stopped, killed or exited).
    pub fn node_running(&mut self, i: usize) -> bool {
        self.nodes[i].as_mut().is_some_and(Proc::is_running)
    }

    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.kill9();
        }
    }

    /// `kill -9` of every process: the crash the durability promise is about.
    pub fn kill_all(&mut self) {
        if let Some(mut g) = self.gateway.take() {
            g.kill9();
        }
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    pub async fn nodes_json(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/nodes", self.url))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("GET /nodes")
            .json()
            .await
            .expect("nodes json");
        match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove("nodes") {
                Some(serde_json::Value::Array(a)) => a,
                _ => panic!("unexpected /nodes shape"),
            },
            _ => panic!("unexpected /nodes shape"),
        }
    }

    /// Waits until at least `n` nodes report state "up".
    pub async fn wait_nodes_up(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(resp) = self.http.get(format!("{}/nodes", self.url)).send().await
                && resp.status().is_success()
            {
                let up = self
                    .nodes_json()
                    .await
                    .iter()
                    .filter(|n| n["state"] == "up")
                    .count();
                if up >= n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{n} nodes did not come up in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stop(&mut self) {
        self.kill_all();
    }
}

/// One more `sixfold-gateway serve` beside a cluster's own (several gateways over one shared
/// PostgreSQL): its own data dir and ports, the cluster's certificates. Stopped (by PID) when
/// dropped.
pub struct ExtraGateway {
    pub url: String,
    pub port: u16,
    pub internal_port: u16,
    pub dir: PathBuf,
    pub proc: Option<Proc>,
    config: String,
    certs: PathBuf,
}

impl ExtraGateway {
    /// What nodes take as `--gateway` to reach this one.
    pub fn internal_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.internal_port)
    }

    /// (Re)starts the process on the same ports and data dir.
    pub fn start(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("gateway dir");
        let config = self.dir.join("gateway.toml");
        std::fs::write(&config, &self.config).expect("write gateway config");
        let args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            self.dir.display().to_string(),
            "--certs-dir".into(),
            self.certs.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--internal-listen".into(),
            format!("127.0.0.1:{}", self.internal_port),
            "--config".into(),
            config.display().to_string(),
        ];
        let log = self.dir.join(format!("gateway-{}.log", unique()));
        self.proc = Some(Proc::spawn("gateway-b", &gateway_bin(), &args, log));
    }

    /// The log of the running (or last) process.
    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}

impl TestCluster {
    /// Starts another gateway named `name` with `config` (its TOML: the same `metadata` URL as
    /// the cluster's gateway, typically), sharing the cluster's certificates.
    pub fn start_extra_gateway(&self, name: &str, config: &str) -> ExtraGateway {
        let port = free_tcp_port();
        let mut gw = ExtraGateway {
            url: format!("http://127.0.0.1:{port}"),
            port,
            internal_port: free_tcp_port(),
            dir: self.dir.path().join(name),
            proc: None,
            config: config.to_owned(),
            certs: self.gateway_certs_dir(),
        };
        gw.start();
        gw
    }
}

/// An HTTP client that sends `Authorization: Bearer <token>` with every request.
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("token is a header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .default_headers(headers)
        .build()
        .expect("http client")
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}
