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
//! The decisions are pure functions in [`rules`], which the PostgreSQL backend calls too; this
//! file reads and writes the redb tables around them.
//!
//! Value: the codec's version byte, then [`MoveRecord`] as JSON.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::records::{ChunkId, FileRecord, hex16};
use super::tables::{
    CHUNK_REFS, DELETE_QUEUE, DELETE_QUEUE_NAME, FILES, FILES_NAME, MOVES, MOVES_NAME,
    PENDING_MARKS, chunk_key,
};
use super::{Meta, MetaError};
use rules::{MoveRequest, MoveWrite};

pub(crate) mod rules;

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

/// Makes `writes` (decided by [`rules`]) inside `txn`.
fn apply(txn: &WriteTransaction, writes: &[MoveWrite]) -> Result<(), MetaError> {
    for w in writes {
        match w {
            MoveWrite::Reference { key, file_id } => {
                txn.open_table(CHUNK_REFS)?
                    .insert(key, file_id.as_bytes())?;
            }
            MoveWrite::Unreference { key } => {
                txn.open_table(CHUNK_REFS)?.remove(key)?;
            }
            MoveWrite::QueueDelete { key, entry } => {
                let value = encode(entry).map_err(MetaError::corrupt(DELETE_QUEUE_NAME))?;
                txn.open_table(DELETE_QUEUE)?
                    .insert(key, value.as_slice())?;
            }
            MoveWrite::PendMark { key, mark } => {
                txn.open_table(PENDING_MARKS)?
                    .insert(key, super::marks::encode(mark).as_slice())?;
            }
            MoveWrite::ForgetMark { key } => {
                txn.open_table(PENDING_MARKS)?.remove(key)?;
            }
            MoveWrite::PutFile(file) => {
                let value = encode(file).map_err(MetaError::corrupt(FILES_NAME))?;
                txn.open_table(FILES)?
                    .insert(file.id.as_bytes(), value.as_slice())?;
            }
            MoveWrite::PutMove(m) => {
                let value = encode(m).map_err(MetaError::corrupt(MOVES_NAME))?;
                txn.open_table(MOVES)?.insert(&m.key(), value.as_slice())?;
            }
            MoveWrite::DropMove { key } => {
                txn.open_table(MOVES)?.remove(key)?;
            }
        }
    }
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

fn load_move(txn: &WriteTransaction, key: &[u8; 32]) -> Result<Option<MoveRecord>, MetaError> {
    let moves = txn.open_table(MOVES)?;
    let Some(v) = moves.get(key)? else {
        return Ok(None);
    };
    decode(v.value())
        .map(Some)
        .map_err(MetaError::corrupt(MOVES_NAME))
}

/// Every recorded move, in target order.
fn all_moves<T: ReadableTable<&'static [u8; 32], &'static [u8]>>(
    moves: &T,
) -> Result<Vec<MoveRecord>, MetaError> {
    let mut out = Vec::new();
    for row in moves.iter()? {
        let (_, v) = row?;
        out.push(decode(v.value()).map_err(MetaError::corrupt(MOVES_NAME))?);
    }
    Ok(out)
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
        let req = MoveRequest {
            file_id: *file_id,
            part_index,
            from_node: *from_node,
            to_node: *to_node,
            to_chunk,
        };
        self.write(|txn| {
            let file = load_file(txn, file_id)?;
            let in_use = txn.open_table(CHUNK_REFS)?.get(&req.key())?.is_some();
            let (outcome, writes) = rules::begin(&req, file, in_use, now_ms)?;
            apply(txn, &writes)?;
            Ok(outcome)
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
            let record = load_move(txn, &key)?;
            let file = match rules::swap_reads_file(record.as_ref()) {
                Some(id) => load_file(txn, &id)?,
                None => None,
            };
            let (outcome, writes) =
                rules::swap(record, file, mark_delivered, release_after_unix_ms, now_ms)?;
            apply(txn, &writes)?;
            Ok(outcome)
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
            let record = load_move(txn, &key)?;
            let (abandoned, writes) = rules::abandon(record.as_ref(), now_ms);
            apply(txn, &writes)?;
            Ok(abandoned)
        })
    }

    /// On start: every move still `copying` is rolled back (its copy queued for deletion; the
    /// file still names the source). Returns the moves rolled back.
    pub fn roll_back_unfinished_moves(&self, now_ms: u64) -> Result<Vec<MoveRecord>, MetaError> {
        self.write(|txn| {
            let recorded = all_moves(&txn.open_table(MOVES)?)?;
            let (unfinished, writes) = rules::roll_back(recorded, now_ms);
            apply(txn, &writes)?;
            Ok(unfinished)
        })
    }

    /// Step 4: every swapped move whose grace period is over at `now_ms`: its source leaves
    /// the reference index and is queued for deletion, and the record is dropped. Returns the
    /// released sources (node, chunk).
    pub fn release_moved_sources(&self, now_ms: u64) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        self.write(|txn| {
            let due: Vec<MoveRecord> = all_moves(&txn.open_table(MOVES)?)?
                .into_iter()
                .filter(|m| m.is_due(now_ms))
                .collect();
            let mut released = Vec::with_capacity(due.len());
            for m in due {
                let holder = txn
                    .open_table(CHUNK_REFS)?
                    .get(&m.source_key())?
                    .map(|v| *v.value());
                let writes = rules::release(&m, holder.as_ref().map(|h| h.as_slice()), now_ms);
                apply(txn, &writes)?;
                released.push((m.from_node, m.from_chunk));
            }
            Ok(released)
        })
    }

    /// Every recorded move, in target order.
    pub fn list_moves(&self) -> Result<Vec<MoveRecord>, MetaError> {
        self.read(|txn| all_moves(&txn.open_table(MOVES)?))
    }

    /// Number of recorded moves.
    pub fn move_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(MOVES)?.len()?))
    }
}

#[cfg(test)]
mod tests;
