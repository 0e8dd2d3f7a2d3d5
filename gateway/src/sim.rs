//! A seeded simulation of the gateway's upload, download and delete flows over the in-memory
//! node store and a real metadata store, with injected faults, in the spirit of TigerBeetle's
//! simulator: every step is drawn from one seed, and the invariants are checked after every
//! step.
//!
//! Faults: nodes that fail writes, acknowledge a wrong crc32c, store a chunk and lose the
//! acknowledgement, are down, or serve corrupted or broken reads; clients whose body breaks off;
//! gateways that crash mid-upload (the upload's future is leaked, so no abort runs) and restart
//! from the metadata, where the cleanup aborts what the dead process left; and time passing
//! beyond the session TTL, after which the cleanup expires what was never finished.
//!
//! Stray chunks (a write whose record was lost) are put on nodes behind the metadata's back;
//! the orphan scan (`reconcile::scan`, over the in-memory nodes' listings) must quarantine
//! them, delete them only after the grace period, and never queue a chunk that a file or a
//! live session references.
//!
//! Time is tokio's, paused (`start_paused`): the one clock ([`crate::clock::TokioClock`]) that
//! stamps sessions and files moves only when a step moves it, so expiry is exact and every run
//! of a seed is the same. The cleanup's own code runs: `cleanup::expire_sessions` for restarts
//! and expiry, `cleanup::drain_node` and `cleanup::deliver_marks` over the in-memory nodes for
//! the delete queue and the commit marks. The metadata is redb in memory through the
//! `MetaStore` port.
//!
//! Invariants, after every step:
//! - a committed file is complete: each part's chunk is on its node with the recorded length
//!   and crc32c, and the bytes are the uploaded bytes;
//! - nothing visible is half written: exactly the uploads that returned a file are listed
//!   (minus the deleted ones);
//! - no chunk is unaccounted: every stored chunk belongs to a committed file, a live session
//!   or the delete queue, so nothing that is referenced is ever queued for deletion;
//! - after a restart's cleanup, no session is left, and once the queue is processed every
//!   aborted session's chunks are gone.
//!
//! A failing seed prints itself; `SIXFOLD_SIM_SEED=N cargo test -p sixfold-gateway sim::`
//! replays just that one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::clock::{SharedClock, TokioClock};
use crate::cluster::cleanup::{deliver_marks, drain_node, expire_sessions};
use crate::cluster::reconcile::{OrphanTracker, ReconcileStats, ScanPorts, scan};
use crate::download::open_body;
use crate::meta::{ChunkId, FileRecord, Meta, SharedMeta};
use crate::metrics::Metrics;
use crate::node_client::SharedNodeClient;
use crate::node_client::memory::{Fault, MemoryNodes};
use crate::split::SplitPolicy;
use crate::upload::spool_budget::SpoolBudget;
use crate::upload::{FileInfo, UploadSettings, Uploader};

const NODES: usize = 8;
const STEPS: usize = 24;
const SEEDS: u64 = 200;
const MIN_PART: u64 = 1024;

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

/// The bytes of an uploaded file, from its content seed.
fn content(seed: u64, size: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..size).map(|_| rng.next() as u8).collect()
}

/// One simulated cluster: a gateway's uploader over the memory store and redb metadata.
struct World {
    seed: u64,
    step: usize,
    rng: Rng,
    store: MemoryNodes,
    shared: SharedNodeClient,
    meta: Meta,
    /// The same store as the gateway code sees it.
    port: SharedMeta,
    clock: SharedClock,
    /// When the current gateway process started (Unix ms): sessions older are leftovers.
    started_unix_ms: u64,
    uploader: Uploader,
    metrics: Arc<Metrics>,
    /// Committed and not deleted: id → content seed.
    expected: BTreeMap<Uuid, (u64, u64)>,
    /// The orphan scan's memory and counters, as the cleanup keeps them.
    tracker: OrphanTracker,
    reconcile_stats: ReconcileStats,
    /// Chunks put on nodes behind the metadata's back, not yet removed by the orphan scan.
    strays: HashSet<(Uuid, ChunkId)>,
    /// Crashed uploads leak their futures (no destructor may run); kept so they stay alive.
    crashed: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    _dir: tempfile::TempDir,
}

