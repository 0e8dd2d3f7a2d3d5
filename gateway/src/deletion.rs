//! Deleting a file so that it stays deleted. The metadata transaction removes the file and
//! queues its chunks; then its nodes are asked to delete them at once, for a bounded time,
//! before the `DELETE` is answered. A rebuild of the metadata from the nodes restores a file
//! only when every part is still there, so one part gone is enough to keep a deleted file from
//! coming back. What a node could not delete now stays queued for the cleanup.

use std::time::Duration;

use futures_util::future::join_all;
use uuid::Uuid;

use crate::chunk_store::SharedStore;
use crate::meta::{ChunkId, FileRecord, Meta};

/// How long a `DELETE` waits for its nodes before it answers anyway.
pub const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Deletes the chunks of a file whose record was just removed ([`Meta::delete_file`]), and
/// drops them from the delete queue. Returns how many of its parts are gone from their nodes;
/// the cleanup is woken for the rest.
pub async fn delete_chunks_now(
    meta: &Meta,
    store: &SharedStore,
    file: &FileRecord,
    wait: Duration,
) -> usize {
    let deletes = file.parts.iter().map(|p| {
        let (node, chunk) = (p.node_id, p.chunk_id);
        let deleting = store.delete_chunk(node, chunk);
        async move {
            match tokio::time::timeout(wait, deleting).await {
                Ok(Ok(())) => Some((node, chunk)),
                Ok(Err(e)) => {
                    tracing::info!(file_id = %file.id, %node, error = %e, "chunk not deleted now; it stays queued");
                    None
                }
                Err(_) => {
                    tracing::info!(file_id = %file.id, %node, "chunk delete not answered in time; it stays queued");
                    None
                }
            }
        }
    });
    let done: Vec<(Uuid, ChunkId)> = join_all(deletes).await.into_iter().flatten().collect();
    let n = done.len();
    if n < file.parts.len() {
        store.wake_cleanup();
    }
    let meta = meta.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        done.iter()
            .try_for_each(|(node, chunk)| meta.complete_delete(node, chunk).map(drop))
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        // The queue then still lists them; a later delete of an absent chunk is a success.
        Ok(Err(e)) => {
            tracing::warn!(file_id = %file.id, error = %e, "recording deleted chunks failed")
        }
        Err(e) => tracing::warn!(file_id = %file.id, error = %e, "recording deleted chunks failed"),
    }
    n
}
