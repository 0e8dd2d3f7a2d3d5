//! The gateway's durable metadata (DESIGN §5, §6): upload sessions, files, nodes and the chunk
//! delete queue, in one redb database with a versioned schema.
//!
//! [`Meta`] is a cheap-to-clone handle with a blocking API; async callers use
//! `tokio::task::spawn_blocking`. Every write is one redb transaction committed with redb's
//! default `Durability::Immediate`, so a returned `Ok` is on disk.

pub(crate) mod backup;
pub(crate) mod buckets;
pub(crate) mod codec;
#[cfg(test)]
pub mod conformance;
pub mod coordination;
mod damaged;
mod deletes;
mod error;
mod export;
mod files;
mod keys;
pub(crate) mod marks;
pub(crate) mod moves;
mod multipart;
mod nodes;
mod quarantine;
pub(crate) mod records;
mod restore;
mod restored;
mod s3_objects;
pub mod s3_records;
pub(crate) mod sessions;
mod store;
pub(crate) mod tables;
mod unaccounted;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::clock::SharedClock;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use uuid::Uuid;

pub use backup::{SnapshotInfo, SnapshotReport, read_snapshot_info};
pub use codec::{CodecError, RECORD_FORMAT_V1};
pub(crate) use damaged::mark_report;
pub use damaged::{ChunkDamage, DamageKind, DamageOutcome, DamagedFile, DamagedPart, FoundBy};
pub use error::MetaError;
pub use files::HIDDEN_NAME_PREFIX;
pub use marks::{CommitMark, PendingMark};
pub use moves::{BeginOutcome, MoveRecord, MoveState, SwapOutcome};
pub use multipart::{Completion, check_completion, completion};
pub use quarantine::QuarantineMark;
pub use records::{
    AckMismatch, ChunkId, DeleteReason, FileRecord, NodeRecord, NodeState, OperatorState,
    PartRecord, PendingDelete, PlannedPart, UploadSession, effective_state, new_chunk_id,
};
pub use restore::Restored;
pub use restored::{RestoredSnapshot, restored_reason};
pub use s3_records::{
    BucketRecord, CompletedPartRef, ListEntry, ListPage, ListQuery, MultipartRecord, ObjectById,
    ObjectRecord, ObjectStoreError, Segment, UploadedPart,
};
pub use store::{MetaStore, MultipartEtag, SharedMeta, TaskLost};
pub use tables::SCHEMA_VERSION;
pub use unaccounted::UnaccountedNode;

/// Handle on the metadata database. Clones share one open database.
#[derive(Clone)]
pub struct Meta {
    db: Arc<Database>,
    /// Shared by every clone: a rebuild may adopt the id the nodes keep.
    cluster_id: Arc<std::sync::RwLock<Uuid>>,
    /// What stamps the records (commit times, queue entries).
    clock: SharedClock,
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
    ///
    /// The file holds the access keys' secrets: it is created mode 0600, and a wider mode found
    /// on open is narrowed to 0600 with a warning.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        Self::open_with_clock(path, crate::clock::system())
    }

    /// [`Meta::open`], stamping records with `clock`'s time.
    pub fn open_with_clock(path: impl AsRef<Path>, clock: SharedClock) -> Result<Self, MetaError> {
        let path = path.as_ref();
        create_private(path)?;
        let db = Database::create(path)?;
        match crate::auth::secret_file::restrict_mode(path) {
            Ok(None) => {}
            Ok(Some(mode)) => tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the metadata file holds access key secrets but was readable by others; its mode is now 600"
            ),
            // Not fatal: a file the gateway can open but not chmod (another owner) still works;
            // the operator is told loudly.
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot check or narrow the mode of the metadata file, which holds access key secrets"
            ),
        }
        let meta = Self::init(db, clock)?;
        tracing::info!(path = %path.display(), schema = tables::SCHEMA_VERSION, "metadata open");
        Ok(meta)
    }

    /// A metadata store that lives in memory only: for simulations and tests, which want the
    /// real transactions and checks without a file.
    pub fn open_in_memory() -> Result<Self, MetaError> {
        Self::open_in_memory_with_clock(crate::clock::system())
    }

    /// [`Meta::open_in_memory`], stamping records with `clock`'s time (a simulation's).
    pub fn open_in_memory_with_clock(clock: SharedClock) -> Result<Self, MetaError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(redb::Error::from)?;
        Self::init(db, clock)
    }

    /// Creates the tables of a new database (or checks the schema of an old one) and loads
    /// the cluster identity.
    fn init(db: Database, clock: SharedClock) -> Result<Self, MetaError> {
        let meta = Meta {
            db: Arc::new(db),
            cluster_id: Arc::new(std::sync::RwLock::new(Uuid::nil())),
            clock,
        };
        let id = meta.write(|txn| {
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
            txn.open_table(tables::ACCESS_KEYS)?;
            txn.open_table(tables::QUARANTINE)?;
            txn.open_table(tables::UNACCOUNTED)?;
            txn.open_table(tables::PENDING_MARKS)?;
            txn.open_table(tables::DAMAGED)?;
            txn.open_table(tables::MOVES)?;
            buckets::create_s3_tables(txn)?;
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
        *meta
            .cluster_id
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
        // A file restored from a backup: mark its nodes before anything can clean them.
        meta.adopt_restored_snapshot()?;
        Ok(meta)
    }

    /// The identity of the cluster this metadata describes: a new metadata file is a new
    /// cluster, which nodes that joined another one can tell.
    pub fn cluster_id(&self) -> Uuid {
        *self
            .cluster_id
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `id` as the cluster's identity: a rebuild from nodes that all keep `id` makes this
    /// metadata theirs again.
    pub fn adopt_cluster_id(&self, id: Uuid) -> Result<(), MetaError> {
        self.write(|txn| {
            txn.open_table(tables::CLUSTER)?
                .insert(tables::CLUSTER_ID_KEY, id.as_bytes().as_slice())?;
            Ok(())
        })?;
        *self
            .cluster_id
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
        tracing::warn!(cluster_id = %id, "cluster identity adopted from the nodes");
        Ok(())
    }

    /// Runs `body` in one write transaction: committed (durably) if it returns `Ok`, rolled back
    /// otherwise.
    fn write<T>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        self.write_as(body)
    }

    /// [`Meta::write`] for operations whose errors wrap [`MetaError`] (S3's): their refusals
    /// roll the transaction back too.
    fn write_as<T, E: From<MetaError>>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().map_err(MetaError::from)?;
        match body(&txn) {
            Ok(value) => {
                txn.commit().map_err(MetaError::from)?;
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
        self.read_as(body)
    }

    /// [`Meta::read`] for operations whose errors wrap [`MetaError`].
    fn read_as<T, E: From<MetaError>>(
        &self,
        body: impl FnOnce(&ReadTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_read().map_err(MetaError::from)?;
        body(&txn)
    }
}

/// Creates an empty database file with mode 0600 if there is none, so that the secrets it will
/// hold are never readable by others, not even before the first open finishes. redb fills an
/// empty file as a new database.
fn create_private(path: &Path) -> Result<(), MetaError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::auth::secret_file::SECRET_FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(MetaError::File(e)),
    }
}

/// Milliseconds since the Unix epoch now, by the system clock: for edges that stamp what a
/// client sees (key creation, S3 times); the flows take their [`crate::clock::Clock`].
pub fn unix_ms_now() -> u64 {
    crate::clock::unix_ms(std::time::SystemTime::now())
}
