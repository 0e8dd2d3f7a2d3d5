//! The gateway's cluster layer: which nodes exist and are up (registration, heartbeats, down
//! detection), how to reach them (one pooled QUIC connection per node shard), the node
//! protocol's requests (put, get, delete, stat, list), and the background cleanup (expired
//! sessions, the delete queue, orphan chunks).
//!
//! [`Cluster`] is the handle the HTTP layer uses; it is cheap to clone.

pub(crate) mod cleanup;
mod config;
mod error;
mod health;
mod in_flight;
pub mod membership;
use membership::Membership;
pub mod peers;
mod pool;
mod quic_config;
pub mod reconcile;
mod reconnect;
mod registration;
mod registry;
mod rpc;
pub mod scrub;
mod shard;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sixfold_wire::{
    ChunkId, ChunkInfo, ChunkMark, ChunkMeta, FileFacts, InventoryEntry, MAX_INVENTORY_LIMIT,
    MAX_MARKS, NodeInfo, Request, Response, Status,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use config::{
    ClusterConfig, DEFAULT_GATEWAY_TIMEOUT, DEFAULT_NODE_MAX_PARTS, DEFAULT_ORPHAN_GRACE,
    ETHERNET_MTU, JUMBO_MTU, MAX_QUIC_MTU, MIN_QUIC_MTU, MtuSetting, ParseMtuError,
};
pub use error::{ClusterError, NodeError, RemoveNodeError};
pub use in_flight::{Hold, Ledger, PartHold, Reservation, Settle};
pub use pool::ConnectionStats;
pub use registry::NodeView;
pub use rpc::{ChunkReader, PutAck};
pub use shard::shard_addr;

use crate::meta::{NodeState, SharedMeta};
use crate::placement::Candidate;
use pool::Pool;
use registry::{Registry, ReportKind, Route, Timing, ValidReport};

/// Handle on the cluster layer. Clones share one state.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClusterConfig,
    meta: SharedMeta,
    registry: RwLock<Registry>,
    pool: Pool,
    wake: Arc<Notify>,
    /// Bumped whenever a node is marked down, for transfers that watch their node.
    down: tokio::sync::watch::Sender<u64>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    reconcile: Arc<reconcile::ReconcileStats>,
    /// When this gateway process started (Unix ms): its own sessions recorded earlier are
    /// leftovers of a process that died.
    started_unix_ms: u64,
    /// The cluster id each node last reported keeping (report version 3).
    claims: Mutex<std::collections::HashMap<Uuid, Uuid>>,
    /// What the nodes report of their scrub, and the operator's requests for a pass.
    scrub: Mutex<scrub::ScrubBoard>,
    /// The cleanup (session expiry, deletes, commit marks, orphan scans) runs on the one
    /// gateway holding this lease.
    cleanup_lease: Arc<peers::JobLease>,
    /// The rebalancer runs on the one gateway holding this lease.
    rebalance_lease: Arc<peers::JobLease>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.read().views().len())
            .field("up", &self.up_count())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Loads known nodes from `meta` (down until they heartbeat), binds the QUIC client
    /// endpoint, and spawns the down detection and cleanup tasks. Must run inside a tokio
    /// runtime.
    ///
    /// `tls` is the gateway's mutual-TLS client config (a `rustls::ClientConfig` or the
    /// `Arc` that `sixfold_certs::GatewayTls::client_config` returns); it must offer ALPN
    /// `sixfold/1`.
    pub async fn start(
        cfg: ClusterConfig,
        meta: SharedMeta,
        tls: impl Into<Arc<rustls::ClientConfig>>,
    ) -> Result<Cluster, ClusterError> {
        cfg.validate().map_err(ClusterError::Config)?;
        let started_unix_ms = cfg.clock.unix_ms();
        let tls = quic_config::quic_tls(tls.into())?;
        let records = meta.list_nodes().await?;
        let mut registry = Registry::new(Timing {
            down_after: cfg.down_after,
            persist_interval: cfg.persist_interval,
            orphan_scan_delay: cfg.orphan_scan_delay,
        });
        let known = records.len();
        registry.load(records);
        let pool = Pool::new(tls, cfg.mtu, cfg.stream_window)?;
        let inner = Arc::new(Inner {
            cfg,
            meta,
            registry: RwLock::new(registry),
            pool,
            wake: Arc::new(Notify::new()),
            down: tokio::sync::watch::Sender::new(0),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            reconcile: Arc::default(),
            started_unix_ms,
            claims: Mutex::default(),
            scrub: Mutex::default(),
            cleanup_lease: Arc::new(peers::JobLease::new("cleanup")),
            rebalance_lease: Arc::new(peers::JobLease::new("rebalance")),
        });
        let mut tasks = vec![
            tokio::spawn(health::run(Arc::downgrade(&inner))),
            tokio::spawn(cleanup::run(Arc::downgrade(&inner))),
        ];
        if inner.meta.coordination().is_some() {
            tasks.push(tokio::spawn(peers::run(Arc::downgrade(&inner))));
        }
        *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
        tracing::info!(known_nodes = known, "cluster layer started");
        Ok(Cluster { inner })
    }

    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.inner
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.cfg
    }

    /// Records that `report`'s node holds data this metadata cannot account for; from now on
    /// nothing on it is deleted and `/health` says `recovery_needed`.
    async fn mark_unaccounted(&self, report: &ValidReport, why: membership::Unaccounted) {
        let reason = match why {
            membership::Unaccounted::UnknownChunks(n) => {
                format!("the node holds {n} chunks but this metadata has never known it")
            }
            membership::Unaccounted::OtherCluster(id) => {
                format!("the node belongs to cluster {id}")
            }
        };
        tracing::error!(
            node = %report.id,
            name = ?report.name,
            chunks = report.chunk_count,
            %reason,
            "this node's data is not in the gateway's metadata: nothing on it will be deleted. \
             If the metadata file was lost or replaced (or restored from a backup), run \
             `sixfold-gateway admin recover` to rebuild it from the nodes; a node that should \
             be emptied must be wiped by hand and removed (DELETE /admin/nodes/ID)"
        );
        let mark = crate::meta::UnaccountedNode {
            node_id: report.id,
            chunk_count: report.chunk_count,
            reason,
            since_unix_ms: self.clock().unix_ms(),
        };
        if let Err(e) = self.meta().mark_unaccounted(&mark).await {
            tracing::error!(node = %report.id, error = %e, "cannot record the unaccounted node")
        }
    }

    /// When this gateway process's cluster layer started (Unix ms).
    pub fn started_unix_ms(&self) -> u64 {
        self.inner.started_unix_ms
    }

    /// What the orphan reconciler has quarantined, deleted and refused.
    pub fn reconcile_stats(&self) -> &Arc<reconcile::ReconcileStats> {
        &self.inner.reconcile
    }

    /// The clock every deadline and stamp of the cluster layer reads.
    pub fn clock(&self) -> &crate::clock::SharedClock {
        &self.inner.cfg.clock
    }

    pub(crate) fn meta(&self) -> &SharedMeta {
        &self.inner.meta
    }

    fn heartbeat_interval(&self) -> Duration {
        self.inner.cfg.heartbeat_interval
    }

    /// Placement candidates: every known node, eligible only when up.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.read().candidates()
    }

    /// Every known node, for `GET /nodes`.
    fn scrub_board(&self) -> std::sync::MutexGuard<'_, scrub::ScrubBoard> {
        self.inner
            .scrub
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a node's scrub report (report version 4): kept for `/nodes`, `/metrics` and
    /// `GET /admin/scrub`, and the files owning newly reported damaged chunks are marked
    /// damaged. A metadata failure is logged; the next heartbeat reports the chunks again.
    pub async fn apply_scrub(
        &self,
        node: Uuid,
        report: Option<sixfold_wire::registration::ScrubReport>,
    ) {
        let new = self.scrub_board().update(node, report);
        if new.is_empty() {
            return;
        }
        let now = self.clock().unix_ms();
        match self.meta().mark_damaged(&node, &new, now).await {
            Ok(outcomes) => {
                let mut board = self.scrub_board();
                for (report, outcome) in new.iter().zip(outcomes) {
                    let chunk = scrub::ChunkHex(&report.chunk_id);
                    match outcome {
                        crate::meta::DamageOutcome::Marked { file_id, index } => {
                            tracing::error!(%node, chunk = %chunk, %file_id, part = index, damage = ?report.damage, block = ?report.block, found_by = ?report.found_by, "file marked damaged: a node found one of its parts corrupt or unreadable");
                        }
                        crate::meta::DamageOutcome::AlreadyMarked { .. } => {}
                        crate::meta::DamageOutcome::Unreferenced => {
                            tracing::warn!(%node, chunk = %chunk, damage = ?report.damage, "a node reports a damaged chunk that no file references");
                        }
                        // Asked again with the next report.
                        crate::meta::DamageOutcome::InUpload => continue,
                    }
                    board.handled(node, report.chunk_id);
                }
            }
            Err(e) => {
                tracing::error!(%node, chunks = new.len(), error = %e, "cannot mark the files of damaged chunks; will retry");
            }
        }
    }

    /// Asks every node that serves (up, read-only or draining, and verified) for a scrub pass,
    /// handed over in its next heartbeat answer. Returns the nodes asked.
    pub fn request_scrub(&self) -> Vec<Uuid> {
        let nodes: Vec<Uuid> = self
            .nodes()
            .into_iter()
            .filter(|n| matches!(n.state_name, "up" | "read_only" | "draining"))
            .map(|n| n.id)
            .collect();
        self.scrub_board().request(&nodes, self.clock().unix_ms());
        tracing::info!(nodes = nodes.len(), "scrub pass requested");
        nodes
    }

    /// Whether the heartbeat answer to `node` asks for a scrub pass (once per request).
    pub fn take_scrub_request(&self, node: Uuid) -> bool {
        self.scrub_board()
            .take_request(node, self.clock().unix_ms())
    }

    /// Every known node's scrub, with its state, for `GET /admin/scrub`.
    pub fn scrub_status(&self) -> Vec<(NodeView, scrub::NodeScrubStatus)> {
        let views = self.nodes();
        let board = self.scrub_board();
        views
            .into_iter()
            .map(|v| {
                let status = board.status(v.id);
                (v, status)
            })
            .collect()
    }

    /// The last scrub report of every node that sent one.
    pub fn scrub_reports(&self) -> Vec<(Uuid, sixfold_wire::registration::ScrubReport)> {
        self.scrub_board().reports()
    }

    pub fn nodes(&self) -> Vec<NodeView> {
        self.read().views()
    }

    /// Nodes currently up (eligible for new parts).
    pub fn up_count(&self) -> usize {
        self.read().up_count()
    }

    /// The state of one node, if known.
    pub fn node_state(&self, node: Uuid) -> Option<NodeState> {
        self.read().state(&node)
    }

    /// QUIC connections currently pooled and open.
    pub fn open_connections(&self) -> usize {
        self.inner.pool.open_connections()
    }

    /// Path figures (MTU, RTT, losses) of every open pooled connection.
    pub fn connection_stats(&self) -> Vec<ConnectionStats> {
        self.inner.pool.stats()
    }

    /// Nudges the cleanup task (after an abort queued deletes).
    pub fn wake_cleanup(&self) {
        self.inner.wake.notify_one();
    }

    /// The internal routes nodes report to: `POST /internal/nodes/register` and
    /// `POST /internal/nodes/heartbeat`. Serve them only on the internal listener (mutual TLS,
    /// node certificates): they trust the identity the listener puts into each request.
    pub fn internal_router(&self) -> axum::Router {
        registration::router(self.clone())
    }

    /// Streams exactly `meta.length` bytes received from `body` to the chunk's shard and
    /// returns only after the node acknowledged the part durable.
    pub async fn put_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        meta: ChunkMeta,
        facts: Option<FileFacts>,
        body: mpsc::Receiver<Bytes>,
    ) -> Result<PutAck, NodeError> {
        self.put_chunk_from(node, chunk_id, meta, 0, facts, body)
            .await
    }

    /// Like [`Cluster::put_chunk`], continuing an interrupted put at `resume_from` (the
    /// chunk's durable length, see [`Cluster::stat_chunk`]); `body` carries the bytes from
    /// there to the end.
    ///
    /// The node is asked only once the first body byte is there: a part whose bytes come
    /// later in the upload holds no stream, no node buffer and no preallocated space while
    /// the parts before it are sent, and an upload that stalls never reserves space for the
    /// parts it has not reached. A node marked down while the part is under way fails it at
    /// once (within the down-detection time, not the QUIC idle timeout).
    pub async fn put_chunk_from(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        meta: ChunkMeta,
        resume_from: u64,
        facts: Option<FileFacts>,
        mut body: mpsc::Receiver<Bytes>,
    ) -> Result<PutAck, NodeError> {
        let expected = meta.length.saturating_sub(resume_from);
        let first = if expected > 0 {
            match body.recv().await {
                Some(first) => Some(first),
                None => return Err(NodeError::ShortBody { expected, got: 0 }),
            }
        } else {
            None
        };
        let put = async {
            let route = self.read().route(&node, &chunk_id)?;
            let deadline = self.deadline();
            let streams = self.open_stream(node, route, deadline).await?;
            let timeout = self.inner.cfg.request_timeout;
            rpc::put(
                streams,
                chunk_id,
                meta,
                resume_from,
                facts,
                first,
                &mut body,
                deadline,
                timeout,
            )
            .await
        };
        tokio::select! {
            result = put => result,
            () = self.until_down(node) => Err(marked_down(node)),
        }
    }

    /// Resolves once `node` is marked down (at once if it is down already).
    pub fn until_down(&self, node: Uuid) -> impl Future<Output = ()> + Send + 'static {
        let cluster = self.clone();
        // Subscribed before the first look, so a change between the two is not missed.
        let mut changes = self.inner.down.subscribe();
        async move {
            loop {
                if cluster.node_state(node) == Some(NodeState::Down) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Opens a get of `len` bytes at `offset` of a chunk; the reader yields the body as it
    /// arrives.
    pub async fn get_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    ) -> Result<ChunkReader, NodeError> {
        let route = self.read().route(&node, &chunk_id)?;
        let deadline = self.deadline();
        let streams = self.open_stream(node, route, deadline).await?;
        rpc::get(streams, chunk_id, offset, len, deadline).await
    }

    /// Deletes a chunk; a chunk the node does not have counts as deleted.
    pub async fn delete_chunk(&self, node: Uuid, chunk_id: ChunkId) -> Result<(), NodeError> {
        match self
            .call_chunk(node, chunk_id, Request::Delete { chunk_id })
            .await
        {
            Ok(Response::Delete) => Ok(()),
            Ok(_) => Err(unexpected_response()),
            Err(NodeError::Status {
                status: Status::NotFound,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records commit marks on `node`, one request per shard (and per [`MAX_MARKS`]), durably
    /// when this returns `Ok`; returns how many the node recorded (marks for chunks it does not
    /// hold are not).
    pub async fn mark_chunks(&self, node: Uuid, marks: Vec<ChunkMark>) -> Result<usize, NodeError> {
        let shards = self.shard_count(node)?;
        let mut by_shard: std::collections::BTreeMap<usize, Vec<ChunkMark>> = Default::default();
        for m in marks {
            by_shard
                .entry(usize::from(sixfold_wire::shard_for(
                    &m.chunk_id,
                    shards as u16,
                )))
                .or_default()
                .push(m);
        }
        let mut recorded = 0;
        for (shard, marks) in by_shard {
            for batch in marks.chunks(usize::from(MAX_MARKS)) {
                let req = Request::Mark {
                    marks: batch.to_vec(),
                };
                match self.call_shard(node, shard, req).await? {
                    Response::Mark { recorded: n } => recorded += usize::from(n),
                    _ => return Err(unexpected_response()),
                }
            }
        }
        Ok(recorded)
    }

    /// One inventory page of shard `shard` of `node`: chunks after `after` with their header
    /// facts and commit marks.
    pub async fn inventory(
        &self,
        node: Uuid,
        shard: usize,
        after: Option<ChunkId>,
    ) -> Result<(Vec<InventoryEntry>, bool), NodeError> {
        let req = Request::Inventory {
            after,
            limit: MAX_INVENTORY_LIMIT,
        };
        match self.call_shard(node, shard, req).await? {
            Response::Inventory { entries, more } => Ok((entries, more)),
            _ => Err(unexpected_response()),
        }
    }

    /// Has the node read a chunk whole and check it against its crcs; its length and crc32c.
    /// The deadline grows with the chunk (at 50 MB/s, on top of the request timeout).
    pub async fn verify_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        length: u64,
    ) -> Result<(u64, u32), NodeError> {
        let route = self.read().route(&node, &chunk_id)?;
        let deadline = self.deadline() + Duration::from_millis(length / 50_000);
        let streams = self.open_stream(node, route, deadline).await?;
        match rpc::call(streams, Request::Verify { chunk_id }, deadline).await? {
            Response::Verify { length, crc32c } => Ok((length, crc32c)),
            _ => Err(unexpected_response()),
        }
    }

    /// What the node knows of a chunk.
    pub async fn stat_chunk(&self, node: Uuid, chunk_id: ChunkId) -> Result<ChunkInfo, NodeError> {
        match self
            .call_chunk(node, chunk_id, Request::Stat { chunk_id })
            .await?
        {
            Response::Stat(info) => Ok(info),
            _ => Err(unexpected_response()),
        }
    }

    /// One page of the chunks on shard `shard` of `node`, ids strictly after `after`; the flag
    /// says whether more may follow.
    pub async fn list_chunks(
        &self,
        node: Uuid,
        shard: usize,
        after: Option<ChunkId>,
        limit: u32,
    ) -> Result<(Vec<ChunkInfo>, bool), NodeError> {
        let limit = limit.clamp(1, sixfold_wire::MAX_LIST_LIMIT);
        match self
            .call_shard(node, shard, Request::List { after, limit })
            .await?
        {
            Response::List { entries, more } => Ok((entries, more)),
            _ => Err(unexpected_response()),
        }
    }

    /// Capacity and load of one shard of `node`.
    pub async fn node_info(&self, node: Uuid, shard: usize) -> Result<NodeInfo, NodeError> {
        match self.call_shard(node, shard, Request::NodeInfo).await? {
            Response::NodeInfo(info) => Ok(info),
            _ => Err(unexpected_response()),
        }
    }

    /// Number of shards `node` reported.
    pub fn shard_count(&self, node: Uuid) -> Result<usize, NodeError> {
        Ok(self.read().shard_routes(&node)?.len())
    }

    /// Stops the background tasks, persists the nodes' latest figures, and closes every
    /// connection. Requests still running fail.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let records = self.read().records();
        for record in &records {
            if let Err(e) = self.save_node(record).await {
                tracing::warn!(error = %e, "persisting nodes at shutdown failed");
                break;
            }
        }
        self.leave().await;
        self.inner
            .pool
            .close(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
        tracing::info!("cluster layer stopped");
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.inner.cfg.request_timeout
    }

    async fn call_chunk(
        &self,
        node: Uuid,
        chunk_id: ChunkId,
        req: Request,
    ) -> Result<Response, NodeError> {
        let route = self.read().route(&node, &chunk_id)?;
        self.call_route(node, route, req).await
    }

    async fn call_shard(
        &self,
        node: Uuid,
        shard: usize,
        req: Request,
    ) -> Result<Response, NodeError> {
        let routes = self.read().shard_routes(&node)?;
        let route = routes.get(shard).copied().ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node {node} has {} shards, not {}",
                routes.len(),
                shard + 1
            ))
        })?;
        self.call_route(node, route, req).await
    }

    async fn call_route(
        &self,
        node: Uuid,
        route: Route,
        req: Request,
    ) -> Result<Response, NodeError> {
        let deadline = self.deadline();
        let streams = self.open_stream(node, route, deadline).await?;
        rpc::call(streams, req, deadline).await
    }

    /// Opens a request stream to the shard at `route`. A pooled connection that turns out to be
    /// dead is replaced once: nothing has been sent on it yet, so retrying is safe.
    async fn open_stream(
        &self,
        node: Uuid,
        route: Route,
        deadline: tokio::time::Instant,
    ) -> Result<(SendStream, RecvStream), NodeError> {
        let pool = &self.inner.pool;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = pool.connection(node, route, deadline).await?;
            match tokio::time::timeout_at(deadline, conn.open_bi()).await {
                Ok(Ok(streams)) => return Ok(streams),
                Ok(Err(e)) => {
                    pool.discard(node, route.addr, &conn);
                    if attempt >= 2 {
                        return Err(NodeError::Unavailable(format!(
                            "connection to {} lost: {e}",
                            route.addr
                        )));
                    }
                    tracing::debug!(addr = %route.addr, error = %e, "pooled connection lost; reconnecting");
                }
                Err(_) => return Err(NodeError::Timeout),
            }
        }
    }

    /// Applies a node report and persists what changed.
    /// Returns the cluster id to tell the node: on registration, to a node whose data this
    /// metadata accounts for.
    async fn apply_report(&self, report: &ValidReport, kind: ReportKind) -> Option<Uuid> {
        if let Some(claim) = report.cluster_id {
            self.inner
                .claims
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(report.id, claim);
        }
        let outcome = self.write().apply_report(
            report,
            kind,
            self.clock().now().into_std(),
            self.clock().unix_ms(),
        );
        self.relay(report, kind).await;
        if outcome.reconnect {
            self.inner.pool.forget_node(report.id);
        }
        let joined = matches!(outcome.transition, Some((None, _)));
        // Judged when the node joins or registers (starts): what it holds against what this
        // metadata knows, and the cluster id it keeps against ours.
        let mut tell = None;
        if joined || kind == ReportKind::Register {
            let ours = self.meta().cluster_id();
            let verdict = membership::judge(ours, report.cluster_id, !joined, report.chunk_count);
            match verdict {
                Membership::Unaccounted(why) => self.mark_unaccounted(report, why).await,
                Membership::Joins if report.cluster_id.is_none() => {
                    let flagged = self.meta().is_unaccounted(&report.id).await.unwrap_or(true);
                    // A node whose data is not accounted for never learns this id.
                    if !flagged {
                        tell = Some(ours);
                    }
                }
                Membership::Joins | Membership::Member => {}
            }
        }
        match outcome.transition {
            Some((None, state)) => {
                tracing::info!(
                    node = %report.id,
                    name = ?report.name,
                    shards = report.shard_addrs.len(),
                    ?state,
                    "node joined"
                );
            }
            Some((Some(from), to)) => tracing::info!(
                node = %report.id,
                name = ?report.name,
                ?from,
                ?to,
                "node state changed"
            ),
            None if kind == ReportKind::Register => tracing::info!(
                node = %report.id,
                name = ?report.name,
                "node re-registered"
            ),
            None => {}
        }
        if let Some(generation) = outcome.probe {
            let cluster = self.clone();
            let id = report.id;
            // Bounded by the request timeout of each NodeInfo; the report is answered now.
            tokio::spawn(async move { cluster.verify_node(id, generation).await });
        }
        if let Some(record) = outcome.persist {
            self.persist(record).await;
        }
        if matches!(outcome.transition, Some((before, _)) if before.is_none_or(|s| s == NodeState::Down))
        {
            // Deletes queued while the node was away can go now.
            self.wake_cleanup();
        }
        tell
    }

    /// Applies a report another gateway received `age` ago (at `received_ms`, Unix ms): the node
    /// is alive for this gateway too. The receiving gateway judged the node's membership and
    /// stored its record; this one only verifies the node over QUIC before counting it up.
    async fn apply_relayed(
        &self,
        report: &ValidReport,
        kind: ReportKind,
        age: Duration,
        received_ms: u64,
    ) {
        let at = self.clock().now().into_std().checked_sub(age);
        let at = at.unwrap_or_else(|| self.clock().now().into_std());
        let outcome = self.write().apply_report(report, kind, at, received_ms);
        if outcome.reconnect {
            self.inner.pool.forget_node(report.id);
        }
        match outcome.transition {
            Some((None, state)) => {
                tracing::info!(node = %report.id, name = ?report.name, ?state, "node joined (reported through another gateway)")
            }
            Some((Some(from), to)) => {
                tracing::info!(node = %report.id, name = ?report.name, ?from, ?to, "node state changed (reported through another gateway)")
            }
            None => {}
        }
        if let Some(generation) = outcome.probe {
            let cluster = self.clone();
            let id = report.id;
            tokio::spawn(async move { cluster.verify_node(id, generation).await });
        }
        if matches!(outcome.transition, Some((before, _)) if before.is_none_or(|s| s == NodeState::Down))
        {
            self.wake_cleanup();
        }
    }

    /// Sets (or with `None` clears) the state an operator chose for node `id` and persists it
    /// before returning, so that it outlasts a restart of the gateway. `None` for an unknown
    /// node.
    pub async fn set_operator_state(
        &self,
        id: Uuid,
        operator: Option<crate::meta::OperatorState>,
    ) -> Result<Option<NodeView>, crate::meta::MetaError> {
        let Some((record, change)) = self.write().set_operator_state(&id, operator) else {
            return Ok(None);
        };
        self.meta().upsert_node(&record).await?;
        tracing::warn!(
            node = %id,
            name = ?record.name,
            operator_state = ?operator,
            change = ?change,
            "operator set the node's state"
        );
        Ok(self.nodes().into_iter().find(|n| n.id == id))
    }

    /// The cluster ids the nodes report keeping, by node.
    pub fn claimed_cluster_ids(&self) -> std::collections::HashMap<Uuid, Uuid> {
        self.inner
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets node `id` for good: its record goes from the metadata and the registry. Only a
    /// down node holding nothing can go: no part of a file or upload on it in the metadata,
    /// and no chunk in its last report (which would be orphans nobody could clean up).
    pub async fn remove_node(&self, id: Uuid) -> Result<(), RemoveNodeError> {
        let (state, chunks) = self
            .read()
            .removal_facts(&id)
            .ok_or(RemoveNodeError::NotFound)?;
        if state != "down" {
            return Err(RemoveNodeError::Serving { state });
        }
        let referenced = self.meta().referenced_count(&id).await?;
        if referenced > 0 || chunks > 0 {
            return Err(RemoveNodeError::NotEmpty {
                parts: referenced,
                chunks,
            });
        }
        self.meta().remove_node(&id).await?;
        if let Some(coord) = self.meta().coordination()
            && let Err(e) = coord.forget_report(id).await
        {
            tracing::warn!(node = %id, error = %e, "cannot drop the node's relayed report");
        }
        self.write().remove(&id);
        self.inner.pool.forget_node(id);
        tracing::info!(node = %id, "node removed");
        Ok(())
    }

    /// Reaches every shard of `id` over QUIC (NodeInfo through the pool, which checks that the
    /// certificate met there names `id`) and marks the node verified: only then is it up.
    async fn verify_node(&self, id: Uuid, generation: u64) {
        let result = async {
            let routes = self.read().probe_routes(&id, generation).ok_or_else(|| {
                NodeError::Unavailable("the node changed while it was being verified".into())
            })?;
            for &route in &routes {
                match self.call_route(id, route, Request::NodeInfo).await? {
                    Response::NodeInfo(_) => {}
                    _ => return Err(unexpected_response()),
                }
            }
            Ok::<usize, NodeError>(routes.len())
        }
        .await;
        match result {
            Ok(shards) => {
                if self.write().mark_verified(&id, generation) {
                    tracing::info!(node = %id, shards, "node verified over QUIC: up");
                }
            }
            Err(error) => {
                let retry_in =
                    self.write()
                        .probe_failed(&id, generation, self.clock().now().into_std());
                tracing::warn!(
                    node = %id,
                    %error,
                    retry_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                    "node registered but not verified over QUIC; it stays joining (no new parts)"
                );
            }
        }
    }

    /// Marks silent nodes down.
    async fn sweep(&self) {
        let changed = self.write().sweep(self.clock().now().into_std());
        if changed.iter().any(|t| t.to == NodeState::Down) {
            self.inner.down.send_modify(|generation| *generation += 1);
        }
        for t in changed {
            tracing::info!(
                node = %t.id,
                name = ?t.name,
                from = ?t.from,
                to = ?t.to,
                "node state changed: heartbeats missed"
            );
            self.persist(t.record).await;
        }
    }

    /// Stores a node's record from this gateway's registry. With several gateways the stored
    /// operator state stays as it is: another gateway may have changed it since.
    async fn save_node(
        &self,
        record: &crate::meta::NodeRecord,
    ) -> Result<(), crate::meta::MetaError> {
        match self.meta().coordination() {
            Some(coord) => coord.save_node_figures(record).await,
            None => self.meta().upsert_node(record).await,
        }
    }

    async fn persist(&self, record: crate::meta::NodeRecord) {
        let id = record.id;
        let Err(error) = self.save_node(&record).await else {
            return;
        };
        tracing::warn!(node = %id, %error, "persisting node record failed; will retry");
        self.write().persist_failed(&id);
    }

    fn serving_nodes(&self) -> Vec<Uuid> {
        self.read().serving_nodes()
    }

    fn due_orphan_scans(&self) -> Vec<Uuid> {
        let interval = self.inner.cfg.orphan_scan_interval;
        self.write()
            .take_due_orphan_scans(self.clock().now().into_std(), interval)
    }
}

/// The error of a transfer cut short because its node was marked down.
pub fn marked_down(node: Uuid) -> NodeError {
    NodeError::Unavailable(format!(
        "node {node} was marked down (missed heartbeats) during the transfer"
    ))
}

fn unexpected_response() -> NodeError {
    NodeError::Protocol(sixfold_wire::WireError::InvalidField {
        field: "op",
        reason: "the response does not match the request",
    })
}
