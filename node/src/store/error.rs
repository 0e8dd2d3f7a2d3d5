//! The errors of the chunk store, one enum per operation (in the style of redb's `TableError`,
//! `CommitError`, ...): each operation returns only what it can fail with, so the protocol
//! layer's mapping to wire statuses (`service/rules.rs`) is an exhaustive match per operation,
//! and a new failure does not compile until it is given a status.
//!
//! The helpers shared by several operations fail with the crate-internal [`FileError`]; each
//! public error takes it in through an exhaustive `From`.

use std::io;
use std::path::PathBuf;

use super::format::FormatError;
use super::space;

/// Why [`ChunkStore::open`](super::ChunkStore::open) failed. The shard does not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The buffer and in-flight settings do not fit together.
    #[error("invalid store config {0}")]
    InvalidConfig(String),
    /// Another store (in this process or another) holds the shard directory's lock.
    #[error("shard directory {} is in use by another store", dir.display())]
    Locked { dir: PathBuf },
    /// The filesystem refuses O_DIRECT (e.g. old tmpfs).
    #[error("the filesystem of {} does not support O_DIRECT", dir.display())]
    NoDirectIo { dir: PathBuf },
    /// No room for the store's directories or the commit marks log.
    #[error("disk full")]
    DiskFull,
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// Why a put failed, at any of its steps: [`ChunkStore::put`](super::ChunkStore::put),
/// [`PutWriter::write`](super::PutWriter::write), `finish` or `interrupt`.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The put cannot start where it asked to: `durable_len` is what the chunk durably holds.
    /// For a Complete chunk `durable_len` equals its length.
    #[error("conflict: the chunk's durable length is {durable_len}")]
    Conflict { durable_len: u64 },
    /// Another put on the same chunk is still receiving data.
    #[error("chunk is busy: another put is in progress")]
    Busy,
    /// The filesystem ran out of space (or quota); the partial chunk was removed.
    #[error("disk full")]
    DiskFull,
    /// The request itself is wrong (bad length, meta, more body than declared, a put used
    /// after it failed); retrying it unchanged will not help.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The store broke one of its own rules (a block that does not fit its buffer).
    #[error("corrupt chunk store data: {0}")]
    Corrupt(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// Why [`ChunkStore::read`](super::ChunkStore::read) could not open a range for reading.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No chunk with this id on this shard.
    #[error("chunk not found")]
    NotFound,
    /// The chunk exists but is still being written (or was interrupted); it is not readable yet.
    #[error("chunk is not complete (durable length {durable_len})")]
    NotComplete { durable_len: u64 },
    /// The range is not inside the chunk.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The chunk header or crc table failed validation, or disagrees with the index.
    #[error("corrupt chunk store data: {0}")]
    Corrupt(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// Why [`ChunkReader::next`](super::ChunkReader::next) yielded no piece; the reader is finished.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A block of the body does not match its stored crc32c; no byte of it was returned.
    #[error("checksum mismatch in block {block}")]
    ChecksumMismatch { block: u64 },
    /// The chunk file ends inside the body its header promises.
    #[error("corrupt chunk store data: {0}")]
    Corrupt(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// Why [`ChunkStore::stat`](super::ChunkStore::stat) has no answer.
#[derive(Debug, thiserror::Error)]
pub enum StatError {
    /// No chunk with this id on this shard.
    #[error("chunk not found")]
    NotFound,
}

/// Why [`ChunkStore::delete`](super::ChunkStore::delete) removed nothing (or is not durable).
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No chunk with this id on this shard.
    #[error("chunk not found")]
    NotFound,
    /// A put on the chunk is still receiving data.
    #[error("chunk is busy: another put is in progress")]
    Busy,
    /// The unlink or the directory sync failed.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// Why [`ChunkStore::mark`](super::ChunkStore::mark) recorded nothing durably.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// The marks log append (or rewrite) failed; the marks were forgotten again.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// Why [`ChunkStore::verify`](super::ChunkStore::verify) could not vouch for a chunk.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No Complete chunk with this id on this shard.
    #[error("chunk not found")]
    NotFound,
    /// A block of the body does not match its stored crc32c.
    #[error("checksum mismatch in block {block}")]
    ChecksumMismatch { block: u64 },
    /// The header, crc table or whole-body crc failed validation.
    #[error("corrupt chunk store data: {0}")]
    Corrupt(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

/// What the shared chunk file helpers (reading headers and crc tables) fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("corrupt chunk store data: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl From<FormatError> for FileError {
    fn from(e: FormatError) -> Self {
        FileError::Corrupt(e.to_string())
    }
}

/// The chunk is held by a put that is still receiving data.
#[derive(Debug)]
pub(crate) struct ChunkBusy;

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        if space::is_no_space(&e) {
            OpenError::DiskFull
        } else {
            OpenError::Io(e)
        }
    }
}

impl From<io::Error> for PutError {
    fn from(e: io::Error) -> Self {
        if space::is_no_space(&e) {
            PutError::DiskFull
        } else {
            PutError::Io(e)
        }
    }
}

impl From<FileError> for PutError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Corrupt(why) => PutError::Corrupt(why),
            FileError::Io(e) => e.into(),
        }
    }
}

