//! The decisions of a part move, shared by every backend (redb in `meta/moves.rs`, PostgreSQL
//! in `meta_postgres/moves.rs`). Pure: each rule takes what the backend read inside its
//! transaction and the time, and gives the outcome and the [`MoveWrite`]s the backend makes in
//! that same transaction. So the compare-and-swap, the roll back and the release after the
//! grace are decided once, and a backend only reads and writes its tables.

use uuid::Uuid;

use super::{BeginOutcome, MoveRecord, MoveState, SwapOutcome};
use crate::meta::MetaError;
use crate::meta::marks::CommitMark;
use crate::meta::records::{ChunkId, DeleteEntry, DeleteReason, FileRecord};
use crate::meta::tables::chunk_key;

/// One write of a move's transaction. Keys are chunk keys (node id ‖ chunk id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MoveWrite {
    /// `chunk_refs`: the chunk belongs to `file_id` (no orphan scan takes it).
    Reference { key: [u8; 32], file_id: Uuid },
    /// `chunk_refs`: the chunk belongs to nothing any more.
    Unreference { key: [u8; 32] },
    /// `delete_queue`: the chunk is to be deleted from its node (an entry there is replaced).
    QueueDelete { key: [u8; 32], entry: DeleteEntry },
    /// `pending_marks`: the chunk's commit mark is still to be sent.
    PendMark { key: [u8; 32], mark: CommitMark },
    /// `pending_marks`: no mark is to be sent to the chunk.
    ForgetMark { key: [u8; 32] },
    /// `files`: the file record, stored under its id.
    PutFile(FileRecord),
    /// `moves`: the move record, stored under [`MoveRecord::key`].
    PutMove(MoveRecord),
    /// `moves`: the record under `key` is dropped.
    DropMove { key: [u8; 32] },
}

/// What [`begin`] is asked: move part `part_index` of `file_id` from `from_node` to a new chunk
/// `to_chunk` on `to_node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MoveRequest {
    pub file_id: Uuid,
    pub part_index: u32,
    pub from_node: Uuid,
    pub to_node: Uuid,
    pub to_chunk: ChunkId,
}

impl MoveRequest {
    /// The key the move is recorded under: the target chunk's.
    pub(crate) fn key(&self) -> [u8; 32] {
        chunk_key(&self.to_node, &self.to_chunk)
    }
}

impl MoveRecord {
    /// The key the move is recorded under: the target chunk's (target node ‖ chunk id).
    pub(crate) fn key(&self) -> [u8; 32] {
        chunk_key(&self.to_node, &self.to_chunk)
    }

    /// The source chunk's key.
    pub(crate) fn source_key(&self) -> [u8; 32] {
        chunk_key(&self.from_node, &self.from_chunk)
    }

    /// Whether the move's source may go at `now_ms` (swapped, its grace period over).
    pub(crate) fn is_due(&self, now_ms: u64) -> bool {
        matches!(self.state, MoveState::Swapped { release_after_unix_ms } if release_after_unix_ms <= now_ms)
    }
}

/// Why `file` no longer matches move `m`, if it does not: the part is elsewhere or changed, or
/// another part of the file is on the target (the file would hold two parts on one node).
pub(crate) fn mismatch(file: &FileRecord, m: &MoveRecord) -> Option<&'static str> {
    let Some(part) = file.parts.iter().find(|p| p.index == m.part_index) else {
        return Some("the file has no such part");
    };
    if part.node_id != m.from_node || part.chunk_id != m.from_chunk {
        return Some("the part is no longer at the source");
    }
    if part.crc32c != m.crc32c || part.stored_len() != m.len {
        return Some("the part changed");
    }
    if file
        .parts
        .iter()
        .any(|p| p.index != m.part_index && p.node_id == m.to_node)
    {
        return Some("another part of the file is on the target");
    }
    None
}

fn delete_entry(file_id: Uuid, reason: DeleteReason, now_ms: u64) -> DeleteEntry {
    DeleteEntry {
        file_id: Some(file_id),
        reason,
        enqueued_unix_ms: now_ms,
    }
}

/// The copy of a move that will not complete: out of the index and the marks, into the delete
/// queue, the record dropped.
pub(crate) fn drop_copy(m: &MoveRecord, now_ms: u64) -> [MoveWrite; 4] {
    let key = m.key();
    [
        MoveWrite::Unreference { key },
        MoveWrite::ForgetMark { key },
        MoveWrite::QueueDelete {
            key,
            entry: delete_entry(m.file_id, DeleteReason::Aborted, now_ms),
        },
        MoveWrite::DropMove { key },
    ]
}

/// Step 1: `file` is the file as it is now (`None`: gone); `target_in_use` whether the chunk
/// index already has the target chunk. A move is recorded only if the file still has the part
/// at the source and no other part on the target; a target chunk id in use is a conflict.
pub(crate) fn begin(
    req: &MoveRequest,
    file: Option<FileRecord>,
    target_in_use: bool,
    now_ms: u64,
) -> Result<(BeginOutcome, Vec<MoveWrite>), MetaError> {
    let stale = |why| Ok((BeginOutcome::Stale(why), Vec::new()));
    let Some(file) = file else {
        return stale("the file is gone");
    };
    let Some(part) = file.parts.iter().find(|p| p.index == req.part_index) else {
        return stale("the file has no such part");
    };
    if part.node_id != req.from_node {
        return stale("the part is no longer at the source");
    }
    let record = MoveRecord {
        file_id: req.file_id,
        part_index: req.part_index,
        from_node: req.from_node,
        from_chunk: part.chunk_id,
        to_node: req.to_node,
        to_chunk: req.to_chunk,
        len: part.stored_len(),
        crc32c: part.crc32c,
        recorded_unix_ms: now_ms,
        state: MoveState::Copying,
    };
    if let Some(why) = mismatch(&file, &record) {
        return stale(why);
    }
    if target_in_use {
        return Err(MetaError::Conflict("the target chunk id is in use".into()));
    }
    let writes = vec![
        MoveWrite::Reference {
            key: record.key(),
            file_id: req.file_id,
        },
        MoveWrite::PutMove(record),
    ];
    Ok((BeginOutcome::Recorded(file), writes))
}

