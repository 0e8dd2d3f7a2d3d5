//! Part moves of the rebalancer, recorded durably so that a crash at any step resumes or rolls
//! back (issue 15). One record per move, keyed by the target chunk (target node ‖ chunk id).
//!
//! The steps and what each leaves in the metadata:
//! 1. [`Meta::begin_move`]: the move is recorded (`copying`) and the target chunk is entered in
//!    the chunk reference index under the file's id, so no orphan scan takes it for garbage.
//!    The file still names the source; reads go there.
//! 2. The target writes the copy (no metadata change).
//! 3. [`Meta::swap_move`], one transaction: if the file still has the part at the source (same
//!    chunk, same crc32c) and no other part on the target, the part's location becomes the
//!    target and the record turns `swapped` with a time after which the source may go; the
//!    source keeps its entry in the reference index until then, so that reads which started
//!    before the swap still find it. Otherwise (file deleted or changed) the copy is queued for
//!    deletion and the record dropped.
//! 4. [`Meta::release_moved_sources`]: once the grace period is over, the source leaves the
//!    index and is queued for deletion, and the record is dropped.
//!
//! [`Meta::roll_back_unfinished_moves`] on start queues the copy of every move still `copying`
//! for deletion (the file never named it). A `swapped` move just waits out its grace period.
//! So a part is never lost (the source goes only after the file names a verified copy) and the
//! file never names two copies.
//!
//! Value: the codec's version byte, then [`MoveRecord`] as JSON.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::records::{ChunkId, DeleteEntry, DeleteReason, FileRecord, hex16};
use super::tables::{
    CHUNK_REFS, DELETE_QUEUE, DELETE_QUEUE_NAME, FILES, FILES_NAME, MOVES, MOVES_NAME,
    PENDING_MARKS, chunk_key,
};
use super::{Meta, MetaError};

/// Where a move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MoveState {
    /// Recorded; the copy is being written (or was, before a crash).
    Copying,
    /// The file names the copy; the source is deleted after `release_after_unix_ms`.
    Swapped { release_after_unix_ms: u64 },
}

/// One part moving from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    pub file_id: Uuid,
    pub part_index: u32,
    pub from_node: Uuid,
    #[serde(with = "hex16")]
    pub from_chunk: ChunkId,
    pub to_node: Uuid,
    #[serde(with = "hex16")]
    pub to_chunk: ChunkId,
    /// Bytes of the stored chunk.
    pub len: u64,
    /// crc32c of the stored chunk, as the file records it.
    pub crc32c: u32,
    pub recorded_unix_ms: u64,
    #[serde(flatten)]
    pub state: MoveState,
}

/// What [`Meta::begin_move`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginOutcome {
    /// Recorded; the file as it is now (the copy's header facts come from it).
    Recorded(FileRecord),
    /// The file is gone, or the part is no longer where the plan saw it, or the target holds
    /// another part of the file: nothing recorded.
    Stale(&'static str),
}

/// What [`Meta::swap_move`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The file names the copy now.
    Swapped,
    /// The file was deleted or changed meanwhile: the copy is queued for deletion.
    Abandoned(&'static str),
    /// No such move is recorded (rolled back already).
    Unknown,
}

fn delete_entry(file_id: Uuid, reason: DeleteReason, now_ms: u64) -> Result<Vec<u8>, MetaError> {
    encode(&DeleteEntry {
        file_id: Some(file_id),
        reason,
        enqueued_unix_ms: now_ms,
    })
    .map_err(MetaError::corrupt(DELETE_QUEUE_NAME))
}

/// Drops the copy of a move that will not complete: out of the index, into the delete queue.
fn drop_copy(txn: &WriteTransaction, m: &MoveRecord, now_ms: u64) -> Result<(), MetaError> {
    let key = chunk_key(&m.to_node, &m.to_chunk);
    txn.open_table(CHUNK_REFS)?.remove(&key)?;
    txn.open_table(PENDING_MARKS)?.remove(&key)?;
    let entry = delete_entry(m.file_id, DeleteReason::Aborted, now_ms)?;
    txn.open_table(DELETE_QUEUE)?
        .insert(&key, entry.as_slice())?;
    txn.open_table(MOVES)?.remove(&key)?;
    Ok(())
}

