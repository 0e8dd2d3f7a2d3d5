//! Orphan reconciliation: chunks on a node that no file and no live upload session references
//! (left behind by a gateway crash between a node's acknowledgement and the abort, or by a
//! delete-queue entry lost with the metadata) are found by listing the node and deleted.
//!
//! Chunk age is not on the wire, so a chunk is an orphan only when
//! - it is Complete and its file id is not the id of any live upload session (no upload can
//!   still claim it), or
//! - it was seen unreferenced in consecutive scans spanning at least the session TTL (any
//!   session that could have claimed it has expired since).
//!
//! A chunk a live session references is never deleted: references are read after the listing
//! (a session is recorded before its first byte reaches a node, so any chunk the listing saw
//! is covered), and the delete queue re-checks them in the same transaction that queues.
//!
//! An orphan is not deleted when found. It is quarantined (marked in the metadata with when it
//! was first seen, [`crate::meta::QuarantineMark`]) and queued for deletion only once a later
//! scan still finds it an orphan after the grace period (`orphan_grace`, 24 h by default), and
//! only while the safety valve holds: no scan deletes more than half of a node's chunks, however
//! few. Every such deletion is logged at WARN with its file, part and node.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sixfold_wire::{ChunkId, ChunkInfo, ChunkState, FileId, MAX_LIST_LIMIT, Request, Response};
use uuid::Uuid;

use futures_util::future::BoxFuture;

use super::Cluster;
use super::error::NodeError;
use crate::clock::Clock;
use crate::meta::{MetaStore, QuarantineMark};

/// A scan deleting more than this share of a node's chunks is refused: it more likely means
/// the metadata is missing or stale than that the node is mostly garbage. There is no
/// exemption for small counts: a lost metadata file on a small cluster is no less a loss.
const MAX_ORPHAN_SHARE: f64 = 0.5;
/// Quarantine marks read per metadata transaction.
const MARK_PAGE: usize = 4096;
/// Unreferenced chunks one scan keeps at most (about 100 bytes each).
const MAX_CANDIDATES: usize = 1 << 20;

/// Unreferenced chunks seen by earlier scans, per node, with when each was first seen.
#[derive(Debug, Default)]
pub struct OrphanTracker {
    seen: HashMap<Uuid, HashMap<ChunkId, Instant>>,
}

impl OrphanTracker {
    /// Records one scan of `node` at `now` that found `unreferenced` chunks, and returns the ids
    /// that are orphans by the rules above. `live_sessions` holds the file ids of the live
    /// upload sessions among the chunks' file ids.
    pub fn observe(
        &mut self,
        node: Uuid,
        unreferenced: &[ChunkInfo],
        live_sessions: &HashSet<FileId>,
        now: Instant,
        ttl: Duration,
    ) -> Vec<ChunkId> {
        let before = self.seen.remove(&node).unwrap_or_default();
        let mut still_seen = HashMap::new();
        let mut orphans = Vec::new();
        for info in unreferenced {
            let settled =
                info.state == ChunkState::Complete && !live_sessions.contains(&info.meta.file_id);
            let first = before.get(&info.chunk_id).copied().unwrap_or(now);
            if settled || now.saturating_duration_since(first) >= ttl {
                orphans.push(info.chunk_id);
            } else {
                still_seen.insert(info.chunk_id, first);
            }
        }
        if !still_seen.is_empty() {
            self.seen.insert(node, still_seen);
        }
        orphans
    }

    /// Forgets a node's sightings (its scan failed part way, so "consecutive" is broken).
    pub fn forget(&mut self, node: &Uuid) {
        self.seen.remove(node);
    }
}

/// Whether deleting `orphans` of `total` chunks passes the safety valve.
pub fn within_valve(orphans: usize, total: usize) -> bool {
    (orphans as f64) <= (total as f64) * MAX_ORPHAN_SHARE
}

/// Why a scan stopped: the node, or the gateway's own metadata.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("metadata: {0}")]
    Meta(#[from] crate::meta::MetaError),
    #[error("metadata task failed: {0}")]
    Task(String),
}

