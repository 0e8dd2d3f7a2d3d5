//! `sixfold-node`: starts one shard thread per core (QUIC endpoint + chunk store each), registers
//! with the gateway and heartbeats, and on SIGTERM/SIGINT drains and stops. Under systemd
//! (`Type=notify`) it reports readiness, stopping and watchdog keep-alives.

mod readiness;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use sixfold_certs::NodeTls;
use sixfold_node::config::{Cli, LogFormat, NodeConfig};
use sixfold_node::quic::QuicSettings;
use sixfold_node::registration::{Registration, RegistrationSettings};
use sixfold_node::shard::{NodeShared, ShardEvent, ShardSpec, spawn_shard};
use sixfold_node::signals::{self, StopSignal};
use sixfold_node::store::StoreConfig;
use sixfold_wire::registration::{NodeReport, REPORT_VERSION};
use uuid::Uuid;

/// Longest wait for shards to stop after the hard stop (their puts interrupt with a sync each).
const HARD_STOP_WAIT: Duration = Duration::from_secs(40);
/// A stop signal this soon after the first is the same request delivered twice.
const REPEAT_SIGNAL_WINDOW: Duration = Duration::from_secs(2);
/// How often the main thread checks on stopping shards.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Everything that reaches the main thread.
enum Event {
    Shard(ShardEvent),
    /// A stop signal and when it arrived.
    Signal(StopSignal, Instant),
    Registered,
}

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the blocked mask.
    let blocked = match signals::block_termination_signals() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sixfold-node: cannot block SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    let config = match NodeConfig::resolve(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sixfold-node: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    match run(&config, blocked) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: the journal and log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (stderr on a full disk) is dropped: the default
        // reports it with eprintln!, which panics when stderr fails, so a node whose log
        // shares its full data disk would die instead of serving reads.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config: &NodeConfig, blocked: signals::BlockedSignals) -> anyhow::Result<()> {
    sixfold_certs::install_crypto_provider();
    let tls = NodeTls::load(&config.certs_dir).with_context(|| {
        format!(
            "cannot load the node's TLS files from {} (ca.pem, node.pem, node-key.pem; \
             `sixfold-gateway certs issue-node` makes them)",
            config.certs_dir.display()
        )
    })?;
    let node_id = certificate_node_id(config, &tls)?;
    if sixfold_node::node_id::adopt(&config.data_dir, node_id)? {
        tracing::info!(%node_id, data_dir = %config.data_dir.display(), "node id taken from the certificate and written");
    }

    let (tx, events) = mpsc::channel::<Event>();
    let signal_tx = tx.clone();
    signals::spawn_signal_thread(blocked, move |sig, _count| {
        let _ = signal_tx.send(Event::Signal(sig, Instant::now()));
    })
    .context("cannot start the signal thread")?;

    let node = NodeShared::with_scrub(
        node_id,
        config.shards,
        sixfold_node::scrub::ScrubShared::in_data_dir(
            sixfold_node::scrub::ScrubSettings {
                rate: config.scrub_rate,
                interval: config.scrub_interval,
            },
            config.shards,
            &config.data_dir,
        ),
    );
    let threads = start_shards(config, &node, tls.server_config(), &tx)?;
    let bound = match wait_listening(config, &events) {
        Ok(bound) => bound,
        Err(e) => {
            stop_shards(&node, threads, &events, Duration::ZERO, None);
            return Err(e);
        }
    };
    let advertised: Vec<SocketAddr> = bound
        .iter()
        .enumerate()
        .map(|(shard, addr)| config.advertised_addr(shard as u16, *addr))
        .collect();
    let capacity = match config.capacity {
        Some(c) => c,
        None => default_capacity(&config.data_dir, node.totals().used_bytes)?,
    };
    node.set_capacity(capacity);
    tracing::info!(
        %node_id,
        name = %config.name,
        shards = config.shards,
        listen = ?bound,
        advertise = ?advertised,
        capacity,
        used = node.totals().used_bytes,
        "node listening"
    );

    let report_node = Arc::clone(&node);
    let name = config.name.clone();
    let cluster_id = Arc::new(
        sixfold_node::cluster_id::ClusterId::load(&config.data_dir)
            .context("cannot read the cluster id in the data dir")?,
    );
    let report_cluster = Arc::clone(&cluster_id);
    let report = move |draining| {
        let mut r = build_report(&report_node, node_id, &name, &advertised, draining);
        r.cluster_id = report_cluster.get().map(|id| id.hyphenated().to_string());
        r.scrub = Some(report_node.scrub.report());
        r
    };
    let scrub_node = Arc::clone(&node);
    let registered_tx = tx.clone();
    let registration = Registration::start(
        RegistrationSettings {
            gateways: config.gateways.clone(),
            tls: tls.registration_config(),
            cert_path: config
                .certs_dir
                .join(sixfold_certs::layout::NODE_CERT)
                .display()
                .to_string(),
            cluster_id,
            on_scrub_now: Arc::new(move || scrub_node.scrub.request()),
        },
        report,
        move || {
            let _ = registered_tx.send(Event::Registered);
        },
    )
    .context("cannot start the registration thread")?;

    let healthy = Arc::new(AtomicBool::new(true));
    if let Err(e) = readiness::spawn_watchdog(Arc::clone(&healthy)) {
        // Without keep-alives systemd restarts the node after WatchdogSec: say why.
        tracing::error!(error = %e, "cannot start the systemd watchdog thread");
    }
    let mut first_signal = None;
    let failure = loop {
        match events.recv() {
            // Sent once, by the first accepted registration.
            Ok(Event::Registered) => notify_ready(),
            Ok(Event::Signal(sig, at)) => {
                readiness::stopping();
                first_signal = Some(at);
                tracing::info!(
                    signal = sig.name(),
                    grace_s = config.shutdown_grace.as_secs_f64(),
                    "stopping: draining requests"
                );
                break None;
            }
            Ok(Event::Shard(ShardEvent::Failed { shard, error })) => {
                break Some(format!("shard {shard} failed: {error}"));
            }
            Ok(Event::Shard(ShardEvent::Stopped { shard })) => {
                break Some(format!("shard {shard} stopped unexpectedly"));
            }
            Ok(Event::Shard(ShardEvent::Listening { .. })) => {}
            Err(mpsc::RecvError) => break Some("event channel closed".into()),
        }
    };
    if failure.is_some() {
        healthy.store(false, Ordering::Release);
    }
    registration.drain();
    stop_shards(&node, threads, &events, config.shutdown_grace, first_signal);
    registration.stop();
    match failure {
        None => {
            tracing::info!("node stopped");
            Ok(())
        }
        Some(why) => bail!(why),
    }
}

