//! Commit marks on the nodes: after a file's metadata commit, each of its chunks is told that
//! its file was committed, with the file's size and checksum. A rebuild of the metadata from
//! the nodes alone restores a file only when one of its chunks carries such a mark, so an
//! upload that never answered 201 does not come back.
//!
//! The commit records the marks as pending in the same transaction as the file
//! ([`crate::meta::MetaStore::pending_marks`]). The upload sends them before it answers 201, waiting
//! a bounded time; whatever a node did not acknowledge, the cleanup sends later.

use std::time::Duration;

use sixfold_wire::{ChunkMark, Mark, MarkKind};

use crate::meta::{ChunkId, CommitMark, FileRecord, MetaStore};
use crate::node_client::{SharedNodeClient, on_each_part};

/// How long an upload waits for its marks before answering 201 anyway.
pub const COMMIT_MARK_WAIT: Duration = Duration::from_secs(5);

/// The wire form of a pending mark.
pub fn wire_mark(chunk_id: ChunkId, m: &CommitMark) -> ChunkMark {
    ChunkMark {
        chunk_id,
        mark: Mark {
            kind: MarkKind::Committed,
            file_size: m.file_size,
            checksum: m.checksum,
            unix_ms: m.committed_unix_ms,
        },
    }
}

/// Sends the marks of a just committed file to its nodes, all at once, for at most `wait`, and
/// clears those acknowledged from the metadata. Returns how many were acknowledged.
pub async fn deliver(
    store: &SharedNodeClient,
    meta: &dyn MetaStore,
    file: &FileRecord,
    wait: Duration,
) -> usize {
    let Some(mark) = CommitMark::of(file) else {
        return 0;
    };
    let delivered = on_each_part(
        file.id,
        file.parts.iter().map(|p| (p.node_id, p.chunk_id)),
        wait,
        "commit mark not delivered",
        |node, chunk| {
            let sent = store.mark_chunks(node, vec![wire_mark(chunk, &mark)]);
            Box::pin(async move { sent.await.map(drop) })
        },
    )
    .await;
    let n = delivered.len();
    // Harmless when it fails: a mark sent twice is recorded twice.
    if let Err(e) = meta.marks_delivered(&delivered).await {
        tracing::warn!(file_id = %file.id, error = %e, "clearing delivered commit marks failed")
    }
    n
}