fn load_file(txn: &WriteTransaction, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
    let files = txn.open_table(FILES)?;
    let Some(v) = files.get(id.as_bytes())? else {
        return Ok(None);
    };
    decode(v.value())
        .map(Some)
        .map_err(MetaError::corrupt(FILES_NAME))
}

/// Why the file no longer matches the move, if it does not.
fn mismatch(file: &FileRecord, m: &MoveRecord) -> Option<&'static str> {
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

impl Meta {
    /// Step 1: records a move of part `part_index` of `file_id` from `from_node` to a new chunk
    /// `to_chunk` on `to_node`, if the file still has the part there.
    pub fn begin_move(
        &self,
        file_id: &Uuid,
        part_index: u32,
        from_node: &Uuid,
        to_node: &Uuid,
        to_chunk: ChunkId,
        now_ms: u64,
    ) -> Result<BeginOutcome, MetaError> {
        self.write(|txn| {
            let Some(file) = load_file(txn, file_id)? else {
                return Ok(BeginOutcome::Stale("the file is gone"));
            };
            let Some(part) = file.parts.iter().find(|p| p.index == part_index) else {
                return Ok(BeginOutcome::Stale("the file has no such part"));
            };
            if part.node_id != *from_node {
                return Ok(BeginOutcome::Stale("the part is no longer at the source"));
            }
            let record = MoveRecord {
                file_id: *file_id,
                part_index,
                from_node: *from_node,
                from_chunk: part.chunk_id,
                to_node: *to_node,
                to_chunk,
                len: part.stored_len(),
                crc32c: part.crc32c,
                recorded_unix_ms: now_ms,
                state: MoveState::Copying,
            };
            if let Some(why) = mismatch(&file, &record) {
                return Ok(BeginOutcome::Stale(why));
            }
            let key = chunk_key(to_node, &to_chunk);
            let mut refs = txn.open_table(CHUNK_REFS)?;
            if refs.get(&key)?.is_some() {
                return Err(MetaError::Conflict("the target chunk id is in use".into()));
            }
            refs.insert(&key, file_id.as_bytes())?;
            let value = encode(&record).map_err(MetaError::corrupt(MOVES_NAME))?;
            txn.open_table(MOVES)?.insert(&key, value.as_slice())?;
            Ok(BeginOutcome::Recorded(file))
        })
    }

