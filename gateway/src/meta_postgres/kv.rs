//! The tables as ordered byte maps inside one transaction: the operations the redb code uses
//! (get, insert, remove, ranges, counts), each one statement, prepared once per connection.

use std::ops::Bound;

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::PgError;

/// The tables, named as in redb (`crate::meta::tables`, `crate::meta::buckets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Cluster,
    Sessions,
    Files,
    Nodes,
    DeleteQueue,
    ChunkRefs,
    Quarantine,
    Unaccounted,
    AccessKeys,
    PendingMarks,
    Buckets,
    Objects,
    Uploads,
    Parts,
    ObjectIds,
    Damaged,
    Moves,
    // The shared side (schema version 2): several gateways' coordination, not metadata a
    // redb store has, so not in [`Table::ALL`] (which `admin migrate-metadata` copies).
    GatewayLiveness,
    JobLeases,
    NodeReports,
}

impl Table {
    /// Every table, in the order `admin migrate-metadata` copies them.
    pub(crate) const ALL: [Table; 17] = [
        Table::Cluster,
        Table::Sessions,
        Table::Files,
        Table::Nodes,
        Table::DeleteQueue,
        Table::ChunkRefs,
        Table::Quarantine,
        Table::Unaccounted,
        Table::AccessKeys,
        Table::PendingMarks,
        Table::Buckets,
        Table::Objects,
        Table::Uploads,
        Table::Parts,
        Table::ObjectIds,
        Table::Damaged,
        Table::Moves,
    ];

    /// The table's name, in PostgreSQL and in redb alike.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Cluster => "cluster",
            Table::Sessions => "sessions",
            Table::Files => "files",
            Table::Nodes => "nodes",
            Table::DeleteQueue => "delete_queue",
            Table::ChunkRefs => "chunk_refs",
            Table::Quarantine => "quarantine",
            Table::Unaccounted => "unaccounted_nodes",
            Table::AccessKeys => "access_keys",
            Table::PendingMarks => "pending_marks",
            Table::Buckets => "s3_buckets",
            Table::Objects => "s3_objects",
            Table::Uploads => "s3_uploads",
            Table::Parts => "s3_parts",
            Table::ObjectIds => "s3_object_ids",
            Table::Damaged => "damaged_files",
            Table::Moves => "moves",
            Table::GatewayLiveness => "gateway_liveness",
            Table::JobLeases => "job_leases",
            Table::NodeReports => "node_reports",
        }
    }

    /// The table called `name`, if it is one of these.
    pub(crate) fn named(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One transaction's view of the tables.
pub(crate) struct Tx<'a> {
    txn: &'a Transaction<'a>,
}

/// Rows of a range: (key, value).
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

impl<'a> Tx<'a> {
    pub(crate) fn new(txn: &'a Transaction<'a>) -> Self {
        Tx { txn }
    }