impl From<ChunkBusy> for PutError {
    fn from(_: ChunkBusy) -> Self {
        PutError::Busy
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<FileError> for ReadError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Corrupt(why) => ReadError::Corrupt(why),
            FileError::Io(e) => ReadError::Io(e),
        }
    }
}

impl From<FileError> for BlockError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Corrupt(why) => BlockError::Corrupt(why),
            FileError::Io(e) => BlockError::Io(e),
        }
    }
}

impl From<ChunkBusy> for DeleteError {
    fn from(_: ChunkBusy) -> Self {
        DeleteError::Busy
    }
}

impl From<StatError> for VerifyError {
    fn from(e: StatError) -> Self {
        match e {
            StatError::NotFound => VerifyError::NotFound,
        }
    }
}

impl From<ReadError> for VerifyError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotFound => VerifyError::NotFound,
            // Verify checks the chunk is Complete first, as `read` does: not readable is not
            // found to verify.
            ReadError::NotComplete { .. } => VerifyError::NotFound,
            // Verify reads exactly the chunk's length, so a range refused means the index
            // disagrees with itself.
            ReadError::BadRequest(why) => VerifyError::Corrupt(why),
            ReadError::Corrupt(why) => VerifyError::Corrupt(why),
            ReadError::Io(e) => VerifyError::Io(e),
        }
    }
}

impl From<BlockError> for VerifyError {
    fn from(e: BlockError) -> Self {
        match e {
            BlockError::ChecksumMismatch { block } => VerifyError::ChecksumMismatch { block },
            BlockError::Corrupt(why) => VerifyError::Corrupt(why),
            BlockError::Io(e) => VerifyError::Io(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_map_to_disk_full() {
        for code in [libc::ENOSPC, libc::EDQUOT] {
            let e: PutError = io::Error::from_raw_os_error(code).into();
            assert!(matches!(e, PutError::DiskFull), "{code}: {e:?}");
            let e: PutError = FileError::Io(io::Error::from_raw_os_error(code)).into();
            assert!(matches!(e, PutError::DiskFull), "{code}: {e:?}");
            let e: OpenError = io::Error::from_raw_os_error(code).into();
            assert!(matches!(e, OpenError::DiskFull), "{code}: {e:?}");
        }
        let e: PutError = io::Error::from_raw_os_error(libc::EIO).into();
        assert!(matches!(e, PutError::Io(_)));
        let e: OpenError = io::Error::from_raw_os_error(libc::EIO).into();
        assert!(matches!(e, OpenError::Io(_)));
    }

    #[test]
    fn verify_takes_in_what_reading_fails_with() {
        let cases: Vec<(VerifyError, &str)> = vec![
            (ReadError::NotFound.into(), "chunk not found"),
            (
                ReadError::NotComplete { durable_len: 3 }.into(),
                "chunk not found",
            ),
            (
                ReadError::BadRequest("range".into()).into(),
                "corrupt chunk store data: range",
            ),
            (
                ReadError::Corrupt("x".into()).into(),
                "corrupt chunk store data: x",
            ),
            (
                BlockError::ChecksumMismatch { block: 4 }.into(),
                "checksum mismatch in block 4",
            ),
            (BlockError::Io(io::Error::other("y")).into(), "I/O error: y"),
            (StatError::NotFound.into(), "chunk not found"),
        ];
        for (e, message) in cases {
            assert_eq!(e.to_string(), message, "{e:?}");
        }
    }
}