/// Which file [`swap`] needs read for `record` (the move recorded under the copy's key, if
/// any): the move's file while it is still copying, else none.
pub(crate) fn swap_reads_file(record: Option<&MoveRecord>) -> Option<Uuid> {
    record
        .filter(|m| m.state == MoveState::Copying)
        .map(|m| m.file_id)
}

/// Step 3, the compare-and-swap: `record` is the move under the copy's key, `file` its file as
/// it is now (read as [`swap_reads_file`] says). If the file still has the part where the move
/// found it, the part's location becomes the copy, the source's pending mark goes (the source
/// goes), the copy's mark is left pending unless `mark_delivered`, and the record turns
/// `swapped` until `release_after_ms`. Otherwise the copy is dropped ([`drop_copy`]).
pub(crate) fn swap(
    record: Option<MoveRecord>,
    file: Option<FileRecord>,
    mark_delivered: bool,
    release_after_ms: u64,
    now_ms: u64,
) -> Result<(SwapOutcome, Vec<MoveWrite>), MetaError> {
    let Some(mut record) = record else {
        return Ok((SwapOutcome::Unknown, Vec::new()));
    };
    if record.state != MoveState::Copying {
        return Ok((SwapOutcome::Swapped, Vec::new()));
    }
    let why = match &file {
        None => Some("the file was deleted"),
        Some(f) => mismatch(f, &record),
    };
    let (Some(mut file), None) = (file, why) else {
        let why = why.unwrap_or("the file was deleted");
        return Ok((
            SwapOutcome::Abandoned(why),
            drop_copy(&record, now_ms).to_vec(),
        ));
    };
    for p in file.parts.iter_mut() {
        if p.index == record.part_index {
            p.node_id = record.to_node;
            p.chunk_id = record.to_chunk;
        }
    }
    let mut writes = Vec::with_capacity(4);
    // The source's commit mark matters no more (it goes); the copy's is sent by the cleanup
    // unless it already arrived.
    writes.push(MoveWrite::ForgetMark {
        key: record.source_key(),
    });
    if !mark_delivered {
        let Some(mark) = CommitMark::of(&file) else {
            return Err(MetaError::InvalidRecord(format!(
                "file {} has no valid checksum to mark",
                file.id
            )));
        };
        writes.push(MoveWrite::PendMark {
            key: record.key(),
            mark,
        });
    }
    writes.insert(0, MoveWrite::PutFile(file));
    record.state = MoveState::Swapped {
        release_after_unix_ms: release_after_ms,
    };
    writes.push(MoveWrite::PutMove(record));
    Ok((SwapOutcome::Swapped, writes))
}

/// A move that failed before its swap: `record` is the move under the copy's key. Only a move
/// still copying is abandoned (its copy dropped); whether it was.
pub(crate) fn abandon(record: Option<&MoveRecord>, now_ms: u64) -> (bool, Vec<MoveWrite>) {
    match record {
        Some(m) if m.state == MoveState::Copying => (true, drop_copy(m, now_ms).to_vec()),
        _ => (false, Vec::new()),
    }
}

/// On start: of every recorded move, those still copying are rolled back (their copies
/// dropped; the file still names the source). The moves rolled back and the writes.
pub(crate) fn roll_back(
    recorded: Vec<MoveRecord>,
    now_ms: u64,
) -> (Vec<MoveRecord>, Vec<MoveWrite>) {
    let unfinished: Vec<MoveRecord> = recorded
        .into_iter()
        .filter(|m| m.state == MoveState::Copying)
        .collect();
    let writes = unfinished
        .iter()
        .flat_map(|m| drop_copy(m, now_ms))
        .collect();
    (unfinished, writes)
}

/// Step 4, for a move that [`MoveRecord::is_due`]: its source goes to the delete queue and the
/// record is dropped. `source_holder` is the source's entry in the chunk index (a file id's
/// bytes): only this move's file's hold is released (a file naming the source again, which
/// fresh chunk ids rule out, would keep it).
pub(crate) fn release(m: &MoveRecord, source_holder: Option<&[u8]>, now_ms: u64) -> Vec<MoveWrite> {
    let source = m.source_key();
    let mut writes = Vec::with_capacity(3);
    if source_holder == Some(m.file_id.as_bytes().as_slice()) {
        writes.push(MoveWrite::Unreference { key: source });
    }
    writes.push(MoveWrite::QueueDelete {
        key: source,
        entry: delete_entry(m.file_id, DeleteReason::Moved, now_ms),
    });
    writes.push(MoveWrite::DropMove { key: m.key() });
    writes
}

#[cfg(test)]
mod tests;
