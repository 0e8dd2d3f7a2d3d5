//! The background cleanup: aborts expired upload sessions, drains the chunk delete queue on
//! every node that answers, and runs the orphan scans that are due.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Instant;

use futures_util::StreamExt;
use uuid::Uuid;

use super::reconcile::{self, OrphanTracker};
use super::{Cluster, Inner};
use crate::meta::coordination::{GatewayBeat, lapsed};
use crate::meta::{MetaError, MetaStore, PendingDelete};
use crate::node_client::{NodeCallError, NodeClient};

/// Deletes fetched from the queue per round trip to the metadata.
const DELETE_BATCH: usize = 128;
/// Deletes sent to one node at once.
const DELETE_CONCURRENCY: usize = 16;

/// Runs until the cluster shuts down or is dropped.
pub(super) async fn run(inner: Weak<Inner>) {
    let Some((shutdown, interval)) = inner
        .upgrade()
        .map(|i| (i.shutdown.clone(), i.cfg.cleanup_interval))
    else {
        return;
    };
    let mut tracker = OrphanTracker::default();
    loop {
        let Some(cluster) = inner.upgrade().map(|inner| Cluster { inner }) else {
            return;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leased_pass(&cluster, &mut tracker) => {}
        }
        let wake = cluster.inner.wake.clone();
        drop(cluster);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
}

/// One round of cleanup, if this gateway holds the cleanup's lease (always, alone). The lease
/// lasts `gateway_timeout`: a gateway that dies holding it is replaced once it has lapsed.
async fn leased_pass(cluster: &Cluster, tracker: &mut OrphanTracker) {
    let lease = cluster.cleanup_lease();
    let ttl = cluster.config().gateway_timeout;
    if !lease.claim(cluster, ttl).await {
        // Another gateway scans; what this one remembered of orphans is stale when it is back.
        *tracker = OrphanTracker::default();
        return;
    }
    lease.ran();
    pass(cluster, tracker).await;
}

/// One round of cleanup.
pub(super) async fn pass(cluster: &Cluster, tracker: &mut OrphanTracker) {
    let (meta, nodes): (&dyn MetaStore, &dyn NodeClient) = (cluster.meta().as_ref(), cluster);
    let rule = SessionRule {
        now_ms: cluster.clock().unix_ms(),
        me: cluster.gateway_id(),
        started_ms: cluster.started_unix_ms(),
        peers: cluster.peers().await,
        gateway_timeout_ms: u64::try_from(cluster.config().gateway_timeout.as_millis())
            .unwrap_or(u64::MAX),
    };
    if let Err(e) = expire_sessions(meta, &rule).await {
        tracing::warn!(error = %e, "expiring upload sessions failed");
    }
    for node in cluster.serving_nodes() {
        drain_node(meta, nodes, node).await;
        deliver_marks(meta, nodes, node).await;
    }
    let due = cluster.due_orphan_scans();
    for node in due {
        match reconcile::scan_node(cluster, tracker, node).await {
            Ok(0) => tracing::debug!(%node, "orphan scan found nothing to delete"),
            Ok(_) => drain_node(meta, nodes, node).await,
            Err(e) => tracing::info!(%node, error = %e, "orphan scan skipped"),
        }
    }
}

/// Sessions read per metadata transaction.
const SESSION_PAGE: usize = 256;

/// Why the cleanup ends an upload session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// Its time is up.
    Expired,
    /// An earlier process of this gateway recorded it and died: nobody will finish it, so
    /// its chunks need not wait out the session's lifetime.
    Leftover,
    /// Another gateway recorded it and has died since (its liveness lapsed or is gone, or it
    /// restarted after the session began).
    OwnerGone,
}

/// What the cleanup knows when it judges sessions: the time, who it is, and the gateways that
/// beat (empty when alone).
#[derive(Debug, Clone)]
pub struct SessionRule {
    pub now_ms: u64,
    /// This gateway's id.
    pub me: Uuid,
    /// When this gateway process started (Unix ms).
    pub started_ms: u64,
    pub peers: HashMap<Uuid, GatewayBeat>,
    pub gateway_timeout_ms: u64,
}

