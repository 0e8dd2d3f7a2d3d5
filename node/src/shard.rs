//! Shard threads: thread-per-core, each pinned to a core and running its own monoio runtime on
//! the io_uring driver, with its own UDP port, QUIC endpoint, chunk store and buffer pool.
//!
//! Nothing is shared on the data path. Across threads there is only [`NodeShared`]: a few
//! counters per shard for the heartbeat, the node's capacity, and two stop flags the shard
//! polls (monoio cannot be woken from another thread without a file descriptor, and a 50 ms
//! poll costs nothing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::quic::{QuicEndpoint, QuicSettings};
use crate::scrub::{ScrubSettings, ScrubShared};
use crate::service::ShardService;
use crate::store::{ChunkStore, StoreConfig, Usage};

/// How often a shard looks at the stop flags.
const POLL: Duration = Duration::from_millis(50);
/// How often a shard republishes its store usage for heartbeats.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// After the endpoint is closed, the longest wait for handlers to interrupt their puts (each
/// one a data sync).
const INTERRUPT_WAIT: Duration = Duration::from_secs(30);
/// Time given to the connection close frames to leave.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Per-shard figures the heartbeat reports.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub used_bytes: AtomicU64,
    pub chunk_count: AtomicU64,
    pub in_flight: AtomicU32,
    /// The shard's filesystem is full: it takes no new parts.
    pub disk_full: AtomicBool,
}

/// The only state the shard threads share with the rest of the node.
#[derive(Debug)]
pub struct NodeShared {
    pub node_id: Uuid,
    pub shards: u16,
    capacity: AtomicU64,
    stopping: AtomicBool,
    hard_stop: AtomicBool,
    stats: Box<[ShardStats]>,
    /// The background scrub and what reads and scrubs found damaged.
    pub scrub: ScrubShared,
}

/// Sums over all shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub used_bytes: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
}

impl NodeShared {
    /// A node that does not scrub (see [`NodeShared::with_scrub`]).
    pub fn new(node_id: Uuid, shards: u16) -> Arc<Self> {
        Self::with_scrub(
            node_id,
            shards,
            ScrubShared::new(ScrubSettings::OFF, shards),
        )
    }

    pub fn with_scrub(node_id: Uuid, shards: u16, scrub: ScrubShared) -> Arc<Self> {
        Arc::new(Self {
            scrub,
            node_id,
            shards,
            capacity: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            hard_stop: AtomicBool::new(false),
            stats: (0..shards).map(|_| ShardStats::default()).collect(),
        })
    }

    pub fn stats(&self, shard: u16) -> &ShardStats {
        &self.stats[usize::from(shard)]
    }

    /// Whether any shard's filesystem is full: the node then reports itself read-only (the
    /// gateway cannot tell which shard a new part would hit).
    pub fn read_only(&self) -> bool {
        self.stats
            .iter()
            .any(|s| s.disk_full.load(Ordering::Relaxed))
    }

    pub fn totals(&self) -> Totals {
        self.stats.iter().fold(Totals::default(), |t, s| Totals {
            used_bytes: t.used_bytes + s.used_bytes.load(Ordering::Relaxed),
            chunk_count: t.chunk_count + s.chunk_count.load(Ordering::Relaxed),
            in_flight: t.in_flight + s.in_flight.load(Ordering::Relaxed),
        })
    }

    /// The node's capacity in bytes (set once at start).
    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    pub fn set_capacity(&self, bytes: u64) {
        self.capacity.store(bytes, Ordering::Relaxed);
    }

    /// One shard's share of the capacity: what `NodeInfo` reports next to that shard's usage.
    pub fn shard_capacity(&self) -> u64 {
        self.capacity() / u64::from(self.shards.max(1))
    }

    /// Stop taking new requests; let running ones finish.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The grace period is over: close the endpoints, interrupting what still runs.
    pub fn request_hard_stop(&self) {
        self.request_stop();
        self.hard_stop.store(true, Ordering::Release);
    }

    pub fn hard_stop(&self) -> bool {
        self.hard_stop.load(Ordering::Acquire)
    }
}

/// What one shard is started with.
pub struct ShardSpec {
    pub shard: u16,
    pub listen: SocketAddr,
    pub dir: PathBuf,
    pub tls: Arc<rustls::ServerConfig>,
    pub quic: QuicSettings,
    pub store: StoreConfig,
    /// Core to pin the thread to, if pinning is possible.
    pub core: Option<core_affinity::CoreId>,
}

/// What a shard thread tells the main thread.
#[derive(Debug)]
pub enum ShardEvent {
    /// The store is open and the endpoint bound at `addr` (the real port).
    Listening {
        shard: u16,
        addr: SocketAddr,
        usage: Usage,
    },
    /// The shard could not start, or its runtime failed.
    Failed { shard: u16, error: String },
    /// The shard stopped after a stop request.
    Stopped { shard: u16 },
}

