//! The raw records of every table, for `admin migrate-metadata` (copying a redb store into
//! PostgreSQL, whose tables hold the same bytes: see `crate::meta_postgres`).

use redb::ReadableDatabase;

use super::{Meta, MetaError, tables};

impl Meta {
    /// Names of the tables a copy of this store carries: every table of a snapshot but the
    /// redb schema version (the copy's own schema is versioned by its own store).
    pub fn exported_tables() -> Vec<&'static str> {
        tables::SNAPSHOT_TABLES
            .iter()
            .map(
                |t: &&'static dyn super::backup::SnapshotTable| -> &'static str {
                    let t: &'static dyn super::backup::SnapshotTable = *t;
                    t.table_name()
                },
            )
            .filter(|name| *name != "schema")
            .collect()
    }

    /// Hands every record of table `name` to `each` as raw (key, value) bytes in key order, from
    /// one read transaction; returns how many.
    pub fn export_table(
        &self,
        name: &str,
        each: &mut super::backup::RawVisitor<'_>,
    ) -> Result<u64, MetaError> {
        let table = tables::SNAPSHOT_TABLES
            .iter()
            .find(|t| t.table_name() == name)
            .ok_or_else(|| MetaError::InvalidRecord(format!("no metadata table {name}")))?;
        let txn = self.db.begin_read()?;
        table.for_each_raw(&txn, each)
    }
}
