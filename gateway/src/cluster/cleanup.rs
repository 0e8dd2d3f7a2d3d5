//! The background cleanup: aborts expired upload sessions, drains the chunk delete queue on
//! every node that answers, and runs the orphan scans that are due.

use std::sync::Weak;
use std::time::Instant;

use futures_util::StreamExt;
use uuid::Uuid;

use super::reconcile::{self, OrphanTracker};
use super::registry::unix_ms;
use super::{Cluster, Inner};
use crate::meta::{MetaError, PendingDelete};

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
    if let Err(e) = expire_sessions(cluster).await {
        tracing::warn!(error = %e, "expiring upload sessions failed");
    }
    for node in cluster.serving_nodes() {
        drain_node(cluster, node).await;
    }
    let due = cluster.due_orphan_scans();
    for node in due {
        match reconcile::scan_node(cluster, tracker, node).await {
            Ok(0) => tracing::debug!(%node, "orphan scan found nothing to delete"),
            Ok(_) => drain_node(cluster, node).await,
            Err(e) => tracing::info!(%node, error = %e, "orphan scan skipped"),
        }
    }
}

async fn meta_call<T: Send + 'static>(
    cluster: &Cluster,
    f: impl FnOnce(&crate::meta::Meta) -> Result<T, MetaError> + Send + 'static,
) -> Result<T, MetaError> {
    let meta = cluster.meta().clone();
    match tokio::task::spawn_blocking(move || f(&meta)).await {
        Ok(r) => r,
        Err(e) => Err(MetaError::InvalidRecord(format!(
            "metadata task failed: {e}"
        ))),
    }
}

/// Aborts every session past its expiry; the abort queues its chunks for deletion.
async fn expire_sessions(cluster: &Cluster) -> Result<(), MetaError> {
    let now = unix_ms(std::time::SystemTime::now());
    let expired = meta_call(cluster, move |m| m.expired_sessions(now)).await?;
    for session in expired {
        let file_id = session.file_id;
        let chunks = meta_call(cluster, move |m| m.abort_session(&file_id)).await?;
        tracing::info!(
            %file_id,
            name = ?session.name,
            chunks = chunks.len(),
            "aborted expired upload session"
        );
    }
    Ok(())
}

/// Deletes the queued chunks of `node` until its queue is empty or the node stops answering.
async fn drain_node(cluster: &Cluster, node: Uuid) {
    let started = Instant::now();
    let mut deleted = 0usize;
    loop {
        let batch = match meta_call(cluster, move |m| m.pending_deletes(&node, DELETE_BATCH)).await
        {
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
        let results: Vec<(PendingDelete, Result<(), super::NodeError>)> =
            futures_util::stream::iter(batch)
                .map(|p| async move {
                    let r = cluster.delete_chunk(node, p.chunk_id).await;
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
            let r = meta_call(cluster, move |m| {
                for chunk in &done {
                    m.complete_delete(&node, chunk)?;
                }
                Ok(())
            })
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