/// Sessions live this long unless finished.
const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Orphans wait this long in quarantine before the scan deletes them.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let clock: SharedClock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
        let meta = Meta::open_in_memory_with_clock(clock.clone()).expect("meta");
        let port: SharedMeta = Arc::new(meta.clone());
        let store = MemoryNodes::with_node_ids((0..NODES).map(|_| rng.uuid()).collect::<Vec<_>>());
        let shared: SharedNodeClient = Arc::new(store.clone());
        let metrics = Arc::new(Metrics::new());
        let settings = UploadSettings {
            max_file_size: 1 << 30,
            split: SplitPolicy {
                part_count: 6,
                min_part_size: MIN_PART,
            },
            spool_memory_bytes: 16 * 1024,
            spool_budget: SpoolBudget::new(u64::MAX),
            spool_dir: dir.path().join("spool"),
            session_ttl: SESSION_TTL,
            body_idle_timeout: Duration::from_secs(30),
            gateway_id: None,
        };
        let ids = Arc::new(AtomicU64::new(rng.next()));
        let uploader = Uploader::new(port.clone(), shared.clone(), metrics.clone(), settings)
            .with_clock(clock.clone())
            .with_file_ids(Arc::new(move || {
                let n = ids.fetch_add(1, Ordering::Relaxed);
                Uuid::from_u64_pair(n.rotate_left(17) ^ 0x5158_4c44, n)
            }));
        World {
            seed,
            step: 0,
            rng,
            store,
            shared,
            meta,
            port,
            started_unix_ms: clock.unix_ms(),
            clock,
            uploader,
            metrics,
            expected: BTreeMap::new(),
            tracker: OrphanTracker::default(),
            reconcile_stats: ReconcileStats::default(),
            strays: HashSet::new(),
            crashed: Vec::new(),
            _dir: dir,
        }
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "simulation seed {} failed at step {}: {what}\n\
             replay: SIXFOLD_SIM_SEED={} cargo test -p sixfold-gateway sim::",
            self.seed, self.step, self.seed
        );
    }

    fn random_node(&mut self) -> Uuid {
        let ids = self.store.node_ids();
        ids[self.rng.below(ids.len() as u64) as usize]
    }

    fn heal(&self) {
        for id in self.store.node_ids() {
            self.store.set_fault(id, Fault::None);
            self.store.set_up(id, true);
        }
    }

    fn size(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.rng.below(3),
            1 => self.rng.below(MIN_PART * 2),
            _ => self.rng.below(MIN_PART * 40),
        }
    }

    /// The body of an upload, in random frames; `break_at`: the client goes away there.
    fn body(
        &mut self,
        bytes: &[u8],
        break_at: Option<usize>,
    ) -> Vec<Result<Bytes, std::io::Error>> {
        let mut frames = Vec::new();
        let end = break_at.unwrap_or(bytes.len());
        let mut at = 0;
        while at < end {
            let to = (at + 1 + self.rng.below(8192) as usize).min(end);
            frames.push(Ok(Bytes::copy_from_slice(&bytes[at..to])));
            at = to;
        }
        if break_at.is_some() {
            frames.push(Err(std::io::Error::other("client went away")));
        }
        frames
    }

    async fn upload(&mut self) {
        let size = self.size();
        let content_seed = self.rng.next();
        let bytes = content(content_seed, size);
        let fault = match self.rng.below(10) {
            0 => Some(Fault::FailWrites),
            1 => Some(Fault::WrongAckCrc),
            2 => Some(Fault::LoseAck),
            _ => None,
        };
        if let Some(fault) = fault {
            let node = self.random_node();
            self.store.set_fault(node, fault);
        }
        if self.rng.chance(5) {
            let node = self.random_node();
            self.store.set_up(node, false);
        }
        let break_at = (size > 0 && self.rng.chance(10)).then(|| self.rng.below(size) as usize);
        let crash = self.rng.chance(8);
        let frames = self.body(&bytes, break_at);
        let info = FileInfo {
            name: Some(format!("f-{content_seed:x}")),
            content_type: None,
        };
        let unsized_body = self.rng.chance(20);
        let uploader = self.uploader.clone();
        let body = futures_util::stream::iter(frames);
        if crash {
            // The gateway dies part-way: the body stalls after some frames, and once the
            // upload waits for it the future is leaked rather than dropped, so none of its
            // destructors (the abort safety net) runs, as in a killed process.
            let stalled = Arc::new(AtomicBool::new(false));
            let flag = stalled.clone();
            let stall = futures_util::stream::poll_fn(move |_| {
                flag.store(true, Ordering::SeqCst);
                std::task::Poll::<Option<Result<Bytes, std::io::Error>>>::Pending
            });
            let body = body.take(1 + self.rng.below(4) as usize).chain(stall);
            let mut fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
                Box::pin(async move {
                    let _ = uploader.upload_sized(info, size, body).await;
                });
            // Recording the session runs on the blocking pool (a redb commit with fsync), so
            // the wait is for that state, bounded by time rather than by a count of polls.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stalled.load(Ordering::SeqCst) {
                if futures_util::poll!(fut.as_mut()).is_ready() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    self.fail("a crashing upload never reached its stalled body");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            // The current-thread runtime runs every task made ready meanwhile (the part
            // writers) before the process "dies".
            for _ in 0..64 {
                tokio::task::yield_now().await;
            }
            self.crashed.push(fut);
            self.heal();
            self.restart().await;
            return;
        }
        let result = if unsized_body {
            uploader.upload_unsized(info, body).await
        } else {
            uploader.upload_sized(info, size, body).await
        };
        self.heal();
        match result {
            Ok(file) => {
                if break_at.is_some() {
                    self.fail(format!(
                        "an upload whose body broke off committed {}",
                        file.id
                    ));
                }
                if file.size != size {
                    self.fail(format!("committed {} bytes of {size}", file.size));
                }
                self.expected.insert(file.id, (content_seed, size));
            }
            Err(e) if fault.is_none() && break_at.is_none() => {
                // At most one node of eight is down: six distinct nodes are always there.
                self.fail(format!("an upload with no fault failed: {e}"));
            }
            Err(_) => {}
        }
        // A failed upload has aborted its session by the time it returns.
        if !self.sessions().is_empty() {
            self.fail("a failed upload left its session behind");
        }
    }

    fn sessions(&self) -> Vec<crate::meta::UploadSession> {
        self.meta.expired_sessions(u64::MAX).expect("sessions")
    }

    /// A new gateway process over the same metadata, a moment later: its first cleanup pass
    /// aborts every session the dead one left.
    async fn restart(&mut self) {
        let metrics = Arc::new(Metrics::new());
        self.metrics = metrics;
        tokio::time::advance(Duration::from_millis(1 + self.rng.below(5_000))).await;
        self.started_unix_ms = self.clock.unix_ms();
        self.cleanup_sessions().await;
        if !self.sessions().is_empty() {
            self.fail("sessions left after the restart's cleanup");
        }
    }

    /// The cleanup's session pass at the clock's time, for the current process.
    async fn cleanup_sessions(&mut self) {
        let now = self.clock.unix_ms();
        let rule = crate::cluster::cleanup::SessionRule {
            now_ms: now,
            me: uuid::Uuid::nil(),
            started_ms: self.started_unix_ms,
            peers: Default::default(),
            gateway_timeout_ms: u64::MAX,
        };
        if let Err(e) = expire_sessions(self.port.as_ref(), &rule).await {
            self.fail(format!("the session cleanup failed: {e}"));
        }
    }

    /// Time passes: sessions not finished within their TTL are expired by the cleanup (the
    /// process lives on, so only their age condemns them).
    async fn time_passes(&mut self) {
        let before: Vec<_> = self.sessions();
        tokio::time::advance(SESSION_TTL + Duration::from_secs(1)).await;
        self.cleanup_sessions().await;
        let now = self.clock.unix_ms();
        for s in self.sessions() {
            if s.expires_unix_ms <= now {
                self.fail(format!("session {} outlived its expiry", s.file_id));
            }
        }
        if before.iter().any(|s| self.sessions().contains(s)) {
            self.fail("a session older than its TTL survived the cleanup");
        }
    }

    /// A node gains a chunk nothing knows of (a write whose record was lost).
    fn stray(&mut self) {
        let node = self.random_node();
        let chunk_id: ChunkId = self.rng.uuid().into_bytes();
        let len = self.rng.below(4096);
        let meta = sixfold_wire::ChunkMeta {
            file_id: self.rng.uuid().into_bytes(),
            part_index: 0,
            part_count: 1,
            file_offset: 0,
            length: len,
        };
        let bytes = Bytes::from(content(self.rng.next(), len));
        self.store.put_stray(node, chunk_id, meta, bytes);
        self.strays.insert((node, chunk_id));
    }

    /// The orphan scan over every node (as the cleanup runs it when a scan is due), then the
    /// delete pass for what it queued.
    async fn reconcile(&mut self) {
        let ports = ScanPorts {
            meta: self.port.as_ref(),
            lister: &self.store,
            clock: self.clock.as_ref(),
            stats: &self.reconcile_stats,
            session_ttl: SESSION_TTL,
            orphan_grace: ORPHAN_GRACE,
        };
        for node in self.store.node_ids() {
            // A down node cannot be listed: its scan fails and waits for the next round.
            let _ = scan(&ports, &mut self.tracker, node).await;
        }
        self.process_deletes().await;
    }

    /// The cleanup's delete and commit-mark passes over every node (what a cleanup round does
    /// for the nodes that answer).
    async fn process_deletes(&mut self) {
        for node in self.store.node_ids() {
            drain_node(self.port.as_ref(), self.shared.as_ref(), node).await;
            deliver_marks(self.port.as_ref(), self.shared.as_ref(), node).await;
        }
        let store = &self.store;
        self.strays
            .retain(|(node, chunk)| store.chunk(*node, chunk).is_some());
    }

    async fn delete(&mut self) {
        let Some(id) = self.pick_file() else { return };
        // As `DELETE /files/{id}` does: the record goes, then its chunks from their nodes now.
        match self.port.delete_file(&id).await.expect("delete") {
            Some(file) => {
                self.expected.remove(&id);
                crate::deletion::delete_chunks_now(
                    self.port.as_ref(),
                    &self.shared,
                    &file,
                    crate::deletion::DELETE_WAIT,
                )
                .await;
            }
            None => self.fail(format!("committed file {id} was not found to delete")),
        }
    }

    fn pick_file(&mut self) -> Option<Uuid> {
        if self.expected.is_empty() {
            return None;
        }
        let k = self.rng.below(self.expected.len() as u64) as usize;
        self.expected.keys().nth(k).copied()
    }

    async fn download(&mut self) {
        let Some(id) = self.pick_file() else { return };
        let file = self.file(&id);
        let (seed, size) = self.expected[&id];
        let whole = self.rng.chance(50) || size == 0;
        let (start, len) = if whole {
            (0, size)
        } else {
            let start = self.rng.below(size);
            (start, 1 + self.rng.below(size - start))
        };
        // Corrupted bytes are caught by a whole part's crc32c, so only whole-file reads get
        // them; broken reads may hit any read.
        let fault = match self.rng.below(6) {
            0 if whole => Some(Fault::CorruptReads),
            1 => Some(Fault::FailReadsMidway),
            _ => None,
        };
        let fault = fault.filter(|_| !file.parts.is_empty());
        if let Some(fault) = fault {
            let k = self.rng.below(file.parts.len() as u64) as usize;
            self.store.set_fault(file.parts[k].node_id, fault);
        }
        let got = match open_body(
            self.shared.clone(),
            self.metrics.clone(),
            &file,
            start,
            len,
            (),
        )
        .await
        {
            Ok(body) => {
                let frames: Vec<_> = body.collect().await;
                let mut bytes = Vec::new();
                let mut failed = false;
                for f in frames {
                    match f {
                        Ok(b) => bytes.extend_from_slice(&b),
                        Err(_) => failed = true,
                    }
                }
                (!failed).then_some(bytes)
            }
            Err(_) => None,
        };
        self.heal();
        let want = &content(seed, size)[start as usize..(start + len) as usize];
        match got {
            Some(bytes) if bytes != want => self.fail(format!(
                "download of {id} bytes {start}+{len} completed with wrong bytes (fault {fault:?})"
            )),
            None if fault.is_none() => {
                self.fail(format!("download of {id} failed with no fault injected"))
            }
            _ => {}
        }
    }

    fn file(&self, id: &Uuid) -> FileRecord {
        match self.meta.get_file(id).expect("get file") {
            Some(f) => f,
            None => self.fail(format!("committed file {id} is not visible")),
        }
    }

    fn check(&self) {
        // Exactly the committed files are visible.
        let listed: Vec<Uuid> = self
            .meta
            .list_files(None, 100_000)
            .expect("list")
            .into_iter()
            .map(|f| f.id)
            .collect();
        let expected: Vec<Uuid> = self.expected.keys().copied().collect();
        let mut sorted = listed.clone();
        sorted.sort();
        if sorted != expected {
            self.fail(format!(
                "visible files {sorted:?} are not the committed ones {expected:?}"
            ));
        }
        // Each committed file is complete and verifies.
        let mut referenced = HashSet::new();
        for (id, (seed, size)) in &self.expected {
            let file = self.file(id);
            let bytes = content(*seed, *size);
            for p in &file.parts {
                referenced.insert((p.node_id, p.chunk_id));
                let Some(chunk) = self.store.chunk(p.node_id, &p.chunk_id) else {
                    self.fail(format!(
                        "file {id} part {} has no chunk on its node",
                        p.index
                    ));
                };
                if chunk.len() as u64 != p.stored_len() || crc32c::crc32c(&chunk) != p.crc32c {
                    self.fail(format!("file {id} part {} does not verify", p.index));
                }
                let part = &bytes[p.offset as usize..(p.offset + p.len) as usize];
                if &chunk[..p.len as usize] != part {
                    self.fail(format!("file {id} part {} holds other bytes", p.index));
                }
            }
        }
        // Every stored chunk is accounted for, and nothing referenced is queued for deletion.
        let mut live = HashSet::new();
        for s in self.sessions() {
            for p in &s.parts {
                live.insert((p.node_id, p.chunk_id));
            }
        }
        let mut queued = HashSet::new();
        for node in self.store.node_ids() {
            for d in self.meta.pending_deletes(&node, 100_000).expect("queue") {
                if referenced.contains(&(node, d.chunk_id)) {
                    self.fail(format!(
                        "a chunk of a committed file is queued for deletion on {node}"
                    ));
                }
                if live.contains(&(node, d.chunk_id)) {
                    self.fail(format!(
                        "a chunk of a live upload session is queued for deletion on {node}"
                    ));
                }
                queued.insert((node, d.chunk_id));
            }
        }
        for chunk in self.store.all_chunks() {
            if !referenced.contains(&chunk)
                && !live.contains(&chunk)
                && !queued.contains(&chunk)
                && !self.strays.contains(&chunk)
            {
                self.fail(format!(
                    "chunk {:?} on node {} is accounted for by nothing",
                    chunk.1, chunk.0
                ));
            }
        }
    }

    async fn run(mut self) {
        for step in 0..STEPS {
            self.step = step;
            match self.rng.below(10) {
                0..=4 => self.upload().await,
                5..=6 => self.download().await,
                7 => self.delete().await,
                8 => match self.rng.below(4) {
                    0 => self.process_deletes().await,
                    1 => self.time_passes().await,
                    2 => self.stray(),
                    _ => self.reconcile().await,
                },
                _ => self.restart().await,
            }
            self.check();
        }
        // At the end every queued delete is carried out: only committed files' chunks remain,
        // and every node holds the commit mark of each of its committed chunks.
        self.heal();
        self.restart().await;
        self.process_deletes().await;
        self.check();
        // Strays are quarantined by a first scan, deleted by one after the grace period.
        for _ in 0..2 {
            self.reconcile().await;
            tokio::time::advance(ORPHAN_GRACE + Duration::from_secs(1)).await;
        }
        self.reconcile().await;
        self.check();
        if !self.strays.is_empty() && self.reconcile_stats.refused() == 0 {
            self.fail(format!(
                "{} stray chunks outlived the orphan scan",
                self.strays.len()
            ));
        }
        for node in self.store.node_ids() {
            match self.meta.pending_marks(&node, 1) {
                Ok(left) if left.is_empty() => {}
                Ok(_) => self.fail(format!("commit marks for {node} were never delivered")),
                Err(e) => self.fail(format!("pending marks: {e}")),
            }
        }
        let kept: usize = self
            .expected
            .keys()
            .map(|id| self.file(id).parts.len())
            .sum();
        if self.store.chunk_count() != kept + self.strays.len() {
            self.fail(format!(
                "{} chunks stored, {kept} belong to committed files",
                self.store.chunk_count()
            ));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_seed_keeps_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("SIXFOLD_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIXFOLD_SIM_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    for seed in seeds {
        World::new(seed).run().await;
    }
}
