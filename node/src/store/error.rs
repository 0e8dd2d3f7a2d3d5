//! The one error type of the chunk store; the protocol layer maps each variant to a wire status.

use std::io;

/// Everything a chunk store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No chunk with this id on this shard.
    #[error("chunk not found")]
    NotFound,
    /// The chunk exists but is still being written (or was interrupted); it is not readable yet.
    #[error("chunk is not complete (durable length {durable_len})")]
    NotComplete { durable_len: u64 },
    /// A put cannot start where it asked to: `durable_len` is what the chunk durably holds.
    /// For a Complete chunk `durable_len` equals its length.
    #[error("conflict: the chunk's durable length is {durable_len}")]
    Conflict { durable_len: u64 },
    /// Another put on the same chunk is still receiving data.
    #[error("chunk is busy: another put is in progress")]
    Busy,
    /// A block of the body does not match its stored crc32c; no byte of it was returned.
    #[error("checksum mismatch in block {block}")]
    ChecksumMismatch { block: u64 },
    /// The filesystem ran out of space (or quota); the partial chunk was removed.
    #[error("disk full")]
    DiskFull,
    /// The request itself is wrong (bad length, range, meta); retrying it unchanged will not help.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// On-disk data (a chunk header or crc table) failed validation.
    #[error("corrupt chunk store data: {0}")]
    Corrupt(String),
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::DiskFull,
            _ => StoreError::Io(e),
        }
    }
}

impl From<super::format::FormatError> for StoreError {
    fn from(e: super::format::FormatError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_map_to_disk_full() {
        for code in [libc::ENOSPC, libc::EDQUOT] {
            let e: StoreError = io::Error::from_raw_os_error(code).into();
            assert!(matches!(e, StoreError::DiskFull), "{code}: {e:?}");
        }
        let e: StoreError = io::Error::from_raw_os_error(libc::EIO).into();
        assert!(matches!(e, StoreError::Io(_)));
    }
}