    /// One statement of the caller's own (schema bookkeeping), prepared once per connection.
    pub(crate) async fn raw_query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        self.query(sql, params).await
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let statement = self.txn.prepare_cached(sql).await?;
        Ok(self.txn.query(&statement, params).await?)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
        let statement = self.txn.prepare_cached(sql).await?;
        Ok(self.txn.execute(&statement, params).await?)
    }

    /// Runs statements given as text, uncached (the schema's migrations).
    pub(crate) async fn batch(&self, sql: &str) -> Result<(), PgError> {
        Ok(self.txn.batch_execute(sql).await?)
    }

    /// The value under `key`.
    pub(crate) async fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, PgError> {
        let sql = format!("SELECT v FROM {} WHERE k = $1", t.name());
        let rows = self.query(&sql, &[&key]).await?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    /// Whether there is a value under `key`.
    pub(crate) async fn contains(&self, t: Table, key: &[u8]) -> Result<bool, PgError> {
        let sql = format!("SELECT 1 FROM {} WHERE k = $1", t.name());
        Ok(!self.query(&sql, &[&key]).await?.is_empty())
    }

    /// Stores `value` under `key`, replacing any value there.
    pub(crate) async fn put(&self, t: Table, key: &[u8], value: &[u8]) -> Result<(), PgError> {
        let sql = format!(
            "INSERT INTO {} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            t.name()
        );
        self.execute(&sql, &[&key, &value]).await?;
        Ok(())
    }

    /// [`Tx::put`] that gives back the value replaced, as redb's `insert` does.
    pub(crate) async fn insert(
        &self,
        t: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, PgError> {
        // Every part of one statement sees the same snapshot: `old` is the value before.
        let sql = format!(
            "WITH old AS (SELECT v FROM {t} WHERE k = $1), \
             new AS (INSERT INTO {t} (k, v) VALUES ($1, $2) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v) \
             SELECT v FROM old",
            t = t.name()
        );
        let rows = self.query(&sql, &[&key, &value]).await?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    /// Stores `value` under `key` unless there is one; whether it was stored.
    pub(crate) async fn insert_new(
        &self,
        t: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, PgError> {
        let sql = format!(
            "INSERT INTO {} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING",
            t.name()
        );
        Ok(self.execute(&sql, &[&key, &value]).await? == 1)
    }

    /// Removes `key`, giving back its value.
    pub(crate) async fn remove(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, PgError> {
        let sql = format!("DELETE FROM {} WHERE k = $1 RETURNING v", t.name());
        let rows = self.query(&sql, &[&key]).await?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    /// Removes `key`; whether it was there.
    pub(crate) async fn delete(&self, t: Table, key: &[u8]) -> Result<bool, PgError> {
        let sql = format!("DELETE FROM {} WHERE k = $1", t.name());
        Ok(self.execute(&sql, &[&key]).await? > 0)
    }

    /// Up to `limit` rows with keys between `lo` and `hi`, in key order.
    pub(crate) async fn range(
        &self,
        t: Table,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: Option<usize>,
    ) -> Result<Rows, PgError> {
        let mut sql = format!("SELECT k, v FROM {} WHERE TRUE", t.name());
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(3);
        let lo_v;
        let hi_v;
        match lo {
            Bound::Included(b) => {
                lo_v = b;
                params.push(&lo_v);
                sql.push_str(&format!(" AND k >= ${}", params.len()));
            }
            Bound::Excluded(b) => {
                lo_v = b;
                params.push(&lo_v);
                sql.push_str(&format!(" AND k > ${}", params.len()));
            }
            Bound::Unbounded => {}
        }
        match hi {
            Bound::Included(b) => {
                hi_v = b;
                params.push(&hi_v);
                sql.push_str(&format!(" AND k <= ${}", params.len()));
            }
            Bound::Excluded(b) => {
                hi_v = b;
                params.push(&hi_v);
                sql.push_str(&format!(" AND k < ${}", params.len()));
            }
            Bound::Unbounded => {}
        }
        sql.push_str(" ORDER BY k");
        let limit_v = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        if let Some(l) = &limit_v {
            params.push(l);
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        let rows = self.query(&sql, &params).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
            .collect())
    }

    /// Every row, in key order.
    pub(crate) async fn all(&self, t: Table) -> Result<Rows, PgError> {
        self.range(t, Bound::Unbounded, Bound::Unbounded, None)
            .await
    }

    /// Number of rows.
    pub(crate) async fn count(&self, t: Table) -> Result<u64, PgError> {
        let sql = format!("SELECT count(*) FROM {}", t.name());
        let rows = self.query(&sql, &[]).await?;
        let n: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Number of rows with keys in `[lo, hi]`.
    pub(crate) async fn count_between(
        &self,
        t: Table,
        lo: &[u8],
        hi: &[u8],
    ) -> Result<u64, PgError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE k >= $1 AND k <= $2",
            t.name()
        );
        let rows = self.query(&sql, &[&lo, &hi]).await?;
        let n: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Which of `keys` the table has (one statement, whatever their number).
    pub(crate) async fn present_among(
        &self,
        t: Table,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, PgError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT k FROM {} WHERE k = ANY($1)", t.name());
        let rows = self.query(&sql, &[&keys]).await?;
        Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
    }

    /// Whether the table has no row.
    pub(crate) async fn is_empty(&self, t: Table) -> Result<bool, PgError> {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", t.name());
        Ok(self.query(&sql, &[]).await?.is_empty())
    }
}
