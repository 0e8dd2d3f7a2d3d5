//! `sixfold-gateway dev`: a complete local cluster in one command. Makes the cluster PKI on first
//! run, serves the gateway in this process and runs N `sixfold-node` child processes on loopback,
//! each with its own data dir. Ctrl-C or SIGTERM stops every child, then the gateway.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sixfold_certs::{
    IdentityError, InitOptions, NodeCertRequest, PeerRole, Validity, layout, parse_identity,
    read_certificates,
};
use sixfold_gateway::auth::bootstrap::ADMIN_TOKEN_FILE;
use sixfold_gateway::config::{GatewayConfig, LogFormat, ServeArgs};
use sixfold_gateway::server;
use tokio::process::{Child, Command};
use uuid::Uuid;

const DEFAULT_DATA_DIR: &str = "sixfold-data";
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const DEFAULT_S3_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000);
const NODE_BINARY: &str = "sixfold-node";
/// How long a node may take to stop after SIGTERM before it is killed.
const NODE_STOP_GRACE: Duration = Duration::from_secs(15);

/// `sixfold-gateway dev` flags.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the gateway's and the nodes' data go [default: ./sixfold-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of storage nodes to start (6 are needed to accept uploads of 6 parts).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// HTTP address of the gateway [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve the API over HTTPS with a certificate for 127.0.0.1 and localhost issued by the
    /// cluster CA (`curl --cacert <data-dir>/gateway/certs/ca.pem https://...`).
    #[arg(long)]
    pub tls: bool,
    /// Address of the S3-compatible API [default: 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    pub s3_listen: Option<SocketAddr>,
    /// Keep the metadata in PostgreSQL at this `postgres://` URL [default: redb in the data
    /// dir].
    #[arg(long, value_name = "URL")]
    pub metadata: Option<String>,
    /// Threads of the gateway [default: half the CPUs, at least one: the nodes run on the same
    /// CPUs, and fewer gateway threads hand work between each other less often].
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<usize>,
}

/// One storage node child process.
struct NodeChild {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    crate::init_logging(LogFormat::Text);
    let data_dir = absolute(
        args.data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    )?;
    let gateway_dir = data_dir.join("gateway");
    let certs_dir = gateway_dir.join("certs");
    ensure_cluster_certs(&certs_dir)?;
    let node_dirs: Vec<PathBuf> = (0..args.nodes)
        .map(|i| data_dir.join(format!("node-{i}")))
        .collect();
    for (i, dir) in node_dirs.iter().enumerate() {
        ensure_node_certs(&certs_dir, &format!("node-{i}"), dir)?;
    }
    let node_bin = node_binary()?;
    let (tls_cert, tls_key) = if args.tls {
        let (cert, key) = ensure_https_cert(&certs_dir)?;
        (Some(cert), Some(key))
    } else {
        (None, None)
    };

    let serve_args = ServeArgs {
        data_dir: Some(gateway_dir),
        listen: Some(args.listen.unwrap_or(DEFAULT_LISTEN)),
        // At the top of the dev data dir, where the README and `admin` look for it.
        admin_token_file: Some(data_dir.join(ADMIN_TOKEN_FILE)),
        // Any free port: the nodes are told which one.
        internal_listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
        tls_cert,
        tls_key,
        s3_listen: Some(args.s3_listen.unwrap_or(DEFAULT_S3_LISTEN)),
        metadata: args.metadata,
        worker_threads: Some(args.worker_threads.unwrap_or_else(dev_worker_threads)),
        ..ServeArgs::default()
    };
    let mut config = GatewayConfig::resolve(&serve_args)?;
    // The dev data dir is the developer's own: a new metadata file gets a new first admin
    // token, the old one is kept aside.
    config.replace_stale_admin_token = true;
    crate::runtime(Some(config.worker_threads))?.block_on(run_cluster(config, node_bin, node_dirs))
}

