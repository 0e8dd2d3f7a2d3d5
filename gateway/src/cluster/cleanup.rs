//! The background cleanup: aborts expired upload sessions, drains the chunk delete queue on
//! every node that answers, and runs the orphan scans that are due.

use std::sync::Weak;
use std::time::Instant;

use futures_util::StreamExt;
use uuid::Uuid;

use super::reconcile::{self, OrphanTracker};
use super::{Cluster, Inner};
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
            _ = pass(&cluster, &mut tracker) => {}
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

/// One round of cleanup.
pub(super) async fn pass(cluster: &Cluster, tracker: &mut OrphanTracker) {
    let (meta, nodes): (&dyn MetaStore, &dyn NodeClient) = (cluster.meta().as_ref(), cluster);
    let now = cluster.clock().unix_ms();
    if let Err(e) = expire_sessions(meta, now, cluster.started_unix_ms()).await {
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
}

/// Whether the cleanup aborts a session created at `created_ms` expiring at `expires_ms`, at
/// `now_ms`, in a gateway process that started at `started_ms`.
pub fn abort_reason(
    created_ms: u64,
    expires_ms: u64,
    now_ms: u64,
    started_ms: u64,
) -> Option<AbortReason> {
    if created_ms < started_ms {
        Some(AbortReason::Leftover)
    } else if expires_ms <= now_ms {
        Some(AbortReason::Expired)
    } else {
        None
    }
}

/// Aborts every session past its expiry at `now` or left by a process that started before
/// `started` (both Unix ms); the abort queues its chunks for deletion.
pub(crate) async fn expire_sessions(
    meta: &dyn MetaStore,
    now: u64,
    started: u64,
) -> Result<(), MetaError> {
    let mut after = None;
    loop {
        let page = meta.sessions_page(after, SESSION_PAGE).await?;
        let full = page.len() == SESSION_PAGE;
        after = page.last().map(|s| s.file_id);
        for session in page {
            let Some(reason) = abort_reason(
                session.created_unix_ms,
                session.expires_unix_ms,
                now,
                started,
            ) else {
                continue;
            };
            let file_id = session.file_id;
            let chunks = meta.abort_session(&file_id).await?;
            tracing::info!(
                %file_id,
                name = ?session.name,
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

    #[test]
    fn sessions_of_an_earlier_process_end_at_once_others_at_their_expiry() {
        let started = 1_000;
        // Recorded before this process started: left by a dead one, whatever its expiry.
        assert_eq!(
            abort_reason(999, u64::MAX, 1_001, started),
            Some(AbortReason::Leftover)
        );
        // This process's own sessions live until they expire.
        assert_eq!(abort_reason(1_000, 5_000, 4_999, started), None);
        assert_eq!(
            abort_reason(1_000, 5_000, 5_000, started),
            Some(AbortReason::Expired)
        );
    }
}
