//! The first open of a metadata file restored from a snapshot (`backup.rs`).
//!
//! A restored snapshot knows every file committed before it was taken, and nothing after: the
//! chunks of later files are on the nodes, unreferenced. The nodes keep this cluster's id, so
//! nothing else tells them apart from orphans. On the first open, in one transaction:
//! - every node the metadata knows is marked unaccounted (`unaccounted.rs`): its orphan scans
//!   are skipped and nothing on it is deleted until an operator recovers it;
//! - the upload sessions the snapshot caught are dropped *without* queueing their chunks for
//!   deletion: those uploads may have committed after the snapshot, so their chunks may be a
//!   file's (the startup abort of leftover sessions would delete them otherwise);
//! - the snapshot marker is removed, so this happens once.

use redb::ReadableTable;
use uuid::Uuid;

use super::backup::{SNAPSHOT, SNAPSHOT_NAME, SnapshotInfo, snapshot_info_in};
use super::codec::{decode, encode};
use super::records::{NodeRecord, UploadSession};
use super::tables::{
    CHUNK_REFS, NODES, NODES_NAME, SESSIONS, SESSIONS_NAME, UNACCOUNTED, UNACCOUNTED_NAME,
    chunk_key,
};
use super::unaccounted::UnaccountedNode;
use super::{Meta, MetaError};

/// What the first open of a restored snapshot did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredSnapshot {
    pub info: SnapshotInfo,
    /// Nodes marked unaccounted.
    pub nodes_marked: usize,
    /// Upload sessions dropped (their chunks kept).
    pub sessions_dropped: usize,
}

/// The reason recorded for every node of a restored snapshot (shown by `/health`).
pub fn restored_reason(taken_unix_ms: u64) -> String {
    format!(
        "the metadata was restored from a backup taken at {}; files committed after it may \
         have chunks on this node",
        crate::time_fmt::rfc3339_from_unix_ms(taken_unix_ms)
    )
}

impl Meta {
    /// Adopts a restored snapshot (see the module doc); `None` when this file is not one.
    pub(super) fn adopt_restored_snapshot(&self) -> Result<Option<RestoredSnapshot>, MetaError> {
        let Some(info) = self.read(snapshot_info_in)? else {
            return Ok(None);
        };
        let reason = restored_reason(info.taken_unix_ms);
        let now = self.clock.unix_ms();
        let restored = self.write(|txn| {
            let mut nodes_marked = 0;
            {
                let nodes = txn.open_table(NODES)?;
                let mut marks = txn.open_table(UNACCOUNTED)?;
                for row in nodes.iter()? {
                    let (_, value) = row?;
                    let node: NodeRecord =
                        decode(value.value()).map_err(MetaError::corrupt(NODES_NAME))?;
                    if marks.get(node.id.as_bytes())?.is_some() {
                        continue;
                    }
                    let mark = encode(&UnaccountedNode {
                        node_id: node.id,
                        chunk_count: node.chunk_count,
                        reason: reason.clone(),
                        since_unix_ms: now,
                    })
                    .map_err(MetaError::corrupt(UNACCOUNTED_NAME))?;
                    marks.insert(node.id.as_bytes(), mark.as_slice())?;
                    nodes_marked += 1;
                }
            }
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut refs = txn.open_table(CHUNK_REFS)?;
            // Sessions in flight at one instant: as many as uploads ran then.
            let mut dropped: Vec<UploadSession> = Vec::new();
            for row in sessions.iter()? {
                let (_, value) = row?;
                dropped.push(decode(value.value()).map_err(MetaError::corrupt(SESSIONS_NAME))?);
            }
            for session in &dropped {
                sessions.remove(session.file_id.as_bytes())?;
                for part in &session.parts {
                    let key = chunk_key(&part.node_id, &part.chunk_id);
                    // Only the session's own reference: a chunk id is never shared, but a
                    // reference held by a file must never go with a session.
                    let held_by_session = refs
                        .get(&key)?
                        .is_some_and(|id| Uuid::from_bytes(*id.value()) == session.file_id);
                    if held_by_session {
                        refs.remove(&key)?;
                    }
                }
            }
            drop((sessions, refs));
            if !txn.delete_table(SNAPSHOT)? {
                return Err(MetaError::InvalidRecord(format!(
                    "the {SNAPSHOT_NAME} table vanished while it was being adopted"
                )));
            }
            Ok(RestoredSnapshot {
                info: info.clone(),
                nodes_marked,
                sessions_dropped: dropped.len(),
            })
        })?;
        tracing::error!(
            taken_at = %crate::time_fmt::rfc3339_from_unix_ms(info.taken_unix_ms),
            taken_by = %info.release,
            nodes_marked = restored.nodes_marked,
            sessions_dropped = restored.sessions_dropped,
            "this metadata was restored from a backup: files committed after the backup still \
             have their chunks on the nodes, which are now marked unaccounted (nothing on them is \
             deleted, /health says recovery_needed). Files in the backup are served as usual. Run \
             `sixfold-gateway admin recover` to bring back the later files from the nodes and \
             clear the marks"
        );
        Ok(Some(restored))
    }
}
