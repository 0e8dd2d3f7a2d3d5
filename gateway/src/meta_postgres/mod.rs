//! The gateway's metadata in PostgreSQL (issue 16): the same operations as the embedded redb
//! store ([`crate::meta::Meta`]), for deployments with several gateways over one database.
//!
//! # Layout
//! Every redb table of `crate::meta::tables` is a PostgreSQL table of the same name with two
//! columns, `k bytea PRIMARY KEY` and `v bytea NOT NULL`. The keys are the redb keys' bytes
//! (node id ‖ chunk id, file ids, `bucket ‖ 0 ‖ key`, ...), so `bytea`'s byte order is redb's
//! key order and every range scan of the redb code is an index range scan here. The values are
//! the same versioned codec bytes ([`crate::meta::codec`], the commit marks' own layout): one
//! record format for both backends, so the rule "a new release reads what the last one wrote"
//! is kept in one place, and `admin migrate-metadata` copies records byte for byte (and can
//! check them with checksums).
//!
//! # Schema versions
//! `schema_version` holds the versions applied ([`schema`]); the migrations missing are applied
//! at open, under an advisory lock so that gateways starting together do not race. A database
//! whose version is newer than this release's is refused, as [`crate::meta::Meta::open`] does.
//!
//! # Transactions
//! Each write that is one redb transaction in `crate::meta` is one PostgreSQL transaction at
//! SERIALIZABLE here, with the same checks in the same order (the pure checks are shared, see
//! `crate::meta::sessions`). A transaction that fails with a serialization failure (SQLSTATE
//! 40001) or a deadlock (40P01) is run again from the start, up to [`MAX_ATTEMPTS`] times
//! with a growing wait ([`retry_delay`]). Sequential scans are off for the gateway's sessions,
//! so that the predicate locks stay on index pages (see [`PostgresMeta::open`]).
//! Reads of more than one statement run in one REPEATABLE READ READ ONLY transaction (one
//! snapshot, as a redb read transaction). Statements are prepared once per connection
//! (`prepare_cached`).

mod buckets;
mod coordination;
mod damaged;
mod deletes;
mod files;
mod keys;
mod kv;
mod marks;
pub mod migrate;
mod moves;
mod multipart;
mod nodes;
mod quarantine;
mod restore;
mod s3_objects;
pub mod schema;
mod sessions;
mod store;
mod unaccounted;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::meta::MetaError;
use crate::meta::s3_records::ObjectStoreError;

pub(crate) use kv::{Table, Tx};

/// Attempts of one transaction that keeps meeting serialization failures.
pub const MAX_ATTEMPTS: u32 = 20;

/// Wait before attempt `attempt + 1` of a transaction: doubling from 2 ms up to 128 ms, plus a
/// few milliseconds of jitter so that two transactions that clashed do not clash again in step.
pub fn retry_delay(attempt: u32, jitter_ms: u8) -> Duration {
    let base = 1u64 << attempt.clamp(1, 7);
    Duration::from_millis(base + u64::from(jitter_ms % 8))
}

/// How to reach the database and how many connections to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// Connections in the pool, at most.
    pub pool_size: usize,
    /// Opening one connection, at most.
    #[serde(with = "humantime_serde_ms")]
    pub connect_timeout: Duration,
    /// Waiting for a free connection of the pool, at most.
    #[serde(with = "humantime_serde_ms")]
    pub wait_timeout: Duration,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// Durations as humantime text ("5s", "250ms") in config files.
mod humantime_serde_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid PostgreSQL connection string: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("a row of table {table} has {what}")]
    Row { table: &'static str, what: String },
}

impl PgError {
    /// A serialization failure or deadlock: the transaction may succeed when run again.
    pub fn is_retryable(&self) -> bool {
        match self {
            PgError::Db(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::Db(e),
            other => PgError::Pool(other.to_string()),
        }
    }
}

impl From<PgError> for MetaError {
    fn from(e: PgError) -> Self {
        MetaError::Storage(Box::new(e))
    }
}

impl From<PgError> for ObjectStoreError {
    fn from(e: PgError) -> Self {
        ObjectStoreError::Meta(MetaError::from(e))
    }
}

/// Errors a retried transaction can tell apart.
pub(crate) trait Retryable {
    fn is_retryable(&self) -> bool;
}

impl Retryable for MetaError {
    fn is_retryable(&self) -> bool {
        match self {
            MetaError::Storage(e) => e
                .downcast_ref::<PgError>()
                .is_some_and(PgError::is_retryable),
            _ => false,
        }
    }
}

impl Retryable for ObjectStoreError {
    fn is_retryable(&self) -> bool {
        matches!(self, ObjectStoreError::Meta(e) if e.is_retryable())
    }
}

/// Handle on the PostgreSQL metadata. Clones share one pool.
#[derive(Clone)]
pub struct PostgresMeta {
    pool: Pool,
    /// What stamps the records (commit times, queue entries).
    clock: SharedClock,
    cluster_id: Arc<std::sync::RwLock<Uuid>>,
}

impl fmt::Debug for PostgresMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresMeta").finish_non_exhaustive()
    }
}

/// Whether `s` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `url` without its password, for logs and messages.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

