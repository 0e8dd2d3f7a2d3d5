//! Errors of the metadata store.

use uuid::Uuid;

use super::codec::CodecError;

/// Anything that can go wrong in [`super::Meta`].
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The record does not exist (`kind` is "upload session", "file" or "node").
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: Uuid },
    /// The write would clash with what is stored (an id or chunk already in use).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The acknowledged parts, size or checksum do not match the upload session; nothing changed.
    #[error("invalid commit of upload {file_id}: {reason}")]
    InvalidCommit { file_id: Uuid, reason: String },
    /// A record handed in for storing is inconsistent (for example a plan that does not tile
    /// the file).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The database was written by a release with a schema this one does not know.
    #[error(
        "metadata schema version {found} is not supported (this release reads version {supported}); \
         use a newer sixfold-gateway"
    )]
    SchemaVersion { found: u64, supported: u64 },
    /// A stored value could not be decoded.
    #[error("corrupt value in table {table}: {source}")]
    Corrupt {
        table: &'static str,
        #[source]
        source: CodecError,
    },
    /// The database file itself (creating it, narrowing its mode).
    #[error("metadata file: {0}")]
    File(#[source] std::io::Error),
    /// The backend failed (I/O, corruption, database locked by another process, a lost
    /// connection, ...). Boxed so that no backend's error type leaks past the metadata port.
    #[error("metadata storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<redb::Error> for MetaError {
    fn from(e: redb::Error) -> Self {
        MetaError::Storage(Box::new(e))
    }
}

impl MetaError {
    pub(crate) fn corrupt(table: &'static str) -> impl FnOnce(CodecError) -> MetaError {
        move |source| MetaError::Corrupt { table, source }
    }
}

// redb reports a distinct error type per operation; all of them fold into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self {
                MetaError::from(redb::Error::from(e))
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);
