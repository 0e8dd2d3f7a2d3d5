//! The PostgreSQL schema and its migrations. Version `n` of the schema is what the first `n`
//! entries of [`MIGRATIONS`] make; a release appends entries and never edits one that has
//! shipped. `schema_version` records each version applied, with when.

use uuid::Uuid;

use super::{PgError, PostgresMeta, Table, pg_write};
use crate::meta::MetaError;

/// Schema version this release writes and reads.
pub const SCHEMA_VERSION: u64 = 2;

/// Key of the cluster id in the `cluster` table (as in redb).
pub const CLUSTER_ID_KEY: &str = "id";

/// Advisory lock key held while migrating (an arbitrary constant: "sixfold" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_6978_666f_6c64;

/// The statements of each version, in order.
pub const MIGRATIONS: &[&str] = &[
    // Version 1: every redb table of schema version 1, as (key, value) bytes.
    "CREATE TABLE cluster (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE sessions (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE files (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE nodes (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE delete_queue (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE chunk_refs (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE quarantine (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE unaccounted_nodes (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE access_keys (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE pending_marks (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE s3_buckets (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE s3_objects (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE s3_uploads (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE s3_parts (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE s3_object_ids (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE damaged_files (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE moves (k bytea PRIMARY KEY, v bytea NOT NULL);",
    // Version 2: what several gateways tell each other (`crate::meta::coordination`).
    "CREATE TABLE gateway_liveness (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE job_leases (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE node_reports (k bytea PRIMARY KEY, v bytea NOT NULL);",
];

/// What to do with a database at version `found`: the versions to apply, or the refusal.
/// Pure.
pub fn plan_migrations(found: u64, supported: u64) -> Result<std::ops::Range<u64>, MetaError> {
    if found > supported {
        return Err(MetaError::SchemaVersion { found, supported });
    }
    Ok(found + 1..supported + 1)
}

/// Brings the database to [`SCHEMA_VERSION`] and reads (or makes) the cluster id, in one
/// transaction under an advisory lock; returns the version and the id.
pub(super) async fn migrate(meta: &PostgresMeta) -> Result<(u64, Uuid), MetaError> {
    debug_assert_eq!(MIGRATIONS.len() as u64, SCHEMA_VERSION);
    pg_write!(meta, MetaError, |tx| {
        tx.batch(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS schema_version (
                 version bigint PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 release text NOT NULL
             );"
        ))
        .await?;
        let found = tx.schema_version().await?;
        let todo = plan_migrations(found, SCHEMA_VERSION)?;
        for version in todo {
            let index = usize::try_from(version - 1).unwrap_or(usize::MAX);
            let Some(sql) = MIGRATIONS.get(index) else {
                return Err(MetaError::InvalidRecord(format!(
                    "no migration to schema version {version}"
                )));
            };
            tx.batch(sql).await?;
            tx.record_version(version).await?;
            tracing::info!(version, "metadata schema migrated (PostgreSQL)");
        }
        let id = match tx.get(Table::Cluster, CLUSTER_ID_KEY.as_bytes()).await? {
            Some(bytes) => Uuid::from_slice(&bytes).map_err(|_| {
                MetaError::InvalidRecord("the stored cluster id is not 16 bytes".into())
            })?,
            None => {
                let id = Uuid::new_v4();
                tx.put(Table::Cluster, CLUSTER_ID_KEY.as_bytes(), id.as_bytes())
                    .await?;
                tracing::info!(cluster_id = %id, "new cluster identity");
                id
            }
        };
        Ok((SCHEMA_VERSION, id))
    })
}

impl super::Tx<'_> {
    /// The highest version applied (0 for a new database).
    async fn schema_version(&self) -> Result<u64, PgError> {
        let rows = self
            .raw_query("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?;
        let v: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(u64::try_from(v).unwrap_or(0))
    }

    async fn record_version(&self, version: u64) -> Result<(), PgError> {
        let v = i64::try_from(version).unwrap_or(i64::MAX);
        let release = env!("CARGO_PKG_VERSION");
        self.raw_query(
            "INSERT INTO schema_version (version, release) VALUES ($1, $2) RETURNING version",
            &[&v, &release],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schemas_are_refused_older_ones_migrated() {
        assert_eq!(plan_migrations(0, 1).expect("new"), 1..2);
        assert_eq!(plan_migrations(1, 1).expect("current"), 2..2);
        assert_eq!(plan_migrations(1, 3).expect("older"), 2..4);
        assert!(matches!(
            plan_migrations(2, 1),
            Err(MetaError::SchemaVersion {
                found: 2,
                supported: 1
            })
        ));
    }
}
