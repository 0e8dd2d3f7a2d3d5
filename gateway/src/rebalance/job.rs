//! The rebalance job: plans with [`super::plan`] and runs the moves in the background, one
//! crash-safe move per part ([`crate::meta::Meta::begin_move`] ... `release_moved_sources`),
//! throttled to `rebalance_rate` bytes per second overall and `rebalance_concurrency` moves at
//! once per node (as source or target), both changeable while it runs; paused and resumed on
//! demand.
//!
//! What starts a run: a node seen for the first time (converge), a node that turns `draining`
//! (drain), and `POST /admin/rebalance` (converge if the fill spread exceeds the threshold or
//! when forced, else drain). A trigger that arrives during a run is kept and runs next.
//!
//! On start, moves a previous process left unfinished are rolled back before anything else
//! ([`crate::meta::Meta::roll_back_unfinished_moves`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use sixfold_wire::{ChunkMeta, FileFacts};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::plan::{self, Mode, Move, PlanFile, PlanNode, PlanPart, Trigger};
use crate::commit_marks::{COMMIT_MARK_WAIT, wire_mark};
use crate::meta::{
    BeginOutcome, CommitMark, FileRecord, MetaError, NodeState, SharedMeta, SwapOutcome,
    new_chunk_id, unix_ms_now,
};
use crate::node_client::SharedNodeClient;

/// Files planned per metadata page.
const FILE_PAGE: usize = 512;
/// Frames queued between the source read and the target write of one move.
const COPY_FRAMES: usize = 4;
/// How long an interrupted run waits at start for every node to be back before it goes on
/// with those that are.
const RESUME_WAIT: Duration = Duration::from_secs(60);
/// How often the job looks at the nodes (new ones, drains) and at sources due for release.
const TICK: Duration = Duration::from_secs(1);

/// The job's settings; rate and concurrency can change at run time ([`Rebalancer::set_limits`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebalanceSettings {
    /// Bytes per second over all moves; 0 = unlimited.
    pub rate: u64,
    /// Moves at once per node, as source or as target (at least 1).
    pub concurrency: u32,
    /// Fill spread (`used / capacity`, fullest minus emptiest eligible node) above which an
    /// on-demand rebalance converges.
    pub threshold: f64,
    /// How long a moved part's source is kept after the swap, for reads that began before it.
    pub grace: Duration,
}

// The threshold is checked to be a number in 0..=1 (never NaN), so equality is total.
impl Eq for RebalanceSettings {}

impl Default for RebalanceSettings {
    fn default() -> Self {
        RebalanceSettings {
            rate: DEFAULT_RATE,
            concurrency: 2,
            threshold: 0.05,
            grace: Duration::from_secs(3600),
        }
    }
}

/// 64 MiB/s: a fraction of what one node takes, so uploads and downloads keep most of it.
pub const DEFAULT_RATE: u64 = 64 << 20;

/// What the nodes look like to the planner.
pub trait NodeSource: Send + Sync + 'static {
    fn plan_nodes(&self) -> Vec<PlanNode>;
}

/// Whether this gateway may run the job now: with several gateways over one store, the one
/// holding the job's lease (claimed or renewed by each call). Alone, always.
#[async_trait::async_trait]
pub trait RunGate: Send + Sync + 'static {
    async fn claim(&self) -> bool;
}

/// The gate of a gateway that is alone.
pub struct AlwaysRun;

#[async_trait::async_trait]
impl RunGate for AlwaysRun {
    async fn claim(&self) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl RunGate for crate::cluster::Cluster {
    async fn claim(&self) -> bool {
        self.claim_rebalance().await
    }
}

impl NodeSource for crate::cluster::Cluster {
    fn plan_nodes(&self) -> Vec<PlanNode> {
        self.nodes()
            .into_iter()
            .map(|v| PlanNode {
                id: v.id,
                capacity: v.capacity,
                used: v.used.saturating_add(v.reserved),
                // A node not yet verified over QUIC is neither readable nor eligible.
                state: if v.state_name == "joining" {
                    NodeState::Down
                } else {
                    v.state
                },
            })
            .collect()
    }
}

/// `idle`, `running` or `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Idle,
    Running,
    Paused,
}

