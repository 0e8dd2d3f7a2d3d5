//! Damaged files: files with a part whose chunk a node found corrupt or unreadable (by its
//! background scrub or by a read). Marked durably, so that a restart of the gateway keeps
//! refusing to serve them, and dropped with the file when it is deleted (`files.rs`).
//!
//! A file is never un-marked by the gateway: an operator replaces it from a source copy (upload
//! again, delete the damaged one) or deletes it.

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::records::{ChunkId, FileRecord, hex16};
use super::tables::{CHUNK_REFS, DAMAGED, DAMAGED_NAME, FILES, FILES_NAME, chunk_key};
use super::{Meta, MetaError};

/// What is wrong with a stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// A block (or the whole body) does not match its crc32c.
    ChecksumMismatch,
    /// The node cannot read the chunk.
    Unreadable,
}

/// Who found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    Scrub,
    Read,
}

/// A damaged chunk as a node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkDamage {
    pub chunk_id: ChunkId,
    pub damage: DamageKind,
    pub block: Option<u64>,
    pub found_by: FoundBy,
    pub found_unix_ms: u64,
}

/// One damaged part of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPart {
    pub index: u32,
    pub node_id: Uuid,
    #[serde(with = "hex16")]
    pub chunk_id: ChunkId,
    pub damage: DamageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    pub found_by: FoundBy,
    /// When the node found it (the node's clock).
    pub found_unix_ms: u64,
    /// When the gateway marked the file.
    pub marked_unix_ms: u64,
}

/// A file with at least one damaged part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedFile {
    pub file_id: Uuid,
    /// In part order, each part once.
    pub parts: Vec<DamagedPart>,
}

impl DamagedFile {
    /// Whether part `index` is damaged.
    pub fn has_part(&self, index: u32) -> bool {
        self.parts.iter().any(|p| p.index == index)
    }
}

/// What became of one reported chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageOutcome {
    /// The file owning it is now marked (part `index`).
    Marked { file_id: Uuid, index: u32 },
    /// The file was marked for this part already.
    AlreadyMarked { file_id: Uuid, index: u32 },
    /// An upload in progress owns it: nothing is marked yet (asked again later).
    InUpload,
    /// No file or session references it (an orphan, or its file was deleted).
    Unreferenced,
}

/// What report `report` of `node_id` does to the damage mark of the file owning its chunk.
/// `owner` is the chunk index's entry for the chunk (a file's or a session's id), `file` the
/// owner's file record (`None`: no such file, an upload in progress), `marked` the owner's
/// damage record so far. Gives the outcome and the record to store when it changes. Pure:
/// every backend reads these in its transaction and stores what this gives.
pub(crate) fn mark_report(
    node_id: &Uuid,
    report: &ChunkDamage,
    owner: Option<Uuid>,
    file: Option<&FileRecord>,
    marked: Option<DamagedFile>,
    now_unix_ms: u64,
) -> (DamageOutcome, Option<DamagedFile>) {
    let Some(owner) = owner else {
        return (DamageOutcome::Unreferenced, None);
    };
    let Some(file) = file else {
        return (DamageOutcome::InUpload, None);
    };
    let Some(part) = file
        .parts
        .iter()
        .find(|p| p.node_id == *node_id && p.chunk_id == report.chunk_id)
    else {
        return (DamageOutcome::Unreferenced, None);
    };
    let mut entry = marked.unwrap_or(DamagedFile {
        file_id: owner,
        parts: Vec::new(),
    });
    if entry.has_part(part.index) {
        let outcome = DamageOutcome::AlreadyMarked {
            file_id: owner,
            index: part.index,
        };
        return (outcome, None);
    }
    entry.parts.push(DamagedPart {
        index: part.index,
        node_id: *node_id,
        chunk_id: report.chunk_id,
        damage: report.damage,
        block: report.block,
        found_by: report.found_by,
        found_unix_ms: report.found_unix_ms,
        marked_unix_ms: now_unix_ms,
    });
    entry.parts.sort_by_key(|p| p.index);
    let outcome = DamageOutcome::Marked {
        file_id: owner,
        index: part.index,
    };
    (outcome, Some(entry))
}

impl Meta {
    /// Marks the files owning the damaged chunks `reports` of `node_id`, in one transaction.
    pub fn mark_damaged(
        &self,
        node_id: &Uuid,
        reports: &[ChunkDamage],
        now_unix_ms: u64,
    ) -> Result<Vec<DamageOutcome>, MetaError> {
        self.write(|txn| {
            let refs = txn.open_table(CHUNK_REFS)?;
            let files = txn.open_table(FILES)?;
            let mut damaged = txn.open_table(DAMAGED)?;
            let mut out = Vec::with_capacity(reports.len());
            for report in reports {
                let owner = refs
                    .get(&chunk_key(node_id, &report.chunk_id))?
                    .map(|v| Uuid::from_bytes(*v.value()));
                let file: Option<FileRecord> = match &owner {
                    Some(o) => match files.get(o.as_bytes())? {
                        Some(v) => Some(decode(v.value()).map_err(MetaError::corrupt(FILES_NAME))?),
                        None => None,
                    },
                    None => None,
                };
                let marked: Option<DamagedFile> = match (&owner, &file) {
                    (Some(o), Some(_)) => match damaged.get(o.as_bytes())? {
                        Some(v) => {
                            Some(decode(v.value()).map_err(MetaError::corrupt(DAMAGED_NAME))?)
                        }
                        None => None,
                    },
                    _ => None,
                };
                let (outcome, store) =
                    mark_report(node_id, report, owner, file.as_ref(), marked, now_unix_ms);
                if let (Some(entry), Some(o)) = (store, owner) {
                    let value = encode(&entry).map_err(MetaError::corrupt(DAMAGED_NAME))?;
                    damaged.insert(o.as_bytes(), value.as_slice())?;
                }
                out.push(outcome);
            }
            Ok(out)
        })
    }