impl PostgresMeta {
    /// Connects to `url`, applies the schema migrations this release has and the database
    /// lacks, and reads (or makes) the cluster id. A database of a newer schema version fails
    /// with [`MetaError::SchemaVersion`].
    pub async fn open(url: &str, settings: &PostgresSettings) -> Result<Self, MetaError> {
        Self::open_with_clock(url, settings, crate::clock::system()).await
    }

    /// [`PostgresMeta::open`], stamping records with `clock`'s time.
    pub async fn open_with_clock(
        url: &str,
        settings: &PostgresSettings,
        clock: SharedClock,
    ) -> Result<Self, MetaError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(PgError::Url)?;
        config.connect_timeout(settings.connect_timeout);
        // SERIALIZABLE takes its predicate locks on the index pages a statement reads, but on
        // the whole table when the planner picks a sequential scan, which it does for small
        // tables: then any two writers of a table conflict and retry. Every statement here is
        // a key lookup or a key range, which the primary key's index serves.
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c enable_seqscan=off"),
            _ => "-c enable_seqscan=off".to_owned(),
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("sixfold-gateway");
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(settings.wait_timeout),
                create: Some(settings.connect_timeout),
                recycle: Some(settings.connect_timeout),
            })
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let meta = PostgresMeta {
            pool,
            clock,
            cluster_id: Arc::new(std::sync::RwLock::new(Uuid::nil())),
        };
        let (version, id) = schema::migrate(&meta).await?;
        *meta
            .cluster_id
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
        tracing::info!(database = %redacted(url), schema = version, "metadata open (PostgreSQL)");
        Ok(meta)
    }

    /// The identity of the cluster this metadata describes.
    pub fn cluster_id(&self) -> Uuid {
        *self
            .cluster_id
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `id` as the cluster's identity (see [`crate::meta::Meta::adopt_cluster_id`]).
    pub async fn adopt_cluster_id(&self, id: Uuid) -> Result<(), MetaError> {
        pg_write!(self, MetaError, |tx| {
            tx.put(
                Table::Cluster,
                schema::CLUSTER_ID_KEY.as_bytes(),
                id.as_bytes(),
            )
            .await?;
            Ok(())
        })?;
        *self
            .cluster_id
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
        tracing::warn!(cluster_id = %id, "cluster identity adopted from the nodes");
        Ok(())
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.unix_ms()
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, PgError> {
        Ok(self.pool.get().await?)
    }

    /// The pool, for the advisory locks of background jobs.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Runs `$body` (which uses `$tx`, a [`Tx`]) in one SERIALIZABLE transaction: committed if it
/// gives `Ok`, rolled back otherwise, and run again from the start on a serialization failure
/// (at most [`MAX_ATTEMPTS`] times). `$err` is the error type of the body.
macro_rules! pg_write {
    ($meta:expr, $err:ty, |$tx:ident| $body:block) => {{
        let meta: &$crate::meta_postgres::PostgresMeta = $meta;
        let outcome: Result<_, $err> = async {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut client = meta.client().await.map_err(<$err>::from)?;
            let txn = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::Serializable)
                .start()
                .await
                .map_err($crate::meta_postgres::PgError::from)
                .map_err(<$err>::from)?;
            let result: Result<_, $err> = {
                let $tx = $crate::meta_postgres::Tx::new(&txn);
                async { $body }.await
            };
            let outcome: Result<_, $err> = match result {
                Ok(value) => txn
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err($crate::meta_postgres::PgError::from)
                    .map_err(<$err>::from),
                Err(e) => {
                    if let Err(rollback) = txn.rollback().await {
                        tracing::debug!(error = %rollback, "metadata transaction rollback failed");
                    }
                    Err(e)
                }
            };
            match outcome {
                Err(e)
                    if $crate::meta_postgres::Retryable::is_retryable(&e)
                        && attempt < $crate::meta_postgres::MAX_ATTEMPTS =>
                {
                    tracing::debug!(attempt, error = %e, "metadata transaction retried");
                    tokio::time::sleep($crate::meta_postgres::retry_delay(
                        attempt,
                        $crate::meta_postgres::rand_jitter(),
                    ))
                    .await;
                    continue;
                }
                other => break other,
            }
        }
        }
        .await;
        outcome
    }};
}
pub(crate) use pg_write;

/// Runs `$body` on one snapshot (REPEATABLE READ, READ ONLY).
macro_rules! pg_read {
    ($meta:expr, $err:ty, |$tx:ident| $body:block) => {{
        let meta: &$crate::meta_postgres::PostgresMeta = $meta;
        let outcome: Result<_, $err> = async {
        let mut client = meta.client().await.map_err(<$err>::from)?;
        let txn = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err($crate::meta_postgres::PgError::from)
            .map_err(<$err>::from)?;
        let result: Result<_, $err> = {
            let $tx = $crate::meta_postgres::Tx::new(&txn);
            async { $body }.await
        };
        if let Err(e) = txn.commit().await {
            tracing::debug!(error = %e, "read-only metadata transaction end failed");
        }
        result
        }
        .await;
        outcome
    }};
}
pub(crate) use pg_read;

/// A few milliseconds of jitter between retries, so that two transactions that clashed do not
/// clash again in step.
pub(crate) fn rand_jitter() -> u8 {
    let mut b = [0u8; 1];
    // Jitter only: a failing random source gives none.
    let _ = getrandom::fill(&mut b);
    b[0]
}

#[cfg(test)]
mod tests;
