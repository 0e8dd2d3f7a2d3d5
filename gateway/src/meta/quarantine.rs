//! The orphan quarantine: chunks a scan found unreferenced are marked here with when they were
//! first seen, and become deletable only after a grace period (DESIGN: never delete what
//! cannot be accounted for). Marks are durable, so a restart of the gateway does not restart
//! the grace; losing the metadata loses the marks too, which only delays deletion.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::records::{ChunkId, DeleteEntry, DeleteReason};
use super::tables::{
    CHUNK_REFS, DELETE_QUEUE, QUARANTINE, QUARANTINE_NAME, chunk_key, node_key_bounds,
    split_chunk_key,
};
use super::{Meta, MetaError};

/// A quarantined chunk: what its header said and when a scan first found it unreferenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineMark {
    /// The file id in the chunk's header.
    pub file_id: Uuid,
    pub part_index: u32,
    pub first_seen_unix_ms: u64,
}

impl Meta {
    /// Up to `limit` quarantined chunks of `node_id` after `after`, in chunk id order.
    pub fn quarantined(
        &self,
        node_id: &Uuid,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        let (lo, hi) = node_key_bounds(node_id);
        let lo = after.map(|c| chunk_key(node_id, &c)).unwrap_or(lo);
        self.read(|txn| {
            let table = txn.open_table(QUARANTINE)?;
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in table.range::<&[u8; 32]>(&lo..=&hi)? {
                let (key, value) = row?;
                let (_, chunk_id) = split_chunk_key(key.value());
                if Some(chunk_id) == after {
                    continue;
                }
                let mark: QuarantineMark =
                    decode(value.value()).map_err(MetaError::corrupt(QUARANTINE_NAME))?;
                out.push((chunk_id, mark));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Marks `add` as quarantined (keeping the first sighting of chunks already marked) and
    /// drops the marks of `release` (chunks referenced again or gone), in one transaction.
    /// A chunk that a file or live session references is never marked.
    pub fn update_quarantine(
        &self,
        node_id: &Uuid,
        add: &[(ChunkId, QuarantineMark)],
        release: &[ChunkId],
    ) -> Result<usize, MetaError> {
        self.write(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let mut table = txn.open_table(QUARANTINE)?;
            for chunk_id in release {
                table.remove(&chunk_key(node_id, chunk_id))?;
            }
            let mut marked = 0;
            for (chunk_id, mark) in add {
                let key = chunk_key(node_id, chunk_id);
                if refs.get(&key)?.is_some() || table.get(&key)?.is_some() {
                    continue;
                }
                let value = encode(mark).map_err(MetaError::corrupt(QUARANTINE_NAME))?;
                table.insert(&key, value.as_slice())?;
                marked += 1;
            }
            Ok(marked)
        })
    }

    /// Moves quarantined chunks to the delete queue, skipping any that a file or live session
    /// references by now or that are not quarantined (checked in the same transaction).
    /// Returns the chunks queued.
    pub fn delete_quarantined(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        let entry = |file_id| {
            encode(&DeleteEntry {
                file_id: Some(file_id),
                reason: DeleteReason::Orphan,
                enqueued_unix_ms: self.clock.unix_ms(),
            })
            .map_err(MetaError::corrupt(QUARANTINE_NAME))
        };
        self.write(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let mut table = txn.open_table(QUARANTINE)?;
            let mut queue = txn.open_table(DELETE_QUEUE)?;
            let mut queued = Vec::new();
            for chunk_id in chunk_ids {
                let key = chunk_key(node_id, chunk_id);
                if refs.get(&key)?.is_some() {
                    continue;
                }
                let Some(value) = table.remove(&key)? else {
                    continue;
                };
                let mark: QuarantineMark =
                    decode(value.value()).map_err(MetaError::corrupt(QUARANTINE_NAME))?;
                drop(value);
                if queue.get(&key)?.is_none() {
                    queue.insert(&key, entry(mark.file_id)?.as_slice())?;
                }
                queued.push((*chunk_id, mark));
            }
            Ok(queued)
        })
    }

    /// Quarantined chunks on all nodes.
    pub fn quarantine_len(&self) -> Result<u64, MetaError> {
        use redb::ReadableTableMetadata;
        self.read(|txn| Ok(txn.open_table(QUARANTINE)?.len()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{DeleteReason, PlannedPart, UploadSession};

    fn mark(ms: u64) -> QuarantineMark {
        QuarantineMark {
            file_id: Uuid::from_u128(9),
            part_index: 2,
            first_seen_unix_ms: ms,
        }
    }

    #[test]
    fn marks_keep_their_first_sighting_and_never_cover_a_referenced_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("m.redb")).expect("open");
        let node = Uuid::from_u128(1);
        let live = [7u8; 16];
        meta.begin_session(&UploadSession {
            file_id: Uuid::from_u128(3),
            name: "x".into(),
            content_type: None,
            size: Some(1),
            created_unix_ms: 0,
            expires_unix_ms: u64::MAX,
            parts: vec![PlannedPart {
                index: 0,
                offset: 0,
                len: 1,
                node_id: node,
                chunk_id: live,
            }],
            multipart: false,
            owner: None,
        })
        .expect("session");
        let marked = meta
            .update_quarantine(&node, &[([1; 16], mark(10)), (live, mark(10))], &[])
            .expect("mark");
        assert_eq!(marked, 1, "a live session's chunk is never marked");
        // Marking again keeps the first sighting.
        meta.update_quarantine(&node, &[([1; 16], mark(99))], &[])
            .expect("mark again");
        assert_eq!(
            meta.quarantined(&node, None, 10).expect("list"),
            vec![([1; 16], mark(10))]
        );
        assert_eq!(meta.quarantine_len().expect("len"), 1);

        // Queued for deletion only when still marked and unreferenced.
        let queued = meta
            .delete_quarantined(&node, &[[1; 16], live, [8; 16]])
            .expect("delete");
        assert_eq!(queued, vec![([1; 16], mark(10))]);
        let pending = meta.pending_deletes(&node, 10).expect("queue");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].reason, DeleteReason::Orphan);
        assert_eq!(pending[0].file_id, Some(Uuid::from_u128(9)));
        assert_eq!(meta.quarantine_len().expect("len"), 0);
    }

    #[test]
    fn marks_page_in_chunk_order_and_release_drops_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("m.redb")).expect("open");
        let node = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let add: Vec<_> = (1..=5u8).map(|i| ([i; 16], mark(u64::from(i)))).collect();
        meta.update_quarantine(&node, &add, &[]).expect("mark");
        meta.update_quarantine(&other, &add[..1], &[])
            .expect("mark other");
        let first = meta.quarantined(&node, None, 2).expect("page 1");
        assert_eq!(first.iter().map(|(c, _)| c[0]).collect::<Vec<_>>(), [1, 2]);
        let next = meta.quarantined(&node, Some([2; 16]), 10).expect("page 2");
        assert_eq!(
            next.iter().map(|(c, _)| c[0]).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        meta.update_quarantine(&node, &[], &[[3; 16], [4; 16]])
            .expect("release");
        let left = meta.quarantined(&node, None, 10).expect("left");
        assert_eq!(
            left.iter().map(|(c, _)| c[0]).collect::<Vec<_>>(),
            [1, 2, 5]
        );
        assert_eq!(meta.quarantined(&other, None, 10).expect("other").len(), 1);
    }
}