/// Half the CPUs for the gateway, the rest for the nodes beside it. Measured on 2 CPUs with six
/// nodes (docs/bench.md, "Fourth round"): one gateway thread instead of two took the gateway's
/// CPU per GiB down by about 8 %, uploads about 5 % slower, downloads as fast, and no errors at
/// concurrency 100.
fn dev_worker_threads() -> usize {
    (sixfold_gateway::config::default_worker_threads() / 2).max(1)
}

async fn run_cluster(
    config: GatewayConfig,
    node_bin: PathBuf,
    node_dirs: Vec<PathBuf>,
) -> anyhow::Result<()> {
    let gateway = server::start(&config).await?;
    let credentials = config
        .admin_token_file
        .with_file_name(sixfold_gateway::s3::credentials::CREDENTIALS_FILE);
    if let Err(e) = sixfold_gateway::s3::credentials::write_from_token_file(
        &config.admin_token_file,
        &credentials,
    ) {
        tracing::warn!(path = %credentials.display(), error = %e, "cannot write the S3 credentials file");
    }
    let scheme = if gateway.https() { "https" } else { "http" };
    let url = format!("{scheme}://{}", gateway.local_addr());
    let internal_url = format!("https://{}", gateway.internal_addr());
    let mut nodes = Vec::with_capacity(node_dirs.len());
    for (i, dir) in node_dirs.iter().enumerate() {
        match spawn_node(&node_bin, &format!("node-{i}"), dir, &internal_url) {
            Ok(node) => nodes.push(node),
            Err(e) => {
                stop_nodes(&mut nodes).await;
                gateway.shutdown().await?;
                return Err(e);
            }
        }
    }

    let wanted = nodes.len().min(config.part_count as usize);
    let outcome = tokio::select! {
        ready = wait_until_up(&gateway, wanted, &mut nodes) => ready,
        () = server::shutdown_signal() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    match outcome {
        Ok(()) => {
            print_ready(&url, &config, nodes.len());
            if let Some(addr) = gateway.s3_addr() {
                print_s3(scheme, addr, &credentials);
            }
        }
        Err(e) => {
            stop_nodes(&mut nodes).await;
            gateway.shutdown().await?;
            return Err(e);
        }
    }

    tokio::select! {
        () = server::shutdown_signal() => {}
        () = watch_nodes(&mut nodes) => {}
    }
    tracing::info!("stopping the dev cluster");
    stop_nodes(&mut nodes).await;
    gateway.shutdown().await?;
    Ok(())
}

fn print_ready(url: &str, config: &GatewayConfig, nodes: usize) {
    println!();
    println!(
        "sixfold dev cluster ready: {url}  ({nodes} nodes, data in {})",
        config
            .data_dir
            .parent()
            .unwrap_or(&config.data_dir)
            .display()
    );
    if nodes < config.part_count as usize {
        println!(
            "note: {nodes} nodes cannot take files of {} parts; small files only",
            config.part_count
        );
    }
    // The token stays in its file: the example reads it there rather than printing it.
    let auth = format!(
        "-H \"Authorization: Bearer $(cat {})\"",
        config.admin_token_file.display()
    );
    println!();
    let curl = if config.tls.is_some() {
        format!(
            "curl --cacert {}",
            config.certs_dir.join(layout::CA_CERT).display()
        )
    } else {
        "curl".to_owned()
    };
    if config.tls.is_some() {
        println!(
            "HTTPS with a certificate from the cluster CA: {}",
            config.certs_dir.join(layout::CA_CERT).display()
        );
    }
    println!(
        "  {curl} -sS {auth} -X POST --data-binary @/etc/hostname -H 'X-File-Name: hostname' {url}/files"
    );
    println!("  {curl} -sS {auth} {url}/files/<id> -o hostname.copy");
    println!("  {curl} -sS {auth} {url}/nodes");
    println!();
    println!(
        "admin token (an admin access key): {}; more keys: sixfold-gateway admin keys create --help",
        config.admin_token_file.display()
    );
    println!("node logs: <data-dir>/node-N/node.log. Ctrl-C stops everything.");
}

fn print_s3(scheme: &str, addr: SocketAddr, credentials: &Path) {
    println!();
    println!(
        "S3 API: {scheme}://{addr} (path style, region us-east-1; credentials: the admin key)"
    );
    let env = format!("AWS_SHARED_CREDENTIALS_FILE={}", credentials.display());
    let endpoint = format!("--endpoint-url {scheme}://{addr}");
    println!("  {env} aws {endpoint} s3 mb s3://demo");
    println!("  {env} aws {endpoint} s3 cp /etc/hostname s3://demo/hostname");
    println!("  {env} aws {endpoint} s3 ls s3://demo");
}

/// The CA and the gateway's certificate: made once, reused after. A gateway certificate of a
/// release before roles is re-issued (dev has the CA), so an old data dir keeps working.
fn ensure_cluster_certs(dir: &Path) -> anyhow::Result<()> {
    if dir.join(layout::CA_CERT).exists() {
        if certificate_role(&dir.join(layout::GATEWAY_CERT))? != Some(PeerRole::Gateway) {
            sixfold_certs::renew_gateway(dir, Validity::leaf_default()).with_context(|| {
                format!("renewing the gateway certificate in {}", dir.display())
            })?;
            tracing::info!(dir = %dir.display(), "re-issued the gateway certificate with its role");
        }
        return Ok(());
    }
    sixfold_certs::init_cluster(dir, &InitOptions::default()).with_context(|| {
        format!(
            "creating the dev cluster's certificates in {}",
            dir.display()
        )
    })?;
    tracing::info!(dir = %dir.display(), "created the cluster CA and certificates");
    Ok(())
}

/// The public HTTPS certificate of `dev --tls`: for 127.0.0.1 and localhost, issued by the
/// cluster CA (server auth only, no cluster role), made once.
fn ensure_https_cert(certs_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = certs_dir.join("https.pem");
    let key = certs_dir.join("https-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let ca = sixfold_certs::ClusterCa::load(certs_dir)
        .with_context(|| format!("loading the cluster CA in {}", certs_dir.display()))?;
    let issued = ca.issue_server(
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        &["localhost".to_owned()],
        Validity::leaf_default(),
    )?;
    issued.write(&cert, &key, true)?;
    tracing::info!(cert = %cert.display(), "issued the dev HTTPS certificate");
    Ok((cert, key))
}

/// A node's certificate in `<node_dir>/certs`, naming the node's id. A certificate without a
/// role (older release) is re-issued for the id already in the node's data dir, so the node
/// keeps its identity and its chunks.
fn ensure_node_certs(ca_dir: &Path, name: &str, node_dir: &Path) -> anyhow::Result<()> {
    let out = node_dir.join("certs");
    let cert = out.join(layout::NODE_CERT);
    let legacy = match certificate_role(&cert)? {
        Some(PeerRole::Node(_)) => return Ok(()),
        Some(PeerRole::Gateway) => bail!("{} holds the gateway's certificate", cert.display()),
        None => cert.exists(),
    };
    let node_id = existing_node_id(node_dir)?.unwrap_or_else(Uuid::new_v4);
    let req = NodeCertRequest {
        node_id,
        name: name.to_string(),
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dns_names: vec!["localhost".to_string()],
    };
    sixfold_certs::issue_node(ca_dir, &req, &out, legacy)
        .with_context(|| format!("issuing the certificate of {name}"))?;
    if legacy {
        tracing::info!(node = name, %node_id, "re-issued a node certificate with its node id");
    }
    Ok(())
}

/// The role a certificate file names: `None` when the file is absent or names no role.
fn certificate_role(path: &Path) -> anyhow::Result<Option<PeerRole>> {
    if !path.exists() {
        return Ok(None);
    }
    let certs = read_certificates(path)?;
    let Some(first) = certs.first() else {
        return Ok(None);
    };
    match parse_identity(first) {
        Ok(identity) => Ok(Some(identity.role)),
        Err(IdentityError::NoRole) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// The id in a node data dir's `node-id` file (written by `sixfold-node`), if any.
fn existing_node_id(node_dir: &Path) -> anyhow::Result<Option<Uuid>> {
    let path = node_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim())
            .map(Some)
            .with_context(|| format!("{} does not hold a node id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `sixfold-node` next to this executable. Under `cargo run` it may not be built yet (cargo
/// builds only the package it runs), so build it with the same profile.
fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe
        .parent()
        .context("this executable has no parent directory")?;
    let path = dir.join(NODE_BINARY);
    if path.exists() {
        return Ok(path);
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        bail!(
            "{} not found next to {}: install both binaries in the same directory",
            NODE_BINARY,
            exe.display()
        );
    };
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    eprintln!("building {NODE_BINARY} ({profile})...");
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-p", "sixfold-node", "--bin", NODE_BINARY]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd
        .status()
        .context("cannot run cargo to build sixfold-node")?;
    if !status.success() || !path.exists() {
        bail!("building {NODE_BINARY} failed ({status})");
    }
    Ok(path)
}

fn spawn_node(bin: &Path, name: &str, dir: &Path, gateway_url: &str) -> anyhow::Result<NodeChild> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("node.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone().context("duplicating the log handle")?;
    let mut command = Command::new(bin);
    stop_with_parent(&mut command);
    let child = command
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--gateway",
            gateway_url,
            "--shards",
            "1",
            "--name",
            name,
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name} ({})", bin.display()))?;
    tracing::info!(node = name, pid = child.id(), log = %log.display(), "started node");
    Ok(NodeChild {
        name: name.to_string(),
        log,
        child: Some(child),
    })
}

/// Makes the kernel send the node SIGTERM (its graceful stop) when dev dies, so that a dev
/// killed with SIGKILL (a crashed terminal, a test harness) leaves no node running. SIGTERM and
/// Ctrl-C still stop the nodes in order through `stop_nodes`.
fn stop_with_parent(command: &mut Command) {
    // The death signal follows the thread that forked, not the process: dev spawns its nodes
    // from its main thread (the `block_on` future), which lives as long as dev does.
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit), touching no lock or allocation.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dev may have died before the prctl: then nothing would ever signal the node.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

async fn wait_until_up(
    gateway: &server::RunningGateway,
    wanted: usize,
    nodes: &mut [NodeChild],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if gateway.cluster().up_count() >= wanted {
            return Ok(());
        }
        for node in nodes.iter_mut() {
            if let Some(status) = node.exited() {
                bail!(
                    "{} exited while starting ({status}); see {}",
                    node.name,
                    node.log.display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {wanted} nodes registered within 60 s; see the node logs",
                gateway.cluster().up_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reports children that die; never returns while any is alive (pending forever after).
async fn watch_nodes(nodes: &mut [NodeChild]) {
    loop {
        for node in nodes.iter_mut() {
            if let Some(status) = node.exited() {
                tracing::error!(node = %node.name, %status, log = %node.log.display(), "node exited");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl NodeChild {
    /// The exit status, once, if the child has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }
}

/// SIGTERM to every node, then wait; SIGKILL whoever is still running after the grace period.
async fn stop_nodes(nodes: &mut [NodeChild]) {
    for node in nodes.iter() {
        if let Some(pid) = node.child.as_ref().and_then(Child::id) {
            // SAFETY: kill(2) on the PID of a child we have not reaped yet, so the PID still
            // names that child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + NODE_STOP_GRACE;
    for node in nodes.iter_mut() {
        let Some(mut child) = node.child.take() else {
            continue;
        };
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                tracing::warn!(node = %node.name, %status, "node stopped with an error")
            }
            Ok(Err(e)) => tracing::warn!(node = %node.name, error = %e, "cannot wait for node"),
            Err(_) => {
                tracing::warn!(node = %node.name, "node did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}