    /// The damage of file `id`, if it is marked.
    pub fn get_damage(&self, id: &Uuid) -> Result<Option<DamagedFile>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(DAMAGED)?;
            match table.get(id.as_bytes())? {
                Some(v) => decode(v.value())
                    .map(Some)
                    .map_err(MetaError::corrupt(DAMAGED_NAME)),
                None => Ok(None),
            }
        })
    }

    /// Up to `limit` damaged files with ids above `after`, in id order.
    pub fn list_damaged(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DamagedFile>, MetaError> {
        use std::ops::Bound;
        self.read(|txn| {
            let table = txn.open_table(DAMAGED)?;
            let after = after.map(Uuid::into_bytes);
            let start = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in table
                .range::<&[u8; 16]>((start, Bound::Unbounded))?
                .take(limit)
            {
                let (_, v) = row?;
                out.push(decode(v.value()).map_err(MetaError::corrupt(DAMAGED_NAME))?);
            }
            Ok(out)
        })
    }

    /// Files marked damaged.
    pub fn damaged_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(DAMAGED)?.len()?))
    }
}

/// Drops file `id`'s damage mark inside `txn` (the file is being removed).
pub(super) fn forget_in(txn: &redb::WriteTransaction, id: &Uuid) -> Result<(), MetaError> {
    txn.open_table(DAMAGED)?.remove(id.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::PartRecord;

    fn file() -> FileRecord {
        FileRecord {
            id: Uuid::from_u128(1),
            name: "f".into(),
            content_type: None,
            size: 20,
            created_unix_ms: 0,
            checksum: "0123456789abcdef0123456789abcdef".into(),
            parts: (0..2u32)
                .map(|i| PartRecord {
                    index: i,
                    offset: u64::from(i) * 10,
                    len: 10,
                    node_id: Uuid::from_u128(10 + u128::from(i)),
                    chunk_id: [i as u8; 16],
                    crc32c: 0,
                    stored_len: None,
                })
                .collect(),
        }
    }

    fn report(chunk: u8) -> ChunkDamage {
        ChunkDamage {
            chunk_id: [chunk; 16],
            damage: DamageKind::ChecksumMismatch,
            block: Some(3),
            found_by: FoundBy::Scrub,
            found_unix_ms: 5,
        }
    }

    #[test]
    fn a_report_marks_the_owning_files_part_once() {
        let (f, node) = (file(), Uuid::from_u128(11));
        let owner = Some(f.id);
        let (outcome, stored) = mark_report(&node, &report(1), owner, Some(&f), None, 9);
        assert_eq!(
            outcome,
            DamageOutcome::Marked {
                file_id: f.id,
                index: 1
            }
        );
        let stored = stored.expect("a record to store");
        assert_eq!(
            stored.parts,
            vec![DamagedPart {
                index: 1,
                node_id: node,
                chunk_id: [1; 16],
                damage: DamageKind::ChecksumMismatch,
                block: Some(3),
                found_by: FoundBy::Scrub,
                found_unix_ms: 5,
                marked_unix_ms: 9,
            }]
        );
        // Part 0 joins the record, in part order; part 1 again changes nothing.
        let (outcome, both) = mark_report(
            &Uuid::from_u128(10),
            &report(0),
            owner,
            Some(&f),
            Some(stored.clone()),
            10,
        );
        assert_eq!(
            outcome,
            DamageOutcome::Marked {
                file_id: f.id,
                index: 0
            }
        );
        let both = both.expect("record");
        assert_eq!(
            both.parts.iter().map(|p| p.index).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(
            mark_report(&node, &report(1), owner, Some(&f), Some(both), 11),
            (
                DamageOutcome::AlreadyMarked {
                    file_id: f.id,
                    index: 1
                },
                None
            )
        );
    }

    #[test]
    fn chunks_of_no_file_mark_nothing() {
        let (f, node) = (file(), Uuid::from_u128(11));
        assert_eq!(
            mark_report(&node, &report(1), None, None, None, 9),
            (DamageOutcome::Unreferenced, None)
        );
        assert_eq!(
            mark_report(&node, &report(1), Some(f.id), None, None, 9),
            (DamageOutcome::InUpload, None)
        );
        // The file does not name this chunk on this node.
        assert_eq!(
            mark_report(&node, &report(0), Some(f.id), Some(&f), None, 9),
            (DamageOutcome::Unreferenced, None)
        );
    }
}