/// Progress of the current (or last) run, as `GET /admin/rebalance` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: JobState,
    /// The mode of the current or last run.
    pub mode: Option<Mode>,
    /// What started it: `node_added`, `draining`, `on_demand`.
    pub trigger: Option<&'static str>,
    pub parts_planned: u64,
    pub bytes_planned: u64,
    pub parts_done: u64,
    pub bytes_done: u64,
    pub parts_failed: u64,
    pub bytes_failed: u64,
    /// Moves that found their file deleted or changed (nothing to do).
    pub parts_skipped: u64,
    /// Moves copying right now.
    pub moves_in_flight: u64,
    /// Moves recorded in the metadata: copying, or swapped and waiting to release the source.
    pub moves_recorded: u64,
    /// Bytes per second moved since the run started.
    pub rate_bytes_per_sec: u64,
    /// Seconds left at that rate (`None` before the first byte or when nothing is left).
    pub eta_secs: Option<u64>,
    /// The limits in force.
    pub rate_limit_bytes_per_sec: u64,
    pub concurrency_per_node: u32,
    pub threshold: f64,
    /// The fill spread among eligible nodes when the run was planned.
    pub fill_spread: f64,
    pub started_unix_ms: Option<u64>,
    pub finished_unix_ms: Option<u64>,
}

/// Counters shared by the job, the API and `/metrics`.
#[derive(Debug, Default)]
pub struct Progress {
    running: AtomicBool,
    parts_planned: AtomicU64,
    bytes_planned: AtomicU64,
    parts_done: AtomicU64,
    bytes_done: AtomicU64,
    parts_failed: AtomicU64,
    bytes_failed: AtomicU64,
    parts_skipped: AtomicU64,
    in_flight: AtomicU64,
    recorded: AtomicU64,
    /// Bytes copied (whole and partial moves), for the rate.
    bytes_copied: AtomicU64,
    started_unix_ms: AtomicU64,
    finished_unix_ms: AtomicU64,
    spread_millionths: AtomicU64,
    moves_total: AtomicU64,
}

