//! Consistent snapshots of the metadata while the gateway serves (issue #13, "Online backup").
//!
//! redb has no online backup, and a raw copy of `meta.redb` taken while it is written is not
//! consistent. A snapshot is one redb read transaction (a fixed view of every table, which never
//! blocks writers) copied table by table into a fresh database file. The tables are copied from
//! one list, [`super::tables::SNAPSHOT_TABLES`]; a test compares it with the tables a populated
//! database really has, so a table added later without being listed fails the build's tests.
//!
//! The copy adds one table of its own, `snapshot`, saying what the file is (when it was taken,
//! of which cluster, by which release). A gateway that opens a file carrying it knows it runs
//! on restored metadata (see `restored.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableError, TableHandle, Value,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::{Meta, MetaError, tables};

/// `"info" -> encoded [`SnapshotInfo`]`: present only in snapshot files (and in a restored one
/// until its first open).
pub(super) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
pub(super) const SNAPSHOT_NAME: &str = "snapshot";
pub(super) const SNAPSHOT_INFO_KEY: &str = "info";

/// Records copied per write transaction of the new file: its dirty pages are what a write
/// transaction holds in memory, so this bounds the copy's memory whatever the table sizes.
const COPY_BATCH: usize = 4096;

/// What a snapshot file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// When the read transaction the snapshot copies began.
    pub taken_unix_ms: u64,
    pub cluster_id: Uuid,
    /// `sixfold-gateway` version that took it.
    pub release: String,
    pub schema_version: u64,
}

/// What one snapshot copied.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub info: SnapshotInfo,
    /// Records per table, in the order copied.
    pub tables: Vec<(&'static str, u64)>,
    pub elapsed: Duration,
}

impl SnapshotReport {
    /// Records copied in all tables.
    pub fn records(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// A table's records as (key, value) bytes.
#[cfg(test)]
pub(super) type RawRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// What receives a table's raw records, one (key, value) at a time.
pub(crate) type RawVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), MetaError> + 'a;

/// A table a snapshot copies, whatever its key and value types, so that every table fits in one
/// list.
pub(crate) trait SnapshotTable {
    fn table_name(&self) -> &str;
    /// Copies every record of this table in `from` into `to` (batches of [`COPY_BATCH`]
    /// records, each its own write transaction); returns how many. A table `from` lacks is
    /// left out (0).
    fn copy(&self, from: &ReadTransaction, to: &Database) -> Result<u64, MetaError>;
    /// Hands every record of this table in `txn` to `each` as raw (key, value) bytes, in key
    /// order; returns how many. A table `txn` lacks has none. (`admin migrate-metadata`.)
    fn for_each_raw(
        &self,
        txn: &ReadTransaction,
        each: &mut RawVisitor<'_>,
    ) -> Result<u64, MetaError>;
    /// The table's records as raw bytes, in key order (tests compare snapshots with this).
    #[cfg(test)]
    fn raw_records(&self, txn: &ReadTransaction) -> Result<RawRecords, MetaError>;
}

impl<K: Key + 'static, V: Value + 'static> SnapshotTable for TableDefinition<'static, K, V> {
    fn table_name(&self) -> &str {
        self.name()
    }

    fn copy(&self, from: &ReadTransaction, to: &Database) -> Result<u64, MetaError> {
        let source = match from.open_table(*self) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut rows = source.iter()?;
        let mut copied = 0u64;
        loop {
            let mut txn = to.begin_write()?;
            // Only the last commit of the whole file needs to reach the disk (it is synced
            // then): a crash before it leaves a temp file that is never renamed into place.
            txn.set_durability(Durability::None)
                .map_err(|e| MetaError::from(redb::Error::from(e)))?;
            let mut in_batch = 0usize;
            let mut done = false;
            {
                let mut target = txn.open_table(*self)?;
                while in_batch < COPY_BATCH {
                    let Some(row) = rows.next() else {
                        done = true;
                        break;
                    };
                    let (key, value) = row?;
                    target.insert(key.value(), value.value())?;
                    in_batch += 1;
                }
            }
            txn.commit()?;
            copied += in_batch as u64;
            if done {
                return Ok(copied);
            }
        }
    }

