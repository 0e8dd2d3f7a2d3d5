//! The chunk store of one shard: chunk files written and read with io_uring (monoio) and
//! O_DIRECT, self-describing headers with per-block crc32c, resumable puts, and a local index.
//!
//! One [`ChunkStore`] per shard thread, opened on that shard's monoio runtime (io_uring
//! driver) over `<data-dir>/shard-<n>/` ([`shard_dir`]). It is single-threaded (`!Send`): the
//! protocol layer routes each request to the owning shard and calls the store there.
//!
//! - put: [`ChunkStore::put`] → [`PutWriter::write`] per received `Bytes` (awaiting it is the
//!   backpressure) → [`PutWriter::finish`] (durable on return) or [`PutWriter::interrupt`].
//! - read: [`ChunkStore::read`] → [`ChunkReader::next`] until `None`.
//! - [`ChunkStore::stat`], [`ChunkStore::delete`], [`ChunkStore::list`], [`ChunkStore::usage`].
//! - commit marks and the rebuild's view: [`ChunkStore::mark`], [`ChunkStore::inventory`],
//!   [`ChunkStore::verify`] (see `marks_log.rs`).
//! - errors: one enum per operation ([`PutError`] for every step of a put, [`ReadError`] and
//!   [`BlockError`] for opening a read and for each of its blocks, ...), so that the protocol
//!   layer maps each exhaustively.
//! - [`ChunkStore::is_full`]: a full filesystem makes the shard read-only for new puts; it
//!   opens all the same (see `space.rs`).
//!
//! Drop store objects (`ChunkStore`, `PutWriter`, `ChunkReader`, `PooledBuf`) inside the
//! runtime, i.e. end the shard's tasks before `block_on` returns: releasing a buffer or a chunk
//! wakes waiting tasks, and monoio panics when a local task is woken outside its runtime.
//!
//! The on-disk format is specified in `node/STORAGE-FORMAT.md`.

mod aligned_buf;
mod buffer_pool;
mod chunk_file;
mod chunk_store;
mod error;
mod format;
mod index_codec;
mod index_log;
mod local_sync;
mod marks_log;
mod pool_memory;
mod put;
mod read;
mod recovery;
mod space;
mod types;
mod uncached_copy;

#[cfg(test)]
mod tests;

pub use aligned_buf::AlignedBuf;
pub use buffer_pool::{BufferPool, PooledBuf};
pub use chunk_store::{CHUNK_BLOCK_SIZE, ChunkStore, shard_dir};
pub use error::{
    BlockError, DeleteError, MarkError, OpenError, PutError, ReadError, StatError, VerifyError,
};
pub use format::{FORMAT_VERSION, MAX_CHUNK_LEN};
pub use put::PutWriter;
pub use read::ChunkReader;
pub use recovery::{IndexSource, OpenReport};
pub use space::{MIN_FREE_BYTES, available_bytes};
pub use types::{
    ChunkId, ChunkMeta, ChunkStat, ChunkState, CommitMark, FileFacts, InventoryItem, MarkKind,
    PutDone, StoreConfig, Usage,
};
