//! `sixfold-gateway admin migrate-metadata`: copies a redb metadata store into a PostgreSQL
//! database while the gateway is stopped, then checks that both hold the same records.
//!
//! The PostgreSQL tables hold the redb records' bytes (see the module doc of
//! [`crate::meta_postgres`]), so the copy is byte for byte and the check is exact: per table,
//! the number of records and an xxh3-128 over every (key, value) in key order, computed on both
//! sides. The copy streams: the redb side reads on a blocking thread and hands batches over a
//! bounded channel, so memory does not grow with the store.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use xxhash_rust::xxh3::Xxh3;

use super::{PgError, PostgresMeta, PostgresSettings, Table};
use crate::meta::{Meta, MetaError};

/// Records per insert statement (and per channel message).
const BATCH: usize = 1000;
/// Batches in flight between the redb reader and the PostgreSQL writer.
const IN_FLIGHT: usize = 4;

/// What went wrong in a migration.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("no redb metadata at {}: give the data dir of the gateway (it holds meta.redb)", .0.display())]
    NoSource(PathBuf),
    #[error(
        "{} is in use by another process: stop the gateway before migrating its metadata",
        .0.display()
    )]
    SourceInUse(PathBuf),
    #[error("redb metadata {}: {source}", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: MetaError,
    },
    #[error("PostgreSQL: {0}")]
    Target(#[source] MetaError),
    #[error(
        "the PostgreSQL database already holds metadata ({table} has {rows} records): migrate \
         into an empty database"
    )]
    TargetNotEmpty { table: &'static str, rows: u64 },
    #[error("table {0} of the redb store has no PostgreSQL counterpart in this release")]
    UnknownTable(String),
    #[error("the copy differs from the source in table {table}: {detail}")]
    Mismatch { table: &'static str, detail: String },
    #[error("the redb reader stopped: {0}")]
    Task(String),
}

/// One table's counts and checksums, on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: &'static str,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_checksum: u128,
    pub target_checksum: u128,
}

impl TableCheck {
    pub fn agrees(&self) -> bool {
        self.source_rows == self.target_rows && self.source_checksum == self.target_checksum
    }
}

/// Running checksum of a table: xxh3-128 over `len(k) ‖ k ‖ len(v) ‖ v` (lengths u64 LE) for
/// every record in key order. Pure.
#[derive(Default)]
pub struct TableDigest {
    hasher: Xxh3,
    rows: u64,
}

impl TableDigest {
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.hasher.update(&(key.len() as u64).to_le_bytes());
        self.hasher.update(key);
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self.rows += 1;
    }

    pub fn finish(&self) -> (u64, u128) {
        (self.rows, self.hasher.digest128())
    }
}

/// Copies the redb store of gateway data dir `from` into the PostgreSQL database `to` and
/// checks the copy; returns the per-table checks (all agreeing, or an error).
pub async fn migrate_redb_to_postgres(
    from: &Path,
    to: &str,
    settings: &PostgresSettings,
) -> Result<Vec<TableCheck>, MigrateError> {
    let path = from.join("meta.redb");
    if !path.is_file() {
        return Err(MigrateError::NoSource(from.to_path_buf()));
    }
    let source = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Meta::open(&path))
            .await
            .map_err(|e| MigrateError::Task(e.to_string()))?
    }
    .map_err(|source| source_error(&path, source))?;
    let target = PostgresMeta::open(to, settings)
        .await
        .map_err(MigrateError::Target)?;
    let names = Meta::exported_tables();
    let mut tables = Vec::with_capacity(names.len());
    for name in &names {
        tables
            .push(Table::named(name).ok_or_else(|| MigrateError::UnknownTable(name.to_string()))?);
    }
    // The target's open made its own cluster id; everything else must be empty.
    for table in &tables {
        if *table == Table::Cluster {
            continue;
        }
        let rows = target_count(&target, *table).await?;
        if rows > 0 {
            return Err(MigrateError::TargetNotEmpty {
                table: table.name(),
                rows,
            });
        }
    }
    let mut checks = Vec::with_capacity(tables.len());
    for table in tables {
        let source_digest = copy_table(&source, &path, &target, table).await?;
        let (target_rows, target_checksum) = target_digest(&target, table).await?;
        let (source_rows, source_checksum) = source_digest;
        let check = TableCheck {
            table: table.name(),
            source_rows,
            target_rows,
            source_checksum,
            target_checksum,
        };
        if !check.agrees() {
            return Err(MigrateError::Mismatch {
                table: table.name(),
                detail: format!(
                    "redb {source_rows} records, xxh3 {source_checksum:032x}; PostgreSQL \
                     {target_rows} records, xxh3 {target_checksum:032x}"
                ),
            });
        }
        checks.push(check);
    }
    Ok(checks)
}

