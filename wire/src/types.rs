//! Values carried in headers: ids, chunk metadata, status codes, chunk state.

use crate::WireError;

/// A chunk's identity: 16 random bytes chosen by the gateway.
pub type ChunkId = [u8; 16];
/// A file's identity (the bytes of its UUID).
pub type FileId = [u8; 16];

/// Where a chunk belongs: which file, which part, and how long it is in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub file_id: FileId,
    pub part_index: u32,
    pub part_count: u32,
    /// Offset of this part within the whole file.
    pub file_offset: u64,
    /// Total length of the chunk body.
    pub length: u64,
}

/// Outcome of a request. Also used as the QUIC application error code when a stream has to be
/// reset after its response header was sent (for example a checksum mismatch mid-read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// No such chunk (or not readable yet).
    NotFound = 1,
    /// Stored bytes do not match their checksum, or received bytes do not match what was sent.
    ChecksumMismatch = 2,
    /// The node has no room for the chunk; nothing of it was kept.
    DiskFull = 3,
    /// The request is malformed or asks for something impossible (range past the end, ...).
    BadRequest = 4,
    /// The request contradicts the chunk's state: it exists already, or a resume offset is not
    /// the durable length (`detail` carries the durable length).
    Conflict = 5,
    /// A failure on the node that is not the requester's fault (I/O error, bug).
    Internal = 6,
    /// The node is stopping and takes no new work; retry elsewhere or later.
    ShuttingDown = 7,
}

impl Status {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Result<Self, WireError> {
        Ok(match code {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::ChecksumMismatch,
            3 => Status::DiskFull,
            4 => Status::BadRequest,
            5 => Status::Conflict,
            6 => Status::Internal,
            7 => Status::ShuttingDown,
            other => return Err(WireError::UnknownStatus(other)),
        })
    }

    /// Short stable name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotFound => "not_found",
            Status::ChecksumMismatch => "checksum_mismatch",
            Status::DiskFull => "disk_full",
            Status::BadRequest => "bad_request",
            Status::Conflict => "conflict",
            Status::Internal => "internal",
            Status::ShuttingDown => "shutting_down",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a chunk's body is complete and durable, or still being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChunkState {
    /// A put is in progress or was interrupted; `durable_len` bytes are on disk and a put may
    /// resume there.
    Writing = 1,
    /// Every byte is durable and verified.
    Complete = 2,
}

impl ChunkState {
    pub fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(ChunkState::Writing),
            2 => Ok(ChunkState::Complete),
            other => Err(WireError::UnknownState(other)),
        }
    }
}

/// What a node knows of one chunk: answer to `Stat`, entries of `List`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    pub chunk_id: ChunkId,
    pub meta: ChunkMeta,
    /// Bytes of the body that are on disk and synced.
    pub durable_len: u64,
    /// crc32c of the whole body (meaningful when `state` is `Complete`).
    pub crc32c: u32,
    pub state: ChunkState,
}

/// A node's (or one shard's) capacity and load, answer to `NodeInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: [u8; 16],
    /// Index of the shard that answered, and how many the node runs.
    pub shard: u16,
    pub shards: u16,
    pub capacity: u64,
    pub used: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
}