/// Starts shard `spec.shard` on its own thread. Every outcome is reported through `events`.
pub fn spawn_shard<E>(
    spec: ShardSpec,
    node: Arc<NodeShared>,
    events: E,
) -> std::io::Result<JoinHandle<()>>
where
    E: Fn(ShardEvent) + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("shard-{}", spec.shard))
        .spawn(move || {
            let shard = spec.shard;
            if let Some(core) = spec.core
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(
                    shard,
                    core = core.id,
                    "could not pin the shard thread to its core"
                );
            }
            let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build();
            let mut runtime = match runtime {
                Ok(rt) => rt,
                Err(e) => {
                    events(ShardEvent::Failed {
                        shard,
                        error: format!(
                            "io_uring is not available on this kernel/container: {e} (the node \
                             needs Linux 5.10+ with io_uring allowed; containers may block it \
                             with seccomp or kernel.io_uring_disabled)"
                        ),
                    });
                    return;
                }
            };
            // A panic must reach the main thread as a failure, not leave a node that
            // heartbeats with a dead shard.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(run(spec, node, &events))
            }));
            match result {
                Ok(Ok(())) => events(ShardEvent::Stopped { shard }),
                Ok(Err(error)) => events(ShardEvent::Failed { shard, error }),
                Err(panic) => events(ShardEvent::Failed {
                    shard,
                    error: format!("panicked: {}", panic_message(panic.as_ref())),
                }),
            }
        })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

async fn run<E: Fn(ShardEvent)>(
    spec: ShardSpec,
    node: Arc<NodeShared>,
    events: &E,
) -> Result<(), String> {
    let shard = spec.shard;
    let store = ChunkStore::open(&spec.dir, spec.store)
        .await
        .map_err(|e| format!("cannot open the chunk store in {}: {e}", spec.dir.display()))?;
    // The store logs how it found its index; only what needs an operator is repeated here.
    let report = store.open_report();
    if report.unreadable > 0 {
        tracing::warn!(
            shard,
            files = report.unreadable,
            "chunk files with unreadable headers were left in place"
        );
    }
    let endpoint = QuicEndpoint::bind(spec.listen, spec.tls, &spec.quic)
        .map_err(|e| format!("cannot listen for QUIC on {}: {e}", spec.listen))?;
    let svc = ShardService::new(store, shard, Arc::clone(&node));
    // Published before the first registration, so a node that starts on a full disk says so.
    publish_space(&svc, &node);
    events(ShardEvent::Listening {
        shard,
        addr: endpoint.local_addr(),
        usage: svc.store().usage(),
    });
    drop(monoio::spawn(Rc::clone(&svc).serve(endpoint.clone())));
    let scrub = {
        let store = svc.store().clone();
        let node = Arc::clone(&node);
        monoio::spawn(async move {
            let shards = node.shards;
            crate::scrub::run_shard(store, shard, shards, &node.scrub, || node.stopping()).await;
        })
    };

    let mut last_stats = Instant::now();
    while !node.stopping() {
        monoio::time::sleep(POLL).await;
        if last_stats.elapsed() >= STATS_EVERY {
            svc.refresh_stats();
            svc.store().check_space();
            publish_space(&svc, &node);
            last_stats = Instant::now();
        }
    }
    // The scrub ends within a block read of the stop; it holds store objects, which must be
    // dropped inside the runtime.
    scrub.await;
    stop(&svc, &endpoint, &node).await;
    Ok(())
}

fn publish_space(svc: &ShardService, node: &NodeShared) {
    node.stats(svc.shard())
        .disk_full
        .store(svc.store().is_full(), Ordering::Relaxed);
}

/// Drains, then closes: new requests are refused at once, running ones get until the node's
/// hard stop, then the endpoint closes and whatever still runs is interrupted (puts keep their
/// durable prefix).
async fn stop(svc: &ShardService, endpoint: &QuicEndpoint, node: &NodeShared) {
    let shard = svc.shard();
    svc.start_draining();
    tracing::info!(shard, in_flight = svc.in_flight(), "shard draining");
    while svc.in_flight() > 0 && !node.hard_stop() {
        monoio::time::sleep(POLL).await;
    }
    if svc.in_flight() > 0 {
        tracing::warn!(
            shard,
            in_flight = svc.in_flight(),
            "grace period over: interrupting the requests still running"
        );
    }
    endpoint.close(
        u32::from(sixfold_wire::Status::ShuttingDown.code()),
        b"node shutting down",
    );
    let deadline = Instant::now() + INTERRUPT_WAIT;
    while svc.in_flight() > 0 && Instant::now() < deadline {
        monoio::time::sleep(POLL).await;
    }
    let _ = monoio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
    svc.refresh_stats();
    tracing::info!(shard, "shard stopped");
}