    /// Step 3: the copy on `to_node` is verified; makes the file name it, in one transaction,
    /// if the file still has the part where the move found it. `mark_delivered` says whether
    /// the copy already holds its commit mark; if not, the mark is left pending for the
    /// cleanup to send. The source may be deleted from `release_after_unix_ms` on.
    pub fn swap_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        mark_delivered: bool,
        release_after_unix_ms: u64,
        now_ms: u64,
    ) -> Result<SwapOutcome, MetaError> {
        let key = chunk_key(to_node, to_chunk);
        self.write(|txn| {
            let mut record: MoveRecord = {
                let moves = txn.open_table(MOVES)?;
                let Some(v) = moves.get(&key)? else {
                    return Ok(SwapOutcome::Unknown);
                };
                decode(v.value()).map_err(MetaError::corrupt(MOVES_NAME))?
            };
            if record.state != MoveState::Copying {
                return Ok(SwapOutcome::Swapped);
            }
            let file = load_file(txn, &record.file_id)?;
            let why = match &file {
                None => Some("the file was deleted"),
                Some(f) => mismatch(f, &record),
            };
            if let Some(why) = why {
                drop_copy(txn, &record, now_ms)?;
                return Ok(SwapOutcome::Abandoned(why));
            }
            let Some(mut file) = file else {
                return Ok(SwapOutcome::Abandoned("the file was deleted"));
            };
            for p in file.parts.iter_mut() {
                if p.index == record.part_index {
                    p.node_id = record.to_node;
                    p.chunk_id = record.to_chunk;
                }
            }
            let value = encode(&file).map_err(MetaError::corrupt(FILES_NAME))?;
            txn.open_table(FILES)?
                .insert(file.id.as_bytes(), value.as_slice())?;
            // The source's commit mark matters no more (it goes); the copy's is sent by the
            // cleanup unless it already arrived.
            let mut marks = txn.open_table(PENDING_MARKS)?;
            marks.remove(&chunk_key(&record.from_node, &record.from_chunk))?;
            drop(marks);
            if !mark_delivered {
                super::marks::record_for_chunk(txn, &file, &record.to_node, &record.to_chunk)?;
            }
            record.state = MoveState::Swapped {
                release_after_unix_ms,
            };
            let value = encode(&record).map_err(MetaError::corrupt(MOVES_NAME))?;
            txn.open_table(MOVES)?.insert(&key, value.as_slice())?;
            Ok(SwapOutcome::Swapped)
        })
    }

    /// A move that failed before its swap (copy refused, checksum off): its copy is queued for
    /// deletion and the record dropped. Whether there was such a move.
    pub fn abandon_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        now_ms: u64,
    ) -> Result<bool, MetaError> {
        let key = chunk_key(to_node, to_chunk);
        self.write(|txn| {
            let record: MoveRecord = {
                let moves = txn.open_table(MOVES)?;
                let Some(v) = moves.get(&key)? else {
                    return Ok(false);
                };
                decode(v.value()).map_err(MetaError::corrupt(MOVES_NAME))?
            };
            if record.state != MoveState::Copying {
                return Ok(false);
            }
            drop_copy(txn, &record, now_ms)?;
            Ok(true)
        })
    }

    /// On start: every move still `copying` is rolled back (its copy queued for deletion; the
    /// file still names the source). Returns the moves rolled back.
    pub fn roll_back_unfinished_moves(&self, now_ms: u64) -> Result<Vec<MoveRecord>, MetaError> {
        self.write(|txn| {
            let unfinished: Vec<MoveRecord> = {
                let moves = txn.open_table(MOVES)?;
                let mut out = Vec::new();
                for row in moves.iter()? {
                    let (_, v) = row?;
                    let m: MoveRecord =
                        decode(v.value()).map_err(MetaError::corrupt(MOVES_NAME))?;
                    if m.state == MoveState::Copying {
                        out.push(m);
                    }
                }
                out
            };
            for m in &unfinished {
                drop_copy(txn, m, now_ms)?;
            }
            Ok(unfinished)
        })
    }

    /// Step 4: every swapped move whose grace period is over at `now_ms`: its source leaves
    /// the reference index and is queued for deletion, and the record is dropped. Returns the
    /// released sources (node, chunk).
    pub fn release_moved_sources(&self, now_ms: u64) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        self.write(|txn| {
            let due: Vec<([u8; 32], MoveRecord)> = {
                let moves = txn.open_table(MOVES)?;
                let mut out = Vec::new();
                for row in moves.iter()? {
                    let (k, v) = row?;
                    let m: MoveRecord =
                        decode(v.value()).map_err(MetaError::corrupt(MOVES_NAME))?;
                    if let MoveState::Swapped {
                        release_after_unix_ms,
                    } = m.state
                        && release_after_unix_ms <= now_ms
                    {
                        out.push((*k.value(), m));
                    }
                }
                out
            };
            let mut refs = txn.open_table(CHUNK_REFS)?;
            let mut queue = txn.open_table(DELETE_QUEUE)?;
            let mut moves = txn.open_table(MOVES)?;
            let mut released = Vec::with_capacity(due.len());
            for (key, m) in due {
                let source = chunk_key(&m.from_node, &m.from_chunk);
                // Only this move's hold: a file naming the source again (it cannot, chunk ids
                // are fresh) would keep it.
                let held_by_file = refs
                    .get(&source)?
                    .is_some_and(|v| *v.value() == *m.file_id.as_bytes());
                if held_by_file {
                    refs.remove(&source)?;
                }
                let entry = delete_entry(m.file_id, DeleteReason::Moved, now_ms)?;
                queue.insert(&source, entry.as_slice())?;
                moves.remove(&key)?;
                released.push((m.from_node, m.from_chunk));
            }
            Ok(released)
        })
    }

    /// Every recorded move, in target order.
    pub fn list_moves(&self) -> Result<Vec<MoveRecord>, MetaError> {
        self.read(|txn| {
            let moves = txn.open_table(MOVES)?;
            let mut out = Vec::new();
            for row in moves.iter()? {
                let (_, v) = row?;
                out.push(decode(v.value()).map_err(MetaError::corrupt(MOVES_NAME))?);
            }
            Ok(out)
        })
    }

    /// Number of recorded moves.
    pub fn move_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(MOVES)?.len()?))
    }
}

#[cfg(test)]
mod tests;