/// The node id the certificate names. A certificate of an older release names none: the
/// error says how to re-issue it for the id this data dir already has.
fn certificate_node_id(config: &NodeConfig, tls: &NodeTls) -> anyhow::Result<Uuid> {
    let cert = config.certs_dir.join(sixfold_certs::layout::NODE_CERT);
    match tls.identity() {
        Ok(identity) => match identity.role {
            sixfold_certs::PeerRole::Node(id) => Ok(id),
            sixfold_certs::PeerRole::Gateway => bail!(
                "{} is the gateway's certificate, not a node certificate",
                cert.display()
            ),
        },
        Err(sixfold_certs::IdentityError::NoRole) => {
            let id = match sixfold_node::node_id::read(&config.data_dir)? {
                Some(id) => id.to_string(),
                None => "<new id, or omit --node-id>".to_owned(),
            };
            bail!(
                "{} names no node id (a certificate from before node identities). Re-issue it \
                 on the gateway host, keeping this node's id:\n  sixfold-gateway certs \
                 issue-node --dir <gateway certs dir> --name {} --node-id {id} --ip <node IP> \
                 --out <this node's certs dir> --force\nthen copy the files to {}",
                cert.display(),
                config.name,
                config.certs_dir.display()
            )
        }
        Err(e) => bail!("{}: {e}", cert.display()),
    }
}

/// Called once every shard listens and the gateway accepted the first registration: the node
/// can take work; systemd gets `READY=1`.
fn notify_ready() {
    tracing::info!("node ready: registered with the gateway");
    readiness::ready();
}

fn start_shards(
    config: &NodeConfig,
    node: &Arc<NodeShared>,
    tls: Arc<rustls::ServerConfig>,
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let cores = pinning_cores(config.shards);
    let quic = QuicSettings {
        stream_receive_window: u32::try_from(config.stream_window).unwrap_or(u32::MAX),
        ..QuicSettings::default()
    }
    .with_mtu(config.mtu.for_ip(config.listen.ip()));
    let mut threads = Vec::with_capacity(usize::from(config.shards));
    for shard in 0..config.shards {
        let spec = ShardSpec {
            shard,
            listen: config.listen_addr(shard),
            dir: config.shard_dir(shard),
            tls: Arc::clone(&tls),
            quic: quic.clone(),
            store: store_config(config.io_buffers),
            core: (!cores.is_empty()).then(|| cores[usize::from(shard) % cores.len()]),
        };
        let tx = tx.clone();
        let handle = spawn_shard(spec, Arc::clone(node), move |e| {
            let _ = tx.send(Event::Shard(e));
        })
        .with_context(|| format!("cannot start the thread of shard {shard}"))?;
        threads.push(handle);
    }
    Ok(threads)
}

/// The store tuning for `buffers` I/O buffers per shard: the default depths, lowered so that a
/// put's writes in flight always leave a buffer for the block being filled.
fn store_config(buffers: usize) -> StoreConfig {
    let defaults = StoreConfig::default();
    StoreConfig {
        buffer_count: buffers,
        writes_in_flight: defaults
            .writes_in_flight
            .min(buffers.saturating_sub(1))
            .max(1),
        reads_in_flight: defaults.reads_in_flight.min(buffers).max(1),
    }
}