/// What one scan does with a node's orphans and its quarantine.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QuarantinePlan {
    /// Orphans seen for the first time: mark them.
    pub add: Vec<(ChunkId, QuarantineMark)>,
    /// Marked chunks that are no orphans any more (referenced, or gone from the node).
    pub release: Vec<ChunkId>,
    /// Marked chunks that are still orphans after the grace period: deletable.
    pub ripe: Vec<ChunkId>,
}

/// Decides, from this scan's `orphans` and the node's existing `marks`, what to mark, unmark
/// and delete at `now_ms`.
pub fn plan_quarantine(
    orphans: &[ChunkInfo],
    marks: &HashMap<ChunkId, QuarantineMark>,
    now_ms: u64,
    grace: Duration,
) -> QuarantinePlan {
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let mut plan = QuarantinePlan::default();
    let mut still = HashSet::with_capacity(orphans.len());
    for info in orphans {
        still.insert(info.chunk_id);
        match marks.get(&info.chunk_id) {
            Some(mark) if now_ms.saturating_sub(mark.first_seen_unix_ms) >= grace_ms => {
                plan.ripe.push(info.chunk_id);
            }
            Some(_) => {}
            None => plan.add.push((
                info.chunk_id,
                QuarantineMark {
                    file_id: Uuid::from_bytes(info.meta.file_id),
                    part_index: info.meta.part_index,
                    first_seen_unix_ms: now_ms,
                },
            )),
        }
    }
    plan.release = marks
        .keys()
        .filter(|c| !still.contains(*c))
        .copied()
        .collect();
    plan.release.sort_unstable();
    plan
}

/// What the reconciler did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReconcileStats {
    quarantined: AtomicU64,
    deleted: AtomicU64,
    refused: AtomicU64,
    skipped_unaccounted: AtomicU64,
}

impl ReconcileStats {
    /// Orphans marked for quarantine, ever.
    pub fn quarantined(&self) -> u64 {
        self.quarantined.load(Ordering::Relaxed)
    }
    /// Orphans queued for deletion after their quarantine, ever.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::Relaxed)
    }
    /// Scans whose deletions the safety valve refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Scans not run because the node's data is not accounted for by the metadata.
    pub fn skipped_unaccounted(&self) -> u64 {
        self.skipped_unaccounted.load(Ordering::Relaxed)
    }
}

/// How the orphan scan reads what a node holds: one page of one shard at a time. The cluster
/// asks the node over QUIC; the simulation's in-memory nodes answer from their maps.
pub trait ChunkLister: Send + Sync {
    /// How many shards `node` lists separately.
    fn shard_count(&self, node: Uuid) -> Result<usize, ScanError>;

    /// Up to a page of `shard`'s chunks after `after`, in ascending id order, and whether more
    /// follow.
    fn list_page<'a>(
        &'a self,
        node: Uuid,
        shard: usize,
        after: Option<ChunkId>,
    ) -> BoxFuture<'a, Result<(Vec<ChunkInfo>, bool), ScanError>>;
}

impl ChunkLister for Cluster {
    fn shard_count(&self, node: Uuid) -> Result<usize, ScanError> {
        Ok(Cluster::shard_count(self, node)?)
    }

    fn list_page<'a>(
        &'a self,
        node: Uuid,
        shard: usize,
        after: Option<ChunkId>,
    ) -> BoxFuture<'a, Result<(Vec<ChunkInfo>, bool), ScanError>> {
        Box::pin(async move {
            let req = Request::List {
                after,
                limit: MAX_LIST_LIMIT,
            };
            match self.call_shard(node, shard, req).await? {
                Response::List { entries, more } => Ok((entries, more)),
                _ => Err(NodeError::Stream("list answered with another response".into()).into()),
            }
        })
    }
}

/// What a scan works with: the metadata, the nodes' listings, the clock, its settings and its
/// counters. The cluster's cleanup and the simulation each build one.
pub struct ScanPorts<'a> {
    pub meta: &'a dyn MetaStore,
    pub lister: &'a dyn ChunkLister,
    pub clock: &'a dyn Clock,
    pub stats: &'a ReconcileStats,
    /// A chunk of an unknown or finished upload is an orphan once seen this long.
    pub session_ttl: Duration,
    /// How long an orphan stays quarantined before it is deleted.
    pub orphan_grace: Duration,
}

