//! Files brought back by a rebuild from the nodes ([`crate::recovery`]).

use redb::ReadableTable;
use uuid::Uuid;

use super::codec::encode;
use super::records::FileRecord;
use super::tables::{CHUNK_REFS, DELETE_QUEUE, FILES, FILES_NAME, QUARANTINE, SESSIONS, chunk_key};
use super::{Meta, MetaError};

/// What [`Meta::restore_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The file is back, visible and served.
    Added,
    /// The metadata already has a file or an upload session of this id: left as it is.
    AlreadyKnown,
    /// A chunk of it belongs to another file or session, or is queued for deletion: not
    /// restored (nothing changed).
    ChunkTaken,
}

impl Meta {
    /// Adds a file found on the nodes, in one transaction: its record, its chunk references,
    /// the end of any quarantine of its chunks, and commit marks for its nodes (so that a later
    /// rebuild knows it as committed, whatever its chunks' headers say).
    pub fn restore_file(&self, file: &FileRecord) -> Result<Restored, MetaError> {
        let key = file.id.as_bytes();
        let value = encode(file).map_err(MetaError::corrupt(FILES_NAME))?;
        self.write(|txn| {
            let mut files = txn.open_table(FILES)?;
            if files.get(key)?.is_some() || txn.open_table(SESSIONS)?.get(key)?.is_some() {
                return Ok(Restored::AlreadyKnown);
            }
            let mut refs = txn.open_table(CHUNK_REFS)?;
            let queue = txn.open_table(DELETE_QUEUE)?;
            for p in &file.parts {
                let k = chunk_key(&p.node_id, &p.chunk_id);
                if refs.get(&k)?.is_some() || queue.get(&k)?.is_some() {
                    return Ok(Restored::ChunkTaken);
                }
            }
            let mut quarantine = txn.open_table(QUARANTINE)?;
            for p in &file.parts {
                let k = chunk_key(&p.node_id, &p.chunk_id);
                refs.insert(&k, key)?;
                quarantine.remove(&k)?;
            }
            files.insert(key, value.as_slice())?;
            super::marks::record_for_commit(txn, file)?;
            Ok(Restored::Added)
        })
    }

    /// Whether the metadata knows `id` as a file or a live upload session.
    pub fn knows_file_id(&self, id: &Uuid) -> Result<bool, MetaError> {
        let key = id.as_bytes();
        self.read(|txn| {
            Ok(txn.open_table(FILES)?.get(key)?.is_some()
                || txn.open_table(SESSIONS)?.get(key)?.is_some())
        })
    }
}
