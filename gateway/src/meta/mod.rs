//! The gateway's durable metadata (DESIGN §5, §6): upload sessions, files, nodes and the chunk
//! delete queue, in one redb database with a versioned schema.
//!
//! [`Meta`] is a cheap-to-clone handle with a blocking API; async callers use
//! `tokio::task::spawn_blocking`. Every write is one redb transaction committed with redb's
//! default `Durability::Immediate`, so a returned `Ok` is on disk.

mod codec;
mod deletes;
mod error;
mod files;
mod nodes;
mod quarantine;
mod records;
mod sessions;
mod tables;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use uuid::Uuid;

pub use codec::{CodecError, RECORD_FORMAT_V1};
pub use error::MetaError;
pub use quarantine::QuarantineMark;
pub use records::{
    AckMismatch, ChunkId, DeleteReason, FileRecord, NodeRecord, NodeState, PartRecord,
    PendingDelete, PlannedPart, UploadSession, new_chunk_id,
};
pub use tables::SCHEMA_VERSION;

/// Handle on the metadata database. Clones share one open database.
#[derive(Clone)]
pub struct Meta {
    db: Arc<Database>,
    cluster_id: Uuid,
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta").finish_non_exhaustive()
    }
}

impl Meta {
    /// Opens the database at `path`, creating it (and every table) if the file does not exist
    /// or is empty. Fails with [`MetaError::SchemaVersion`] if it was written with another schema
    /// version, and with [`MetaError::Storage`] if another process holds it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        let path = path.as_ref();
        let db = Database::create(path)?;
        let mut meta = Meta {
            db: Arc::new(db),
            cluster_id: Uuid::nil(),
        };
        meta.cluster_id = meta.write(|txn| {
            let mut schema = txn.open_table(tables::SCHEMA)?;
            let found = schema.get(tables::SCHEMA_VERSION_KEY)?.map(|v| v.value());
            match found {
                Some(tables::SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(MetaError::SchemaVersion {
                        found,
                        supported: tables::SCHEMA_VERSION,
                    });
                }
                None => {
                    schema.insert(tables::SCHEMA_VERSION_KEY, tables::SCHEMA_VERSION)?;
                }
            }
            // Created up front so that read transactions never meet a missing table.
            txn.open_table(tables::SESSIONS)?;
            txn.open_table(tables::FILES)?;
            txn.open_table(tables::NODES)?;
            txn.open_table(tables::DELETE_QUEUE)?;
            txn.open_table(tables::CHUNK_REFS)?;
            txn.open_table(tables::QUARANTINE)?;
            let mut cluster = txn.open_table(tables::CLUSTER)?;
            let stored = cluster
                .get(tables::CLUSTER_ID_KEY)?
                .map(|v| Uuid::from_slice(v.value()));
            match stored {
                Some(Ok(id)) => Ok(id),
                Some(Err(_)) => Err(MetaError::InvalidRecord(
                    "the stored cluster id is not 16 bytes".into(),
                )),
                None => {
                    let id = Uuid::new_v4();
                    cluster.insert(tables::CLUSTER_ID_KEY, id.as_bytes().as_slice())?;
                    tracing::info!(cluster_id = %id, "new cluster identity");
                    Ok(id)
                }
            }
        })?;
        tracing::info!(path = %path.display(), schema = tables::SCHEMA_VERSION, "metadata open");
        Ok(meta)
    }

    /// The identity of the cluster this metadata describes: a new metadata file is a new
    /// cluster, which nodes that joined another one can tell.
    pub fn cluster_id(&self) -> Uuid {
        self.cluster_id
    }

    /// Runs `body` in one write transaction: committed (durably) if it returns `Ok`, rolled back
    /// otherwise.
    fn write<T>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let txn = self.db.begin_write()?;
        match body(&txn) {
            Ok(value) => {
                txn.commit()?;
                Ok(value)
            }
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "metadata transaction abort failed");
                }
                Err(e)
            }
        }
    }

    /// Runs `body` on a consistent snapshot.
    fn read<T>(
        &self,
        body: impl FnOnce(&ReadTransaction) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let txn = self.db.begin_read()?;
        body(&txn)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
