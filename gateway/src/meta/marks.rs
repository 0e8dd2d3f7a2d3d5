//! Commit marks waiting to reach their nodes. A commit records one per part in the same
//! transaction as the file, so a mark that a crash or an unreachable node kept from its node
//! is sent later, never forgotten; a node's acknowledgement (durable there) removes it.
//!
//! Value layout, version 1 (33 bytes): `version` u8 = 1, `file_size` u64 LE, `checksum` 16
//! bytes (xxh3-128, big-endian), `committed_unix_ms` u64 LE.

use redb::{ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::records::{ChunkId, FileRecord};
use super::tables::{PENDING_MARKS, chunk_key};
use super::{Meta, MetaError};

const VERSION: u8 = 1;
pub(crate) const VALUE_LEN: usize = 1 + 8 + 16 + 8;

/// A committed file's mark for one of its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark {
    pub file_size: u64,
    /// xxh3-128 of the whole file.
    pub checksum: [u8; 16],
    pub committed_unix_ms: u64,
}

impl CommitMark {
    /// The mark of a committed file; `None` if its checksum is not 32 hex digits (a commit
    /// checks that, so only a damaged record could).
    pub fn of(file: &FileRecord) -> Option<CommitMark> {
        Some(CommitMark {
            file_size: file.size,
            checksum: u128::from_str_radix(&file.checksum, 16)
                .ok()
                .filter(|_| file.checksum.len() == 32)?
                .to_be_bytes(),
            committed_unix_ms: file.created_unix_ms,
        })
    }
}

/// A mark not yet acknowledged by its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingMark {
    pub node_id: Uuid,
    pub chunk_id: ChunkId,
    pub mark: CommitMark,
}

impl PendingMark {
    /// The pending-marks row of chunk `chunk_id` on `node_id` whose stored value is `value`
    /// (every backend reads its rows with this).
    pub(crate) fn from_row(
        node_id: Uuid,
        chunk_id: ChunkId,
        value: &[u8],
    ) -> Result<PendingMark, MetaError> {
        Ok(PendingMark {
            node_id,
            chunk_id,
            mark: decode(value)?,
        })
    }
}

pub(crate) fn encode(m: &CommitMark) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    out[0] = VERSION;
    out[1..9].copy_from_slice(&m.file_size.to_le_bytes());
    out[9..25].copy_from_slice(&m.checksum);
    out[25..33].copy_from_slice(&m.committed_unix_ms.to_le_bytes());
    out
}

pub(crate) fn decode(b: &[u8]) -> Result<CommitMark, MetaError> {
    if b.len() != VALUE_LEN || b[0] != VERSION {
        return Err(MetaError::InvalidRecord(format!(
            "pending commit mark: {} bytes, version {:?}",
            b.len(),
            b.first()
        )));
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let mut checksum = [0u8; 16];
    checksum.copy_from_slice(&b[9..25]);
    Ok(CommitMark {
        file_size: u64_at(1),
        checksum,
        committed_unix_ms: u64_at(25),
    })
}

/// Records the marks of a file being committed, inside its commit transaction.
pub(super) fn record_for_commit(
    txn: &WriteTransaction,
    file: &FileRecord,
) -> Result<(), MetaError> {
    let Some(mark) = CommitMark::of(file) else {
        return Err(MetaError::InvalidRecord(format!(
            "file {} has no valid checksum to mark",
            file.id
        )));
    };
    let value = encode(&mark);
    let mut table = txn.open_table(PENDING_MARKS)?;
    for p in &file.parts {
        table.insert(&chunk_key(&p.node_id, &p.chunk_id), value.as_slice())?;
    }
    Ok(())
}

/// Drops the marks of a file being deleted, inside its delete transaction.
pub(super) fn forget_for_delete(
    txn: &WriteTransaction,
    file: &FileRecord,
) -> Result<(), MetaError> {
    let mut table = txn.open_table(PENDING_MARKS)?;
    for p in &file.parts {
        table.remove(&chunk_key(&p.node_id, &p.chunk_id))?;
    }
    Ok(())
}

impl Meta {
    /// Up to `limit` marks waiting for `node_id`, in chunk id order.
    pub fn pending_marks(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingMark>, MetaError> {
        self.read(|txn| {
            super::deletes::node_rows(txn, PENDING_MARKS, node_id, limit, PendingMark::from_row)
        })
    }

    /// Removes marks their nodes acknowledged.
    pub fn marks_delivered(&self, delivered: &[(Uuid, ChunkId)]) -> Result<(), MetaError> {
        if delivered.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(PENDING_MARKS)?;
            for (node, chunk) in delivered {
                table.remove(&chunk_key(node, chunk))?;
            }
            Ok(())
        })
    }

    /// Marks waiting for all nodes.
    pub fn pending_mark_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(PENDING_MARKS)?.len()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_refuse_other_versions() {
        let m = CommitMark {
            file_size: 123,
            checksum: [7; 16],
            committed_unix_ms: 1_780_000_000_000,
        };
        let b = encode(&m);
        assert_eq!(decode(&b).unwrap(), m);
        let mut other = b;
        other[0] = 2;
        assert!(decode(&other).is_err());
        assert!(decode(&b[..10]).is_err());
    }

    #[test]
    fn the_mark_carries_the_checksum_as_big_endian_bytes() {
        let file = FileRecord {
            id: Uuid::nil(),
            name: "a".into(),
            content_type: None,
            size: 5,
            created_unix_ms: 9,
            checksum: "000102030405060708090a0b0c0d0e0f".into(),
            parts: vec![],
        };
        let m = CommitMark::of(&file).unwrap();
        assert_eq!(
            m.checksum,
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        assert_eq!((m.file_size, m.committed_unix_ms), (5, 9));
        let bad = FileRecord {
            checksum: "xyz".into(),
            ..file
        };
        assert_eq!(CommitMark::of(&bad), None);
    }
}