impl SessionRule {
    /// Whether the cleanup aborts a session created at `created_ms`, expiring at
    /// `expires_ms`, written by `owner`. Pure.
    pub fn abort_reason(
        &self,
        created_ms: u64,
        expires_ms: u64,
        owner: Option<Uuid>,
    ) -> Option<AbortReason> {
        if expires_ms <= self.now_ms {
            return Some(AbortReason::Expired);
        }
        match owner {
            // Ours, or written before sessions had owners (by the one gateway there was).
            None => (created_ms < self.started_ms).then_some(AbortReason::Leftover),
            Some(owner) if owner == self.me => {
                (created_ms < self.started_ms).then_some(AbortReason::Leftover)
            }
            Some(owner) => match self.peers.get(&owner) {
                None => Some(AbortReason::OwnerGone),
                Some(beat) if lapsed(beat, self.now_ms, self.gateway_timeout_ms) => {
                    Some(AbortReason::OwnerGone)
                }
                Some(beat) if beat.started_unix_ms > created_ms => Some(AbortReason::OwnerGone),
                Some(_) => None,
            },
        }
    }
}

/// Aborts every session [`SessionRule::abort_reason`] gives a reason for; the abort queues
/// its chunks for deletion.
pub(crate) async fn expire_sessions(
    meta: &dyn MetaStore,
    rule: &SessionRule,
) -> Result<(), MetaError> {
    let mut after = None;
    loop {
        let page = meta.sessions_page(after, SESSION_PAGE).await?;
        let full = page.len() == SESSION_PAGE;
        after = page.last().map(|s| s.file_id);
        for session in page {
            let Some(reason) = rule.abort_reason(
                session.created_unix_ms,
                session.expires_unix_ms,
                session.owner,
            ) else {
                continue;
            };
            let file_id = session.file_id;
            let chunks = meta.abort_session(&file_id).await?;
            tracing::info!(
                %file_id,
                name = ?session.name,
                owner = ?session.owner,
                chunks = chunks.len(),
                ?reason,
                "aborted upload session"
            );
        }
        if !full {
            return Ok(());
        }
    }
}

/// Marks fetched from the metadata per round trip.
const MARK_BATCH: usize = 256;

/// Sends `node` the commit marks it has not acknowledged yet (a commit whose marks did not all
/// arrive before its 201), until none are left or the node stops answering.
pub(crate) async fn deliver_marks(meta: &dyn MetaStore, nodes: &dyn NodeClient, node: Uuid) {
    let mut delivered = 0usize;
    loop {
        let batch = match meta.pending_marks(&node, MARK_BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%node, error = %e, "reading the pending commit marks failed");
                return;
            }
        };
        if batch.is_empty() {
            break;
        }
        let full = batch.len() == MARK_BATCH;
        let marks = batch
            .iter()
            .map(|p| crate::commit_marks::wire_mark(p.chunk_id, &p.mark))
            .collect();
        if let Err(e) = nodes.mark_chunks(node, marks).await {
            tracing::info!(%node, error = %e, "commit marks not delivered; they wait");
            break;
        }
        let done: Vec<(Uuid, [u8; 16])> = batch.iter().map(|p| (node, p.chunk_id)).collect();
        delivered += done.len();
        if let Err(e) = meta.marks_delivered(&done).await {
            tracing::warn!(%node, error = %e, "recording delivered commit marks failed");
            return;
        }
        if !full {
            break;
        }
    }
    if delivered > 0 {
        tracing::info!(%node, delivered, "delivered pending commit marks");
    }
}

