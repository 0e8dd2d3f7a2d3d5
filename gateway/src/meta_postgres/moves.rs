//! The rebalancer's part moves (see `crate::meta::moves`): the same records in the same
//! `moves` table, decided by the same rules (`crate::meta::moves::rules`); each operation is
//! one SERIALIZABLE transaction, so the compare-and-swap of a part's location cannot interleave
//! with a delete or another swap of the file.

use uuid::Uuid;

use super::files::decode_file;
use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::moves::rules::{self, MoveRequest, MoveWrite};
use crate::meta::records::ChunkId;
use crate::meta::tables::{DELETE_QUEUE_NAME, FILES_NAME, MOVES_NAME, chunk_key};
use crate::meta::{BeginOutcome, FileRecord, MetaError, MoveRecord, SwapOutcome};

fn decode_move(bytes: &[u8]) -> Result<MoveRecord, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(MOVES_NAME))
}

/// Makes `writes` (decided by the rules) inside `tx`.
async fn apply(tx: &Tx<'_>, writes: &[MoveWrite]) -> Result<(), MetaError> {
    for w in writes {
        match w {
            MoveWrite::Reference { key, file_id } => {
                tx.put(Table::ChunkRefs, key, file_id.as_bytes()).await?;
            }
            MoveWrite::Unreference { key } => {
                tx.delete(Table::ChunkRefs, key).await?;
            }
            MoveWrite::QueueDelete { key, entry } => {
                let value = encode(entry).map_err(MetaError::corrupt(DELETE_QUEUE_NAME))?;
                tx.put(Table::DeleteQueue, key, &value).await?;
            }
            MoveWrite::PendMark { key, mark } => {
                tx.put(Table::PendingMarks, key, &crate::meta::marks::encode(mark))
                    .await?;
            }
            MoveWrite::ForgetMark { key } => {
                tx.delete(Table::PendingMarks, key).await?;
            }
            MoveWrite::PutFile(file) => {
                let value = encode(file).map_err(MetaError::corrupt(FILES_NAME))?;
                tx.put(Table::Files, file.id.as_bytes(), &value).await?;
            }
            MoveWrite::PutMove(m) => {
                let value = encode(m).map_err(MetaError::corrupt(MOVES_NAME))?;
                tx.put(Table::Moves, &m.key(), &value).await?;
            }
            MoveWrite::DropMove { key } => {
                tx.delete(Table::Moves, key).await?;
            }
        }
    }
    Ok(())
}

async fn load_file(tx: &Tx<'_>, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
    match tx.get(Table::Files, id.as_bytes()).await? {
        Some(v) => Ok(Some(decode_file(&v)?)),
        None => Ok(None),
    }
}

async fn load_move(tx: &Tx<'_>, key: &[u8; 32]) -> Result<Option<MoveRecord>, MetaError> {
    match tx.get(Table::Moves, key).await? {
        Some(v) => Ok(Some(decode_move(&v)?)),
        None => Ok(None),
    }
}

async fn all_moves(tx: &Tx<'_>) -> Result<Vec<MoveRecord>, MetaError> {
    tx.all(Table::Moves)
        .await?
        .iter()
        .map(|(_, v)| decode_move(v))
        .collect()
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::begin_move`].
    pub async fn begin_move(
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
        pg_write!(self, MetaError, |tx| {
            let file = load_file(&tx, &req.file_id).await?;
            let in_use = tx.contains(Table::ChunkRefs, &req.key()).await?;
            let (outcome, writes) = rules::begin(&req, file, in_use, now_ms)?;
            apply(&tx, &writes).await?;
            Ok(outcome)
        })
    }

    /// See [`crate::meta::Meta::swap_move`].
    pub async fn swap_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        mark_delivered: bool,
        release_after_unix_ms: u64,
        now_ms: u64,
    ) -> Result<SwapOutcome, MetaError> {
        let key = chunk_key(to_node, to_chunk);
        pg_write!(self, MetaError, |tx| {
            let record = load_move(&tx, &key).await?;
            let file = match rules::swap_reads_file(record.as_ref()) {
                Some(id) => load_file(&tx, &id).await?,
                None => None,
            };
            let (outcome, writes) =
                rules::swap(record, file, mark_delivered, release_after_unix_ms, now_ms)?;
            apply(&tx, &writes).await?;
            Ok(outcome)
        })
    }

    /// See [`crate::meta::Meta::abandon_move`].
    pub async fn abandon_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        now_ms: u64,
    ) -> Result<bool, MetaError> {
        let key = chunk_key(to_node, to_chunk);
        pg_write!(self, MetaError, |tx| {
            let record = load_move(&tx, &key).await?;
            let (abandoned, writes) = rules::abandon(record.as_ref(), now_ms);
            apply(&tx, &writes).await?;
            Ok(abandoned)
        })
    }

    /// See [`crate::meta::Meta::roll_back_unfinished_moves`].
    pub async fn roll_back_unfinished_moves(
        &self,
        now_ms: u64,
    ) -> Result<Vec<MoveRecord>, MetaError> {
        pg_write!(self, MetaError, |tx| {
            let (unfinished, writes) = rules::roll_back(all_moves(&tx).await?, now_ms);
            apply(&tx, &writes).await?;
            Ok(unfinished)
        })
    }

    /// See [`crate::meta::Meta::release_moved_sources`].
    pub async fn release_moved_sources(
        &self,
        now_ms: u64,
    ) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        pg_write!(self, MetaError, |tx| {
            let mut released = Vec::new();
            for m in all_moves(&tx).await? {
                if !m.is_due(now_ms) {
                    continue;
                }
                let holder = tx.get(Table::ChunkRefs, &m.source_key()).await?;
                let writes = rules::release(&m, holder.as_deref(), now_ms);
                apply(&tx, &writes).await?;
                released.push((m.from_node, m.from_chunk));
            }
            Ok(released)
        })
    }

    /// See [`crate::meta::Meta::list_moves`].
    pub async fn list_moves(&self) -> Result<Vec<MoveRecord>, MetaError> {
        pg_read!(self, MetaError, |tx| { all_moves(&tx).await })
    }

    /// See [`crate::meta::Meta::move_count`].
    pub async fn move_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| { Ok(tx.count(Table::Moves).await?) })
    }
}