/// What listing a node found.
#[derive(Debug, Default)]
struct Listing {
    /// Unreferenced chunks, the first `MAX_CANDIDATES` of them.
    kept: Vec<ChunkInfo>,
    /// Unreferenced chunks in all.
    unreferenced: usize,
    /// Chunks listed.
    total: usize,
}

/// Lists every chunk on every shard of `node`, a page at a time, keeping those no file or
/// session references (looked up per page, so memory is bounded by the page and by what is
/// kept). Keeps at most `MAX_CANDIDATES`, but counts them all, so that the safety valve judges
/// the whole node.
async fn list_unreferenced(ports: &ScanPorts<'_>, node: Uuid) -> Result<Listing, ScanError> {
    let shards = ports.lister.shard_count(node)?;
    let mut listing = Listing::default();
    for shard in 0..shards {
        let mut after: Option<ChunkId> = None;
        loop {
            let (entries, more) = ports.lister.list_page(node, shard, after).await?;
            listing.total += entries.len();
            let last = entries.last().map(|e| e.chunk_id);
            // Ids must ascend past `after`, or paging could loop forever.
            if let (Some(prev), Some(first)) = (after, entries.first())
                && first.chunk_id <= prev
            {
                return Err(NodeError::Stream("list pages do not ascend".into()).into());
            }
            let ids: Vec<ChunkId> = entries.iter().map(|e| e.chunk_id).collect();
            let referenced = ports.meta.referenced_among(&node, &ids).await?;
            for entry in entries {
                if !referenced.contains(&entry.chunk_id) {
                    listing.unreferenced += 1;
                    if listing.kept.len() < MAX_CANDIDATES {
                        listing.kept.push(entry);
                    }
                }
            }
            match (more, last) {
                (true, Some(last)) => after = Some(last),
                _ => break,
            }
        }
    }
    Ok(listing)
}

/// One reconciliation pass over `node`: queues its orphans for deletion and returns how many.
pub async fn scan_node(
    cluster: &Cluster,
    tracker: &mut OrphanTracker,
    node: Uuid,
) -> Result<usize, ScanError> {
    let ports = ScanPorts {
        meta: cluster.meta().as_ref(),
        lister: cluster,
        clock: cluster.clock().as_ref(),
        stats: cluster.reconcile_stats(),
        session_ttl: cluster.config().session_ttl,
        orphan_grace: cluster.config().orphan_grace,
    };
    scan(&ports, tracker, node).await
}