/// Deletes the queued chunks of `node` until its queue is empty or the node stops answering.
pub(crate) async fn drain_node(meta: &dyn MetaStore, nodes: &dyn NodeClient, node: Uuid) {
    let started = Instant::now();
    let mut deleted = 0usize;
    loop {
        let batch = match meta.pending_deletes(&node, DELETE_BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%node, error = %e, "reading the delete queue failed");
                return;
            }
        };
        if batch.is_empty() {
            break;
        }
        let full = batch.len() == DELETE_BATCH;
        let results: Vec<(PendingDelete, Result<(), NodeCallError>)> =
            futures_util::stream::iter(batch)
                .map(|p| async move {
                    let r = nodes.delete_chunk(node, p.chunk_id).await;
                    (p, r)
                })
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect()
                .await;
        let mut done = Vec::with_capacity(results.len());
        let mut failed = 0usize;
        let mut unreachable = None;
        for (p, r) in results {
            match r {
                Ok(()) => done.push(p.chunk_id),
                Err(e) => {
                    failed += 1;
                    if e.is_unreachable() {
                        unreachable = Some(e);
                    } else {
                        tracing::warn!(
                            %node,
                            chunk = %Uuid::from_bytes(p.chunk_id),
                            error = %e,
                            "chunk delete failed; kept in the queue"
                        );
                    }
                }
            }
        }
        deleted += done.len();
        if !done.is_empty() {
            let n = done.len();
            let r = async {
                for chunk in &done {
                    meta.complete_delete(&node, chunk).await?;
                }
                Ok::<(), MetaError>(())
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(%node, error = %e, deleted = n, "recording finished deletes failed");
                return;
            }
        }
        if let Some(e) = unreachable {
            tracing::info!(%node, error = %e, "node unreachable; its deletes wait");
            break;
        }
        // Entries that keep failing stay at the front of the queue: stop rather than spin.
        if failed > 0 || !full {
            break;
        }
    }
    if deleted > 0 {
        tracing::info!(
            %node,
            deleted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "deleted queued chunks"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(peers: &[GatewayBeat]) -> SessionRule {
        SessionRule {
            now_ms: 1_001,
            me: Uuid::from_u128(1),
            started_ms: 1_000,
            peers: peers.iter().map(|b| (b.id, b.clone())).collect(),
            gateway_timeout_ms: 500,
        }
    }

    fn beat(id: u128, started: u64, seen: u64) -> GatewayBeat {
        GatewayBeat {
            id: Uuid::from_u128(id),
            name: String::new(),
            started_unix_ms: started,
            seen_unix_ms: seen,
        }
    }

    #[test]
    fn sessions_of_an_earlier_process_end_at_once_others_at_their_expiry() {
        let me = Some(Uuid::from_u128(1));
        for owner in [None, me] {
            let r = rule(&[]);
            // Recorded before this process started: left by a dead one, whatever its expiry.
            assert_eq!(
                r.abort_reason(999, u64::MAX, owner),
                Some(AbortReason::Leftover)
            );
            // This process's own sessions live until they expire.
            assert_eq!(r.abort_reason(1_000, 5_000, owner), None);
            let later = SessionRule { now_ms: 5_000, ..r };
            assert_eq!(
                later.abort_reason(1_000, 5_000, owner),
                Some(AbortReason::Expired)
            );
        }
    }

    #[test]
    fn another_gateway_s_sessions_live_while_it_does() {
        let other = Some(Uuid::from_u128(2));
        // Alive (beat 1 ms ago, started before the session): left alone, however old.
        assert_eq!(
            rule(&[beat(2, 10, 1_000)]).abort_reason(20, 9_999, other),
            None
        );
        // Its beat lapsed: dead.
        assert_eq!(
            rule(&[beat(2, 10, 501)]).abort_reason(20, 9_999, other),
            Some(AbortReason::OwnerGone)
        );
        // Never beat, or said goodbye.
        assert_eq!(
            rule(&[]).abort_reason(20, 9_999, other),
            Some(AbortReason::OwnerGone)
        );
        // Restarted since the session began: its earlier process died.
        assert_eq!(
            rule(&[beat(2, 30, 1_000)]).abort_reason(20, 9_999, other),
            Some(AbortReason::OwnerGone)
        );
        // Expired is expired, whoever owns it.
        assert_eq!(
            rule(&[beat(2, 10, 1_000)]).abort_reason(20, 1_001, other),
            Some(AbortReason::Expired)
        );
    }
}
