//! Deleting a file so that it stays deleted. The metadata transaction removes the file and
//! queues its chunks; then its nodes are asked to delete them at once, for a bounded time,
//! before the `DELETE` is answered. A rebuild of the metadata from the nodes restores a file
//! only when every part is still there, so one part gone is enough to keep a deleted file from
//! coming back. What a node could not delete now stays queued for the cleanup.

use std::time::Duration;

use crate::meta::{FileRecord, MetaStore};
use crate::node_client::{SharedNodeClient, on_each_part};

/// How long a `DELETE` waits for its nodes before it answers anyway.
pub const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Deletes the chunks of a file whose record was just removed ([`MetaStore::delete_file`]), and
/// drops them from the delete queue. Returns how many of its parts are gone from their nodes;
/// the cleanup is woken for the rest.
pub async fn delete_chunks_now(
    meta: &dyn MetaStore,
    store: &SharedNodeClient,
    file: &FileRecord,
    wait: Duration,
) -> usize {
    let done = on_each_part(
        file.id,
        file.parts.iter().map(|p| (p.node_id, p.chunk_id)),
        wait,
        "chunk not deleted now",
        |node, chunk| store.delete_chunk(node, chunk),
    )
    .await;
    let n = done.len();
    if n < file.parts.len() {
        store.wake_cleanup();
    }
    for (node, chunk) in &done {
        // The queue then still lists it; a later delete of an absent chunk is a success.
        if let Err(e) = meta.complete_delete(node, chunk).await {
            tracing::warn!(file_id = %file.id, error = %e, "recording deleted chunks failed");
            break;
        }
    }
    n
}