/// The cores to pin shards to (shard n on core n mod cores), or none. Pinning pays when the node
/// has the machine to itself (a shard per core, the default); a node with fewer shards than
/// cores shares the host (several nodes, the dev cluster), and pinning every such node's shard
/// 0 to core 0 would pile them all onto one core, so the scheduler places those threads.
fn pinning_cores(shards: u16) -> Vec<core_affinity::CoreId> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        tracing::warn!("cannot list the CPU cores; shard threads are not pinned");
        return cores;
    }
    if usize::from(shards) < cores.len() {
        tracing::info!(
            shards,
            cores = cores.len(),
            "fewer shards than cores: shard threads are not pinned"
        );
        return Vec::new();
    }
    cores
}

/// Waits until every shard listens; returns their bound addresses by shard index.
fn wait_listening(
    config: &NodeConfig,
    events: &mpsc::Receiver<Event>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut bound: Vec<Option<SocketAddr>> = vec![None; usize::from(config.shards)];
    while bound.iter().any(Option::is_none) {
        match events.recv() {
            Ok(Event::Shard(ShardEvent::Listening { shard, addr, usage })) => {
                tracing::debug!(shard, %addr, chunks = usage.chunk_count, "shard listening");
                bound[usize::from(shard)] = Some(addr);
            }
            Ok(Event::Shard(ShardEvent::Failed { shard, error })) => {
                bail!("shard {shard} failed to start: {error}")
            }
            Ok(Event::Shard(ShardEvent::Stopped { shard })) => {
                bail!("shard {shard} stopped during start")
            }
            Ok(Event::Signal(sig, ..)) => bail!("{} received during start", sig.name()),
            Ok(Event::Registered) => {}
            Err(mpsc::RecvError) => bail!("event channel closed during start"),
        }
    }
    Ok(bound.into_iter().flatten().collect())
}

/// Asks every shard to stop, gives running requests `grace`, then closes the endpoints and
/// waits (bounded) for the threads. Another stop signal meanwhile ends the process at once
/// (puts are safe either way, their durable prefix survives), unless it came within
/// [`REPEAT_SIGNAL_WINDOW`] of the first: `timeout(1)`, process supervisors and a terminal's
/// Ctrl-C plus a forwarding parent often deliver one stop request twice.
fn stop_shards(
    node: &NodeShared,
    threads: Vec<JoinHandle<()>>,
    events: &mpsc::Receiver<Event>,
    grace: Duration,
    first_signal: Option<Instant>,
) {
    node.request_stop();
    let grace_end = Instant::now() + grace;
    let mut hard_end = None;
    while threads.iter().any(|t| !t.is_finished()) {
        let now = Instant::now();
        match hard_end {
            None if now >= grace_end => {
                node.request_hard_stop();
                hard_end = Some(now + HARD_STOP_WAIT);
            }
            Some(end) if now >= end => {
                let running = threads.iter().filter(|t| !t.is_finished()).count();
                tracing::error!(running, "shards did not stop in time; exiting anyway");
                return;
            }
            _ => {}
        }
        match events.recv_timeout(STOP_POLL) {
            Ok(Event::Signal(sig, at)) => {
                if first_signal.is_some_and(|first| at - first < REPEAT_SIGNAL_WINDOW) {
                    tracing::debug!(signal = sig.name(), "repeated stop signal ignored");
                } else {
                    tracing::warn!(signal = sig.name(), "another stop signal: exiting now");
                    std::process::exit(1);
                }
            }
            Ok(Event::Shard(ShardEvent::Failed { shard, error })) => {
                tracing::error!(shard, %error, "shard failed while stopping");
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Unreachable while `run` holds a sender; the join below still bounds nothing
            // worse than the threads' own deadlines.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(STOP_POLL),
        }
    }
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a shard thread panicked");
        }
    }
}

fn build_report(
    node: &NodeShared,
    node_id: Uuid,
    name: &str,
    shard_addrs: &[SocketAddr],
    draining: bool,
) -> NodeReport {
    let totals = node.totals();
    NodeReport {
        version: REPORT_VERSION,
        node_id: node_id.hyphenated().to_string(),
        name: name.to_owned(),
        shard_addrs: shard_addrs.to_vec(),
        capacity: node.capacity(),
        used: totals.used_bytes,
        chunk_count: totals.chunk_count,
        in_flight: totals.in_flight,
        draining,
        read_only: node.read_only(),
        software: env!("CARGO_PKG_VERSION").to_owned(),
        cluster_id: None,
        scrub: None,
    }
}

/// Free space of the data dir's filesystem (for unprivileged users) plus what the node's chunks
/// already take: the capacity must not shrink as the node fills.
fn default_capacity(data_dir: &Path, used: u64) -> anyhow::Result<u64> {
    let free = free_space(data_dir)
        .with_context(|| format!("cannot measure free space of {}", data_dir.display()))?;
    Ok(free.saturating_add(used))
}

// statvfs field widths differ between targets (u32 on some 32-bit ones).
#[allow(clippy::useless_conversion)]
fn free_space(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string alive for the call; `st` is a valid out
    // pointer that statvfs fills completely on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}