fn source_error(path: &Path, source: MetaError) -> MigrateError {
    if let MetaError::Storage(e) = &source
        && matches!(
            e.downcast_ref::<redb::Error>(),
            Some(redb::Error::DatabaseAlreadyOpen)
        )
    {
        return MigrateError::SourceInUse(path.to_path_buf());
    }
    MigrateError::Source {
        path: path.to_path_buf(),
        source,
    }
}

async fn target_count(target: &PostgresMeta, table: Table) -> Result<u64, MigrateError> {
    super::pg_read!(target, MetaError, |tx| { Ok(tx.count(table).await?) })
        .map_err(MigrateError::Target)
}

/// Streams `table` from redb into PostgreSQL; returns the source's count and checksum.
async fn copy_table(
    source: &Meta,
    path: &Path,
    target: &PostgresMeta,
    table: Table,
) -> Result<(u64, u128), MigrateError> {
    type Batch = Vec<(Vec<u8>, Vec<u8>)>;
    let (tx, mut rx) = mpsc::channel::<Batch>(IN_FLIGHT);
    let reader = {
        let source = source.clone();
        let name = table.name();
        tokio::task::spawn_blocking(move || -> Result<(u64, u128), MetaError> {
            let mut digest = TableDigest::default();
            let mut batch: Batch = Vec::with_capacity(BATCH);
            source.export_table(name, &mut |k, v| {
                digest.add(k, v);
                batch.push((k.to_vec(), v.to_vec()));
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    tx.blocking_send(full).map_err(|_| {
                        MetaError::InvalidRecord("the PostgreSQL writer stopped".into())
                    })?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.blocking_send(batch).map_err(|_| {
                    MetaError::InvalidRecord("the PostgreSQL writer stopped".into())
                })?;
            }
            Ok(digest.finish())
        })
    };
    let mut written = Ok(());
    while let Some(batch) = rx.recv().await {
        if written.is_ok() {
            written = insert_batch(target, table, &batch).await;
        }
        if written.is_err() {
            // Stop the reader: it fails on its next send.
            rx.close();
        }
    }
    let read = reader
        .await
        .map_err(|e| MigrateError::Task(e.to_string()))?;
    written?;
    read.map_err(|source| source_error(path, source))
}

async fn insert_batch(
    target: &PostgresMeta,
    table: Table,
    batch: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), MigrateError> {
    let keys: Vec<&[u8]> = batch.iter().map(|(k, _)| k.as_slice()).collect();
    let values: Vec<&[u8]> = batch.iter().map(|(_, v)| v.as_slice()).collect();
    let sql = format!(
        "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
         ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
        table.name()
    );
    super::pg_write!(target, MetaError, |tx| {
        tx.raw_query(&sql, &[&keys, &values]).await?;
        Ok(())
    })
    .map_err(MigrateError::Target)
}

/// Count and checksum of `table` in PostgreSQL, read a page at a time in key order.
async fn target_digest(target: &PostgresMeta, table: Table) -> Result<(u64, u128), MigrateError> {
    let mut digest = TableDigest::default();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let lo = cursor.clone();
        let rows = super::pg_read!(target, MetaError, |tx| {
            let lo = lo.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            Ok(tx.range(table, lo, Bound::Unbounded, Some(BATCH)).await?)
        })
        .map_err(MigrateError::Target)?;
        for (k, v) in &rows {
            digest.add(k, v);
        }
        if rows.len() < BATCH {
            return Ok(digest.finish());
        }
        cursor = rows.last().map(|(k, _)| k.clone());
    }
}

impl From<PgError> for MigrateError {
    fn from(e: PgError) -> Self {
        MigrateError::Target(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_records_apart_and_follow_order() {
        let digest = |rows: &[(&[u8], &[u8])]| {
            let mut d = TableDigest::default();
            for (k, v) in rows {
                d.add(k, v);
            }
            d.finish()
        };
        let a = digest(&[(b"k1", b"v1"), (b"k2", b"v2")]);
        assert_eq!(a.0, 2);
        assert_eq!(a, digest(&[(b"k1", b"v1"), (b"k2", b"v2")]));
        assert_ne!(a, digest(&[(b"k2", b"v2"), (b"k1", b"v1")]));
        // Lengths are hashed: moving a byte from key to value changes the digest.
        assert_ne!(digest(&[(b"k1v", b"1")]), digest(&[(b"k1", b"v1")]));
        assert_eq!(digest(&[]).0, 0);
    }
}