/// One reconciliation pass over `node` with `ports`: queues its orphans for deletion and
/// returns how many.
pub async fn scan(
    ports: &ScanPorts<'_>,
    tracker: &mut OrphanTracker,
    node: Uuid,
) -> Result<usize, ScanError> {
    if ports.meta.is_unaccounted(&node).await? {
        ports
            .stats
            .skipped_unaccounted
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%node, "no orphan scan: the node's data is not accounted for");
        tracker.forget(&node);
        return Ok(0);
    }
    let listed = list_unreferenced(ports, node).await;
    let Listing {
        kept: candidates,
        unreferenced,
        total,
    } = match listed {
        Ok(v) => v,
        Err(e) => {
            tracker.forget(&node);
            return Err(e);
        }
    };
    // With no candidates the scan goes on all the same: any quarantine marks left are released.
    // References read after the listing cover every upload that began before it.
    let ids: Vec<ChunkId> = candidates.iter().map(|c| c.chunk_id).collect();
    let referenced = ports.meta.referenced_among(&node, &ids).await?;
    let candidates: Vec<ChunkInfo> = candidates
        .into_iter()
        .filter(|c| !referenced.contains(&c.chunk_id))
        .collect();
    let file_ids: HashSet<FileId> = candidates.iter().map(|c| c.meta.file_id).collect();
    let mut live_sessions = HashSet::new();
    for f in file_ids {
        if ports
            .meta
            .get_session(&Uuid::from_bytes(f))
            .await?
            .is_some()
        {
            live_sessions.insert(f);
        }
    }
    let ttl = ports.session_ttl;
    let orphans = tracker.observe(
        node,
        &candidates,
        &live_sessions,
        ports.clock.now().into_std(),
        ttl,
    );
    let orphans: Vec<ChunkInfo> = {
        let ids: HashSet<ChunkId> = orphans.into_iter().collect();
        candidates
            .into_iter()
            .filter(|c| ids.contains(&c.chunk_id))
            .collect()
    };
    let mut marks = HashMap::new();
    let mut after = None;
    loop {
        let page = ports.meta.quarantined(&node, after, MARK_PAGE).await?;
        let full = page.len() == MARK_PAGE;
        after = page.last().map(|(c, _)| *c);
        marks.extend(page);
        if !full {
            break;
        }
    }
    let plan = plan_quarantine(&orphans, &marks, ports.clock.unix_ms(), ports.orphan_grace);
    let stats = ports.stats;
    // Judged on every unreferenced chunk of the node, not only those kept.
    let mass = !within_valve(unreferenced.max(orphans.len()), total);
    if mass {
        tracing::warn!(
            %node,
            orphans = orphans.len(),
            unreferenced,
            total,
            "most of this node's chunks are referenced by no file: they are quarantined, and \
             none is deleted while this lasts; is the gateway's metadata complete?"
        );
    }
    if !plan.add.is_empty() || !plan.release.is_empty() {
        let marked = ports
            .meta
            .update_quarantine(&node, &plan.add, &plan.release)
            .await?;
        stats
            .quarantined
            .fetch_add(marked as u64, Ordering::Relaxed);
        if marked > 0 {
            tracing::info!(%node, marked, grace = ?ports.orphan_grace, "quarantined orphan chunks");
        }
    }
    if plan.ripe.is_empty() {
        return Ok(0);
    }
    if mass || !within_valve(plan.ripe.len(), total) {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            %node,
            deletable = plan.ripe.len(),
            total,
            "refusing to delete most of a node's chunks as orphans; is the gateway's metadata complete?"
        );
        return Ok(0);
    }
    let queued = ports.meta.delete_quarantined(&node, &plan.ripe).await?;
    for (chunk, mark) in &queued {
        tracing::warn!(
            %node,
            file_id = %mark.file_id,
            part = mark.part_index,
            chunk = %hex(chunk),
            "deleting an orphan chunk: no file or upload references it since its quarantine began"
        );
    }
    stats
        .deleted
        .fetch_add(queued.len() as u64, Ordering::Relaxed);
    Ok(queued.len())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixfold_wire::ChunkMeta;

    const TTL: Duration = Duration::from_secs(3600);

    fn chunk(n: u8, file: u8, state: ChunkState) -> ChunkInfo {
        ChunkInfo {
            chunk_id: [n; 16],
            meta: ChunkMeta {
                file_id: [file; 16],
                part_index: 0,
                part_count: 1,
                file_offset: 0,
                length: 10,
            },
            durable_len: 10,
            crc32c: 0,
            state,
        }
    }

    #[test]
    fn complete_chunks_of_no_live_session_go_at_once() {
        let mut t = OrphanTracker::default();
        let node = Uuid::from_u128(1);
        let live: HashSet<FileId> = [[7; 16]].into();
        let found = [
            chunk(1, 5, ChunkState::Complete),
            chunk(2, 7, ChunkState::Complete),
            chunk(3, 5, ChunkState::Writing),
        ];
        let orphans = t.observe(node, &found, &live, Instant::now(), TTL);
        assert_eq!(orphans, vec![[1; 16]]);
    }

    #[test]
    fn other_chunks_need_two_sightings_a_ttl_apart() {
        let mut t = OrphanTracker::default();
        let node = Uuid::from_u128(1);
        let live: HashSet<FileId> = [[7; 16]].into();
        let t0 = Instant::now();
        let found = [
            chunk(2, 7, ChunkState::Complete),
            chunk(3, 5, ChunkState::Writing),
        ];
        assert!(t.observe(node, &found, &live, t0, TTL).is_empty());
        let half = t0 + TTL / 2;
        assert!(t.observe(node, &found, &live, half, TTL).is_empty());
        // Chunk 3 vanished from one scan: its clock restarts.
        assert_eq!(
            t.observe(node, &found[..1], &live, t0 + TTL, TTL),
            vec![[2; 16]]
        );
        assert!(t.observe(node, &found, &live, t0 + TTL, TTL).is_empty());
        let later = t0 + TTL * 2;
        let mut orphans = t.observe(node, &found, &live, later, TTL);
        orphans.sort();
        assert_eq!(orphans, vec![[2; 16], [3; 16]]);
    }

    #[test]
    fn a_failed_scan_breaks_the_sequence() {
        let mut t = OrphanTracker::default();
        let node = Uuid::from_u128(1);
        let t0 = Instant::now();
        let found = [chunk(3, 5, ChunkState::Writing)];
        let none = HashSet::new();
        assert!(t.observe(node, &found, &none, t0, TTL).is_empty());
        t.forget(&node);
        assert!(t.observe(node, &found, &none, t0 + TTL, TTL).is_empty());
        assert_eq!(
            t.observe(node, &found, &none, t0 + TTL * 2, TTL),
            vec![[3; 16]]
        );
    }

    #[test]
    fn the_valve_stops_mass_deletion_whatever_the_count() {
        assert!(within_valve(500, 1000));
        assert!(!within_valve(501, 1000));
        // No small-count exemption: all 64 chunks of a small node are not deleted at once,
        // nor the single chunk of a node that holds one.
        assert!(!within_valve(64, 64));
        assert!(!within_valve(1, 1));
        assert!(within_valve(1, 2));
        assert!(within_valve(0, 0));
    }

    fn mark(first_seen_unix_ms: u64) -> QuarantineMark {
        QuarantineMark {
            file_id: Uuid::from_bytes([5; 16]),
            part_index: 0,
            first_seen_unix_ms,
        }
    }

    #[test]
    fn orphans_are_quarantined_first_and_deletable_only_after_the_grace() {
        let grace = Duration::from_secs(3600);
        let found = [
            chunk(1, 5, ChunkState::Complete),
            chunk(2, 5, ChunkState::Complete),
            chunk(3, 5, ChunkState::Complete),
        ];
        // First sighting: everything is marked, nothing deletable.
        let plan = plan_quarantine(&found, &HashMap::new(), 1_000, grace);
        assert_eq!(plan.add.len(), 3);
        assert!(plan.add.iter().all(|(_, m)| m.first_seen_unix_ms == 1_000));
        assert_eq!(plan.add[0].1.file_id, Uuid::from_bytes([5; 16]));
        assert!(plan.ripe.is_empty() && plan.release.is_empty());

        // Marked an hour minus 1 ms ago, exactly an hour ago, and not at all.
        let marks: HashMap<ChunkId, QuarantineMark> =
            [([1; 16], mark(1_001)), ([2; 16], mark(1_000))].into();
        let plan = plan_quarantine(&found, &marks, 3_601_000, grace);
        assert_eq!(plan.ripe, vec![[2; 16]]);
        assert_eq!(plan.add.len(), 1);
        assert_eq!(plan.add[0].0, [3; 16]);
        assert!(plan.release.is_empty());
    }

    #[test]
    fn a_mark_is_released_when_its_chunk_is_no_orphan_any_more() {
        let marks: HashMap<ChunkId, QuarantineMark> =
            [([1; 16], mark(0)), ([9; 16], mark(0)), ([4; 16], mark(0))].into();
        let found = [chunk(1, 5, ChunkState::Complete)];
        let plan = plan_quarantine(&found, &marks, u64::MAX, Duration::ZERO);
        assert_eq!(plan.ripe, vec![[1; 16]]);
        assert_eq!(plan.release, vec![[4; 16], [9; 16]]);
        assert!(plan.add.is_empty());
    }
}