    fn for_each_raw(
        &self,
        txn: &ReadTransaction,
        each: &mut RawVisitor<'_>,
    ) -> Result<u64, MetaError> {
        let table = match txn.open_table(*self) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut n = 0u64;
        for row in table.iter()? {
            let (key, value) = row?;
            each(
                K::as_bytes(&key.value()).as_ref(),
                V::as_bytes(&value.value()).as_ref(),
            )?;
            n += 1;
        }
        Ok(n)
    }

    #[cfg(test)]
    fn raw_records(&self, txn: &ReadTransaction) -> Result<RawRecords, MetaError> {
        let table = match txn.open_table(*self) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            out.push((
                K::as_bytes(&key.value()).as_ref().to_vec(),
                V::as_bytes(&value.value()).as_ref().to_vec(),
            ));
        }
        Ok(out)
    }
}

impl Meta {
    /// Writes a consistent snapshot of every table to `dest`, a new file (mode 0600: it holds
    /// the access keys' secrets) that must not exist yet. The file is synced when this returns
    /// `Ok`; on an error it may be left half written, for the caller to remove. Writers are not
    /// blocked meanwhile.
    pub fn snapshot_to(&self, dest: &Path) -> Result<SnapshotReport, MetaError> {
        let started = Instant::now();
        create_new_private(dest)?;
        let out = Database::create(dest)?;
        let source = self.db.begin_read()?;
        let info = SnapshotInfo {
            taken_unix_ms: self.clock.unix_ms(),
            cluster_id: self.cluster_id(),
            release: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: tables::SCHEMA_VERSION,
        };
        let mut counts = Vec::with_capacity(tables::SNAPSHOT_TABLES.len());
        for table in tables::SNAPSHOT_TABLES {
            let n = table.copy(&source, &out)?;
            counts.push((table_static_name(*table), n));
        }
        drop(source);
        let value = encode(&info).map_err(MetaError::corrupt(SNAPSHOT_NAME))?;
        // The marker goes last and durably (Durability::Immediate, redb's default): its commit
        // syncs the whole file, the copied batches included.
        let txn = out.begin_write()?;
        txn.open_table(SNAPSHOT)?
            .insert(SNAPSHOT_INFO_KEY, value.as_slice())?;
        txn.commit()?;
        drop(out);
        Ok(SnapshotReport {
            info,
            tables: counts,
            elapsed: started.elapsed(),
        })
    }
}

/// What the snapshot file at `path` says it is; `None` for a metadata file that is not a
/// snapshot (or one already opened by a gateway). Opens the file read-only.
pub fn read_snapshot_info(path: &Path) -> Result<Option<SnapshotInfo>, MetaError> {
    let db = redb::ReadOnlyDatabase::open(path)?;
    let txn = db.begin_read()?;
    snapshot_info_in(&txn)
}

/// The marker of a snapshot, read in `txn`.
pub(super) fn snapshot_info_in(txn: &ReadTransaction) -> Result<Option<SnapshotInfo>, MetaError> {
    let table = match txn.open_table(SNAPSHOT) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match table.get(SNAPSHOT_INFO_KEY)? {
        Some(value) => decode(value.value())
            .map(Some)
            .map_err(MetaError::corrupt(SNAPSHOT_NAME)),
        None => Err(MetaError::InvalidRecord(
            "the snapshot table has no info record".into(),
        )),
    }
}

/// The table's name as a `'static` string (the list holds `'static` definitions only; the
/// names are literals).
fn table_static_name(table: &'static dyn SnapshotTable) -> &'static str {
    table.table_name()
}

/// Creates `path` empty with mode 0600, failing if it exists: a snapshot never overwrites.
fn create_new_private(path: &Path) -> Result<(), MetaError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::auth::secret_file::SECRET_FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(MetaError::File)
}

#[cfg(test)]
mod tests;
