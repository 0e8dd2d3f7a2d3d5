//! The background scrub and the node's record of damaged chunks.
//!
//! Every shard runs one scrub task on its monoio runtime ([`run_shard`]): when a pass starts
//! (periodically, `scrub_interval` after the last ended, or on the gateway's request, carried by
//! a heartbeat answer), it verifies every Complete chunk of the shard, one chunk at a time, each
//! block against its crc32c ([`crate::store::ChunkStore::verify_paced`]), paced to its share of
//! `scrub_rate`. Reads (`Get`, `Verify`) that meet a bad block record it the same way. What was
//! found goes to the gateway with every heartbeat (report version 4, [`ScrubShared::report`]).
//!
//! The decisions are pure and tested in [`state`]; this module only holds the shared state and
//! does the I/O.

pub mod last_pass;
pub mod state;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sixfold_wire::registration::{Damage, FoundBy, ScrubReport};

use crate::store::{ChunkId, ChunkState, ChunkStore};
pub use state::{ScrubSettings, ScrubState, Verdict, classify, pace};

/// How often an idle scrub task looks for a new pass or a stop.
const POLL: Duration = Duration::from_millis(100);
/// Chunks listed from the index at a time.
const PAGE: usize = 256;

/// The scrub state shared by the shard threads and the heartbeat thread.
#[derive(Debug)]
pub struct ScrubShared {
    state: Mutex<ScrubState>,
    /// Where the last pass's end is kept (`None`: not kept, as in tests).
    last_pass_file: Option<PathBuf>,
}

impl ScrubShared {
    pub fn new(settings: ScrubSettings, shards: u16) -> Self {
        Self {
            state: Mutex::new(ScrubState::new(settings, shards, unix_ms_now(), None)),
            last_pass_file: None,
        }
    }

    /// A scrub that keeps its last pass's end in `<data_dir>/scrub_last_pass`.
    pub fn in_data_dir(settings: ScrubSettings, shards: u16, data_dir: &std::path::Path) -> Self {
        let file = last_pass::path(data_dir);
        let last = last_pass::load(&file);
        Self {
            state: Mutex::new(ScrubState::new(settings, shards, unix_ms_now(), last)),
            last_pass_file: Some(file),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ScrubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn settings(&self) -> ScrubSettings {
        self.lock().settings()
    }

    /// The gateway asked for a pass now.
    pub fn request(&self) {
        let settings = self.settings();
        if self.lock().request() {
            tracing::info!(rate = settings.rate, "scrub pass requested by the gateway");
        } else if !settings.enabled() {
            tracing::warn!("the gateway asked for a scrub, but scrub_rate is 0 (scrub off)");
        } else {
            tracing::info!("the gateway asked for a scrub; a pass already runs");
        }
    }

    /// What the heartbeat reports; starts the periodic pass when it is due.
    /// Also keeps the end of a pass that finished in the data dir (this runs on the heartbeat
    /// thread, where a small blocking write is fine).
    pub fn report(&self) -> ScrubReport {
        let mut state = self.lock();
        if state.tick(unix_ms_now()) {
            tracing::info!(pass = state.round(), "periodic scrub pass starting");
        }
        if let (Some(end), Some(file)) = (state.unpersisted_end(), &self.last_pass_file) {
            match last_pass::store(file, end) {
                Ok(()) => state.persisted(end),
                Err(e) => {
                    tracing::warn!(path = %file.display(), error = %e, "cannot keep the scrub's last pass end; will retry")
                }
            }
        }
        state.report()
    }

    /// A read met a damaged chunk.
    pub fn read_failed(&self, chunk: ChunkId, damage: Damage, block: Option<u64>) {
        self.lock().read_failed(chunk, damage, block, unix_ms_now());
    }

    /// The chunk was deleted.
    pub fn forget(&self, chunk: ChunkId) {
        self.lock().forget(chunk);
    }

    fn round(&self) -> u64 {
        self.lock().round()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One shard's scrub task: runs each pass the shared state starts, until `stopping()` says
/// so. Ends within about one block read of a stop.
pub async fn run_shard(
    store: ChunkStore,
    shard: u16,
    shards: u16,
    scrub: &ScrubShared,
    stopping: impl Fn() -> bool,
) {
    let mut done = 0;
    while !stopping() {
        let round = scrub.round();
        if round == done {
            monoio::time::sleep(POLL).await;
            continue;
        }
        done = round;
        let rate = (scrub.settings().rate / u64::from(shards.max(1))).max(1);
        let finished = run_pass(&store, shard, round, rate, scrub, &stopping).await;
        if finished {
            scrub.lock().shard_finished(shard, round, unix_ms_now());
        }
    }
}

/// One shard's part of pass `round`; `false` when stopped before the end.
async fn run_pass(
    store: &ChunkStore,
    shard: u16,
    round: u64,
    rate: u64,
    scrub: &ScrubShared,
    stopping: &impl Fn() -> bool,
) -> bool {
    let (chunks, bytes) = complete_totals(store);
    scrub
        .lock()
        .shard_started(shard, round, chunks, bytes, unix_ms_now());
    tracing::info!(
        shard,
        pass = round,
        chunks,
        bytes,
        rate,
        "scrub pass started"
    );
    let start = Instant::now();
    let mut due = Duration::ZERO;
    let mut after = None;
    loop {
        let page = store.list(after, PAGE);
        let Some(last) = page.last() else { break };
        after = Some(last.chunk_id);
        for stat in page {
            if stat.state != ChunkState::Complete {
                continue;
            }
            let id = stat.chunk_id;
            let result = store
                .verify_paced(id, async |n| {
                    let (next, mut wait) = pace(due, start.elapsed(), n, rate);
                    due = next;
                    // In slices, so that a slow rate does not hold up a stop.
                    while !wait.is_zero() && !stopping() {
                        let slice = wait.min(POLL);
                        monoio::time::sleep(slice).await;
                        wait -= slice;
                    }
                    !stopping()
                })
                .await;
            let Some(result) = result else {
                tracing::info!(shard, pass = round, "scrub pass stopped: the node stops");
                return false;
            };
            let verdict = classify(&result);
            if let (Verdict::Damaged { damage, block }, Err(e)) = (verdict, &result) {
                tracing::error!(shard, chunk = %id.to_hex(), ?damage, ?block, error = %e, "scrub found a damaged chunk");
            }
            scrub.lock().checked(
                shard,
                id,
                stat.meta.length,
                verdict,
                FoundBy::Scrub,
                unix_ms_now(),
            );
            if stopping() {
                return false;
            }
        }
    }
    tracing::info!(
        shard,
        pass = round,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "scrub pass finished"
    );
    true
}

/// Complete chunks of the shard and their bytes, from the in-memory index.
fn complete_totals(store: &ChunkStore) -> (u64, u64) {
    let mut after = None;
    let (mut chunks, mut bytes) = (0, 0);
    loop {
        let page = store.list(after, 4096);
        let Some(last) = page.last() else { break };
        after = Some(last.chunk_id);
        for s in page.iter().filter(|s| s.state == ChunkState::Complete) {
            chunks += 1;
            bytes += s.meta.length;
        }
    }
    (chunks, bytes)
}