impl Progress {
    /// The `sixfold_rebalance_*` lines of `/metrics`.
    pub fn render(&self, out: &mut String, paused: bool, rate_limit: u64) {
        use std::fmt::Write as _;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = if !self.running.load(Ordering::Relaxed) {
            "idle"
        } else if paused {
            "paused"
        } else {
            "running"
        };
        let _ = writeln!(
            out,
            "# HELP sixfold_rebalance_state Whether the rebalance job is idle, running or paused.\n# TYPE sixfold_rebalance_state gauge"
        );
        for s in ["idle", "running", "paused"] {
            let _ = writeln!(
                out,
                "sixfold_rebalance_state{{state=\"{s}\"}} {}",
                u8::from(s == state)
            );
        }
        for (name, help, value) in [
            (
                "sixfold_rebalance_parts_planned",
                "Parts the current or last rebalance run planned to move.",
                g(&self.parts_planned),
            ),
            (
                "sixfold_rebalance_bytes_planned",
                "Bytes the current or last rebalance run planned to move.",
                g(&self.bytes_planned),
            ),
            (
                "sixfold_rebalance_parts_done",
                "Parts moved by the current or last run.",
                g(&self.parts_done),
            ),
            (
                "sixfold_rebalance_bytes_done",
                "Bytes moved by the current or last run.",
                g(&self.bytes_done),
            ),
            (
                "sixfold_rebalance_parts_failed",
                "Moves of the current or last run that failed (the part stayed where it was).",
                g(&self.parts_failed),
            ),
            (
                "sixfold_rebalance_moves_in_flight",
                "Moves copying right now.",
                g(&self.in_flight),
            ),
            (
                "sixfold_rebalance_rate_limit_bytes_per_second",
                "rebalance_rate (0 = unlimited).",
                rate_limit,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sixfold_rebalance_moves_total Moves completed since the gateway started.\n# TYPE sixfold_rebalance_moves_total counter\nsixfold_rebalance_moves_total {}",
            g(&self.moves_total)
        );
    }

    fn reset(&self, parts: u64, bytes: u64, spread: f64, now_ms: u64) {
        for a in [
            &self.parts_done,
            &self.bytes_done,
            &self.parts_failed,
            &self.bytes_failed,
            &self.parts_skipped,
            &self.bytes_copied,
            &self.finished_unix_ms,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.parts_planned.store(parts, Ordering::Relaxed);
        self.bytes_planned.store(bytes, Ordering::Relaxed);
        self.started_unix_ms.store(now_ms, Ordering::Relaxed);
        self.spread_millionths
            .store((spread * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Handle on the job. Cheap to clone.
#[derive(Clone)]
pub struct Rebalancer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Rebalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebalancer").finish_non_exhaustive()
    }
}

struct Inner {
    meta: SharedMeta,
    store: SharedNodeClient,
    nodes: Arc<dyn NodeSource>,
    rate: AtomicU64,
    concurrency: AtomicU32,
    threshold: f64,
    grace: Duration,
    paused: AtomicBool,
    resumed: Notify,
    progress: Arc<Progress>,
    /// What the next run is for (the strongest trigger seen since the last run began).
    pending: std::sync::Mutex<Option<Trigger>>,
    /// A run the previous process did not finish is to go on once the nodes are back: a plan
    /// made while they still count as down would move nothing.
    resume: AtomicBool,
    kick: Notify,
    status_meta: std::sync::Mutex<(Option<Mode>, Option<&'static str>)>,
    /// Moves running per node (source and target both count).
    busy: std::sync::Mutex<HashMap<Uuid, u32>>,
    freed: Notify,
    /// The pacing clock of the rate limit: when the next byte may go.
    pace: AsyncMutex<Instant>,
    shutdown: CancellationToken,
    gate: Arc<dyn RunGate>,
    /// Whether this gateway held the job's lease at its last claim: taking it over means the
    /// moves of the previous holder, unfinished, are rolled back first.
    gated_in: AtomicBool,
    /// The lease was lost during a run: start no more moves.
    lost: AtomicBool,
}

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("rebalance_concurrency must be at least 1")]
    ZeroConcurrency,
}

impl Rebalancer {
    /// Rolls back the moves a previous process left unfinished, then starts the job.
    pub async fn start(
        meta: SharedMeta,
        store: SharedNodeClient,
        nodes: Arc<dyn NodeSource>,
        settings: RebalanceSettings,
    ) -> Result<Rebalancer, MetaError> {
        Self::start_gated(meta, store, nodes, settings, Arc::new(AlwaysRun)).await
    }

    /// [`Rebalancer::start`] running only while `gate` says so (one gateway of several). The
    /// roll-back waits until this gateway holds the job: the unfinished moves may be another
    /// live gateway's.
    pub async fn start_gated(
        meta: SharedMeta,
        store: SharedNodeClient,
        nodes: Arc<dyn NodeSource>,
        settings: RebalanceSettings,
        gate: Arc<dyn RunGate>,
    ) -> Result<Rebalancer, MetaError> {
        let gated_in = gate.claim().await;
        let rolled = if gated_in {
            roll_back(&meta, &store).await?
        } else {
            Vec::new()
        };
        let job = Rebalancer {
            inner: Arc::new(Inner {
                meta,
                store,
                nodes,
                rate: AtomicU64::new(settings.rate),
                concurrency: AtomicU32::new(settings.concurrency.max(1)),
                threshold: settings.threshold,
                grace: settings.grace,
                paused: AtomicBool::new(false),
                resumed: Notify::new(),
                progress: Arc::new(Progress::default()),
                pending: std::sync::Mutex::new(None),
                resume: AtomicBool::new(!rolled.is_empty()),
                kick: Notify::new(),
                status_meta: std::sync::Mutex::new((None, None)),
                busy: std::sync::Mutex::new(HashMap::new()),
                freed: Notify::new(),
                pace: AsyncMutex::new(Instant::now()),
                shutdown: CancellationToken::new(),
                gate,
                gated_in: AtomicBool::new(gated_in),
                lost: AtomicBool::new(false),
            }),
        };
        let runner = job.clone();
        tokio::spawn(async move { runner.run().await });
        Ok(job)
    }

    /// Claims the job's lease; on taking it over, rolls back what the previous holder left
    /// unfinished. Whether this gateway runs the job now.
    async fn gate_open(&self) -> bool {
        let held = self.inner.gate.claim().await;
        let before = self.inner.gated_in.swap(held, Ordering::Relaxed);
        if held && !before {
            match roll_back(&self.inner.meta, &self.inner.store).await {
                Ok(rolled) if !rolled.is_empty() => {
                    self.inner.resume.store(true, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "rebalance: rolling back the previous holder's moves failed; will retry");
                    self.inner.gated_in.store(false, Ordering::Relaxed);
                    return false;
                }
            }
        }
        held
    }
}

/// Rolls back the moves a previous process (or gateway) left unfinished.
async fn roll_back(
    meta: &SharedMeta,
    store: &SharedNodeClient,
) -> Result<Vec<crate::meta::MoveRecord>, MetaError> {
    {
        let rolled = meta.roll_back_unfinished_moves(unix_ms_now()).await?;
        for m in &rolled {
            tracing::warn!(
                file_id = %m.file_id,
                part = m.part_index,
                from = %m.from_node,
                to = %m.to_node,
                "rebalance: a move left unfinished by the previous process is rolled back; its copy is queued for deletion"
            );
        }
        if !rolled.is_empty() {
            store.wake_cleanup();
        }
        Ok(rolled)
    }
}

impl Rebalancer {
    /// The counters `/metrics` shows.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.inner.progress
    }

    /// Renders the `sixfold_rebalance_*` lines.
    pub fn render_metrics(&self, out: &mut String) {
        self.inner.progress.render(
            out,
            self.inner.paused.load(Ordering::Relaxed),
            self.inner.rate.load(Ordering::Relaxed),
        );
    }

    /// Asks for a run (`POST /admin/rebalance`).
    pub fn trigger(&self, trigger: Trigger) {
        {
            let mut pending = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *pending = Some(stronger(*pending, trigger));
        }
        self.inner.kick.notify_one();
    }

    /// Changes the rate (bytes/s, 0 = unlimited) and/or the per-node concurrency now.
    pub fn set_limits(
        &self,
        rate: Option<u64>,
        concurrency: Option<u32>,
    ) -> Result<(), SettingsError> {
        if concurrency == Some(0) {
            return Err(SettingsError::ZeroConcurrency);
        }
        if let Some(rate) = rate {
            self.inner.rate.store(rate, Ordering::Relaxed);
        }
        if let Some(c) = concurrency {
            self.inner.concurrency.store(c, Ordering::Relaxed);
            self.inner.freed.notify_waiters();
        }
        tracing::info!(rate = ?rate, concurrency = ?concurrency, "rebalance limits changed");
        Ok(())
    }

    /// Stops starting moves (running ones finish).
    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::Relaxed);
        tracing::info!("rebalance paused");
    }

    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::Relaxed);
        self.inner.resumed.notify_waiters();
        tracing::info!("rebalance resumed");
    }

    /// Stops the job (the gateway is shutting down).
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// The figures of `GET /admin/rebalance`.
    pub async fn status(&self) -> Status {
        let recorded = self
            .inner
            .meta
            .move_count()
            .await
            .unwrap_or_else(|_| self.inner.progress.recorded.load(Ordering::Relaxed));
        let p = &self.inner.progress;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let running = p.running.load(Ordering::Relaxed);
        let paused = self.inner.paused.load(Ordering::Relaxed);
        let started = g(&p.started_unix_ms);
        let finished = g(&p.finished_unix_ms);
        let end = if running { unix_ms_now() } else { finished };
        let secs = end.saturating_sub(started) as f64 / 1000.0;
        let copied = g(&p.bytes_copied);
        let rate = if secs > 0.0 {
            (copied as f64 / secs) as u64
        } else {
            0
        };
        let left = g(&p.bytes_planned)
            .saturating_sub(g(&p.bytes_done))
            .saturating_sub(g(&p.bytes_failed));
        let (mode, trigger) = *self
            .inner
            .status_meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Status {
            state: match (running, paused) {
                (false, _) => JobState::Idle,
                (true, true) => JobState::Paused,
                (true, false) => JobState::Running,
            },
            mode,
            trigger,
            parts_planned: g(&p.parts_planned),
            bytes_planned: g(&p.bytes_planned),
            parts_done: g(&p.parts_done),
            bytes_done: g(&p.bytes_done),
            parts_failed: g(&p.parts_failed),
            bytes_failed: g(&p.bytes_failed),
            parts_skipped: g(&p.parts_skipped),
            moves_in_flight: g(&p.in_flight),
            moves_recorded: recorded,
            rate_bytes_per_sec: rate,
            eta_secs: (running && rate > 0 && left > 0).then(|| left.div_ceil(rate)),
            rate_limit_bytes_per_sec: self.inner.rate.load(Ordering::Relaxed),
            concurrency_per_node: self.inner.concurrency.load(Ordering::Relaxed),
            threshold: self.inner.threshold,
            fill_spread: g(&p.spread_millionths) as f64 / 1e6,
            started_unix_ms: (started > 0).then_some(started),
            finished_unix_ms: (finished > 0).then_some(finished),
        }
    }

    /// The loop: watches the nodes, releases sources whose grace is over, runs what is asked.
    async fn run(self) {
        let mut known: Option<HashSet<Uuid>> = None;
        let mut draining: HashSet<Uuid> = HashSet::new();
        let resume_by = Instant::now() + RESUME_WAIT;
        loop {
            if !self.gate_open().await {
                // Another gateway runs the job; what this one knew of the nodes is stale.
                known = None;
                tokio::select! {
                    () = self.inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(TICK) => {}
                }
                continue;
            }
            self.release_sources().await;
            let nodes = self.inner.nodes.plan_nodes();
            // Converging again moves what the interrupted run had left, and nothing it moved.
            if self.inner.resume.load(Ordering::Relaxed)
                && (nodes.iter().all(|n| n.state != NodeState::Down) || Instant::now() >= resume_by)
            {
                self.inner.resume.store(false, Ordering::Relaxed);
                tracing::info!("rebalance: resuming the run the previous process did not finish");
                self.trigger(Trigger::NodeAdded);
            }
            let ids: HashSet<Uuid> = nodes.iter().map(|n| n.id).collect();
            match &mut known {
                // The nodes known at start are not new.
                None => known = Some(ids),
                Some(known) => {
                    let added: Vec<Uuid> = nodes
                        .iter()
                        .filter(|n| n.state == NodeState::Up && !known.contains(&n.id))
                        .map(|n| n.id)
                        .collect();
                    for id in &added {
                        known.insert(*id);
                        tracing::info!(node = %id, "rebalance: a new node is up");
                    }
                    if !added.is_empty() {
                        self.trigger(Trigger::NodeAdded);
                    }
                    known.retain(|id| ids.contains(id));
                }
            }
            let now_draining: HashSet<Uuid> = nodes
                .iter()
                .filter(|n| n.state == NodeState::Draining)
                .map(|n| n.id)
                .collect();
            if now_draining.difference(&draining).next().is_some() {
                self.trigger(Trigger::Draining);
            }
            draining = now_draining;
            let next = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(trigger) = next {
                self.run_once(trigger).await;
                continue;
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = self.inner.kick.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn release_sources(&self) {
        let now = unix_ms_now();
        match self.inner.meta.move_count().await {
            Ok(0) => {
                self.inner.progress.recorded.store(0, Ordering::Relaxed);
                return;
            }
            Ok(n) => self.inner.progress.recorded.store(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "rebalance: reading the moves failed");
                return;
            }
        }
        match self.inner.meta.release_moved_sources(now).await {
            Ok(released) if !released.is_empty() => {
                tracing::info!(
                    sources = released.len(),
                    "rebalance: moved parts' sources are past their grace period and queued for deletion"
                );
                self.inner.store.wake_cleanup();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rebalance: releasing moved sources failed"),
        }
    }

    /// The moves of the page of files after `after`, and where the next page starts (`None`
    /// after the last).
    async fn plan_page(
        &self,
        nodes: Vec<PlanNode>,
        mode: Mode,
        after: Option<Uuid>,
    ) -> Result<(Vec<Move>, Option<Uuid>), MetaError> {
        let page: Vec<FileRecord> = self.inner.meta.list_files(after, FILE_PAGE).await?;
        let next = if page.len() == FILE_PAGE {
            page.last().map(|f| f.id)
        } else {
            None
        };
        let files: Vec<PlanFile> = page
            .iter()
            .map(|f| PlanFile {
                id: f.id,
                parts: f
                    .parts
                    .iter()
                    .map(|p| PlanPart {
                        index: p.index,
                        node: p.node_id,
                        len: p.stored_len(),
                    })
                    .collect(),
            })
            .collect();
        Ok((plan::plan(&files, &nodes, mode), next))
    }

    async fn run_once(&self, trigger: Trigger) {
        let nodes = self.inner.nodes.plan_nodes();
        let spread = plan::fill_spread(&nodes);
        let mode = plan::choose_mode(trigger, spread, self.inner.threshold);
        let name = match trigger {
            Trigger::NodeAdded => "node_added",
            Trigger::Draining => "draining",
            Trigger::OnDemand { .. } => "on_demand",
        };
        // First pass: count, for progress and ETA.
        let (mut parts, mut bytes) = (0u64, 0u64);
        let mut after = None;
        loop {
            match self.plan_page(nodes.clone(), mode, after).await {
                Ok((moves, next)) => {
                    parts += moves.len() as u64;
                    bytes += moves.iter().map(|m| m.len).sum::<u64>();
                    match next {
                        Some(id) => after = Some(id),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rebalance: planning failed");
                    return;
                }
            }
        }
        let p = &self.inner.progress;
        p.reset(parts, bytes, spread, unix_ms_now());
        *self
            .inner
            .status_meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (Some(mode), Some(name));
        p.running.store(true, Ordering::Relaxed);
        tracing::info!(
            trigger = name,
            ?mode,
            parts,
            bytes,
            spread,
            "rebalance started"
        );
        // The lease is renewed while the run goes on; once lost, no new move starts (another
        // gateway rolls back what is in flight, and the swaps of those fail safely).
        self.inner.lost.store(false, Ordering::Relaxed);
        let renew = {
            let job = self.clone();
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(TICK).await;
                    if !job.inner.gate.claim().await {
                        job.inner.lost.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            "rebalance: this gateway lost the job's lease; the run stops"
                        );
                        return;
                    }
                }
            }))
        };
        let mut after = None;
        loop {
            match self.plan_page(nodes.clone(), mode, after).await {
                Ok((moves, next)) => {
                    self.run_moves(moves).await;
                    match next {
                        Some(id)
                            if !self.inner.shutdown.is_cancelled()
                                && !self.inner.lost.load(Ordering::Relaxed) =>
                        {
                            after = Some(id)
                        }
                        _ => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rebalance: planning failed part way");
                    break;
                }
            }
        }
        drop(renew);
        p.running.store(false, Ordering::Relaxed);
        p.finished_unix_ms.store(unix_ms_now(), Ordering::Relaxed);
        tracing::info!(
            trigger = name,
            done = p.parts_done.load(Ordering::Relaxed),
            failed = p.parts_failed.load(Ordering::Relaxed),
            skipped = p.parts_skipped.load(Ordering::Relaxed),
            "rebalance finished"
        );
    }

    /// Runs a page of moves: each file's moves in order, files side by side within the
    /// per-node limits.
    async fn run_moves(&self, moves: Vec<Move>) {
        let mut by_file: Vec<(Uuid, Vec<Move>)> = Vec::new();
        for m in moves {
            match by_file.last_mut() {
                Some((id, list)) if *id == m.file_id => list.push(m),
                _ => by_file.push((m.file_id, vec![m])),
            }
        }
        let files = futures_util::stream::iter(by_file.into_iter().map(|(_, list)| {
            let job = self.clone();
            async move { job.run_file(list).await }
        }));
        // Enough files at once to keep every node's slots busy; the slots themselves bound
        // what runs.
        let width = 64;
        files.buffer_unordered(width).collect::<Vec<()>>().await;
    }

    /// A file's moves, in order; stops at the first that does not complete, since a later
    /// one may depend on it.
    async fn run_file(self, list: Vec<Move>) {
        for m in list {
            if self.inner.shutdown.is_cancelled() || self.inner.lost.load(Ordering::Relaxed) {
                return;
            }
            self.wait_unpaused().await;
            let _slots = self.acquire(m.from, m.to).await;
            if !self.move_part(m).await {
                return;
            }
        }
    }

    async fn wait_unpaused(&self) {
        while self.inner.paused.load(Ordering::Relaxed) {
            let resumed = self.inner.resumed.notified();
            if !self.inner.paused.load(Ordering::Relaxed) {
                return;
            }
            tokio::select! {
                () = resumed => {}
                () = tokio::time::sleep(TICK) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Waits for a slot on both nodes.
    async fn acquire(&self, from: Uuid, to: Uuid) -> Slots {
        loop {
            let freed = self.inner.freed.notified();
            {
                let limit = self.inner.concurrency.load(Ordering::Relaxed).max(1);
                let mut busy = self
                    .inner
                    .busy
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let count = |id: &Uuid| busy.get(id).copied().unwrap_or(0);
                if count(&from) < limit && count(&to) < limit {
                    *busy.entry(from).or_insert(0) += 1;
                    *busy.entry(to).or_insert(0) += 1;
                    return Slots {
                        inner: Arc::clone(&self.inner),
                        nodes: [from, to],
                    };
                }
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Waits until `n` more bytes may be sent under the rate limit.
    async fn throttle(&self, n: u64) {
        let rate = self.inner.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return;
        }
        let until = {
            let mut next = self.inner.pace.lock().await;
            let now = Instant::now();
            // No credit for idle time beyond a tenth of a second.
            let floor = now.checked_sub(Duration::from_millis(100)).unwrap_or(now);
            let start = (*next).max(floor);
            *next = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *next
        };
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            () = self.inner.shutdown.cancelled() => {}
        }
    }

    /// One move, all steps. Returns whether the part is now where the plan wanted it (or
    /// nothing was left to do).
    async fn move_part(&self, m: Move) -> bool {
        let p = &self.inner.progress;
        let to_chunk = new_chunk_id();
        let now = unix_ms_now();
        let begun = self
            .inner
            .meta
            .begin_move(&m.file_id, m.part_index, &m.from, &m.to, to_chunk, now)
            .await;
        let file = match begun {
            Ok(BeginOutcome::Recorded(file)) => file,
            Ok(BeginOutcome::Stale(why)) => {
                tracing::debug!(file_id = %m.file_id, part = m.part_index, why, "rebalance: move skipped");
                p.parts_skipped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Err(e) => {
                tracing::warn!(file_id = %m.file_id, part = m.part_index, error = %e, "rebalance: recording the move failed");
                p.parts_failed.fetch_add(1, Ordering::Relaxed);
                p.bytes_failed.fetch_add(m.len, Ordering::Relaxed);
                return false;
            }
        };
        p.in_flight.fetch_add(1, Ordering::Relaxed);
        p.recorded.fetch_add(1, Ordering::Relaxed);
        let copied = self.copy(&file, &m, to_chunk).await;
        p.in_flight.fetch_sub(1, Ordering::Relaxed);
        let outcome = match copied {
            Ok(()) => {
                let delivered = self.deliver_mark(&file, m.to, to_chunk).await;
                let release_after = unix_ms_now().saturating_add(
                    u64::try_from(self.inner.grace.as_millis()).unwrap_or(u64::MAX),
                );
                let now = unix_ms_now();
                self.inner
                    .meta
                    .swap_move(&m.to, &to_chunk, delivered, release_after, now)
                    .await
            }
            Err(why) => {
                tracing::warn!(file_id = %m.file_id, part = m.part_index, from = %m.from, to = %m.to, error = %why, "rebalance: copy failed; the part stays where it is");
                let now = unix_ms_now();
                if let Err(e) = self.inner.meta.abandon_move(&m.to, &to_chunk, now).await {
                    tracing::warn!(error = %e, "rebalance: dropping the failed copy failed; it is rolled back at the next start");
                }
                self.inner.store.wake_cleanup();
                p.parts_failed.fetch_add(1, Ordering::Relaxed);
                p.bytes_failed.fetch_add(m.len, Ordering::Relaxed);
                return false;
            }
        };
        match outcome {
            Ok(SwapOutcome::Swapped) => {
                tracing::debug!(file_id = %m.file_id, part = m.part_index, from = %m.from, to = %m.to, "rebalance: part moved");
                p.parts_done.fetch_add(1, Ordering::Relaxed);
                p.bytes_done.fetch_add(m.len, Ordering::Relaxed);
                p.moves_total.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(SwapOutcome::Abandoned(why)) => {
                tracing::info!(file_id = %m.file_id, part = m.part_index, why, "rebalance: the file changed during the move; the copy is queued for deletion");
                self.inner.store.wake_cleanup();
                p.parts_skipped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Ok(SwapOutcome::Unknown) => {
                p.parts_failed.fetch_add(1, Ordering::Relaxed);
                p.bytes_failed.fetch_add(m.len, Ordering::Relaxed);
                false
            }
            Err(e) => {
                tracing::warn!(file_id = %m.file_id, part = m.part_index, error = %e, "rebalance: the swap failed; the move is rolled back at the next start");
                p.parts_failed.fetch_add(1, Ordering::Relaxed);
                p.bytes_failed.fetch_add(m.len, Ordering::Relaxed);
                false
            }
        }
    }

    /// Step 2 and 3: reads the source chunk, writes it to the target under the new id with the
    /// file's header facts, and checks the target's length and crc32c and its own.
    async fn copy(&self, file: &FileRecord, m: &Move, to_chunk: [u8; 16]) -> Result<(), String> {
        let part = file
            .parts
            .iter()
            .find(|p| p.index == m.part_index)
            .ok_or("the file has no such part")?;
        let len = part.stored_len();
        let meta = ChunkMeta {
            file_id: *file.id.as_bytes(),
            part_index: part.index,
            part_count: u32::try_from(file.parts.len()).unwrap_or(u32::MAX),
            file_offset: part.offset,
            length: len,
        };
        let facts = FileFacts {
            name: file.name.clone(),
            content_type: file.content_type.clone(),
            created_unix_ms: file.created_unix_ms,
        };
        let mut source = self
            .inner
            .store
            .get_chunk(part.node_id, part.chunk_id, 0, len)
            .await
            .map_err(|e| format!("reading the source: {e}"))?;
        let (tx, rx) = mpsc::channel::<Bytes>(COPY_FRAMES);
        // The writer runs as its own task, so it drains the channel while the feed below waits
        // on the rate limit or a full channel; dropped (aborted) on any early return.
        let put = AbortOnDrop(tokio::spawn(self.inner.store.put_chunk(
            m.to,
            to_chunk,
            meta,
            Some(facts),
            rx,
        )));
        let mut crc = 0u32;
        let mut sent = 0u64;
        loop {
            let next = tokio::select! {
                next = source.next() => next,
                () = self.inner.shutdown.cancelled() => return Err("the gateway is stopping".into()),
            };
            match next {
                Some(Ok(bytes)) => {
                    self.throttle(bytes.len() as u64).await;
                    crc = sixfold_wire::crc::crc32c_append(crc, &bytes);
                    sent += bytes.len() as u64;
                    self.inner
                        .progress
                        .bytes_copied
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    if tx.send(bytes).await.is_err() {
                        // The writer stopped: its result says why.
                        break;
                    }
                }
                Some(Err(e)) => return Err(format!("reading the source: {e}")),
                None => break,
            }
        }
        drop(tx);
        let ack = match put.wait().await {
            Ok(Ok(ack)) => ack,
            Ok(Err(e)) => return Err(format!("writing the copy: {e}")),
            Err(e) => return Err(format!("the copy's writer task: {e}")),
        };
        if sent != len || ack.length != len {
            return Err(format!(
                "length: {sent} bytes read, {} acknowledged, {len} expected",
                ack.length
            ));
        }
        if crc != part.crc32c || ack.crc32c != part.crc32c {
            return Err(format!(
                "crc32c: {crc:08x} read, {:08x} acknowledged, {:08x} recorded",
                ack.crc32c, part.crc32c
            ));
        }
        Ok(())
    }

    /// Sends the copy its commit mark; whether the node acknowledged it in time.
    async fn deliver_mark(&self, file: &FileRecord, node: Uuid, chunk: [u8; 16]) -> bool {
        let Some(mark) = CommitMark::of(file) else {
            return false;
        };
        let sent = self
            .inner
            .store
            .mark_chunks(node, vec![wire_mark(chunk, &mark)]);
        matches!(
            tokio::time::timeout(COMMIT_MARK_WAIT, sent).await,
            Ok(Ok(n)) if n > 0
        )
    }
}

/// A spawned task that is aborted if dropped before it was awaited.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A slot on a move's source and target, given back on drop.
struct Slots {
    inner: Arc<Inner>,
    nodes: [Uuid; 2],
}

impl Drop for Slots {
    fn drop(&mut self) {
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in &self.nodes {
            if let Some(n) = busy.get_mut(id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    busy.remove(id);
                }
            }
        }
        drop(busy);
        self.inner.freed.notify_waiters();
    }
}

/// Of two triggers, the one that plans more.
fn stronger(a: Option<Trigger>, b: Trigger) -> Trigger {
    let rank = |t: Trigger| match t {
        Trigger::Draining => 0,
        Trigger::OnDemand { force: false } => 1,
        Trigger::NodeAdded => 2,
        Trigger::OnDemand { force: true } => 3,
    };
    match a {
        Some(a) if rank(a) > rank(b) => a,
        _ => b,
    }
}

#[cfg(test)]
mod tests;
