//! Plain value types of the chunk store API.

use std::fmt;

/// The 16-byte id of a chunk (one part of one file), chosen by the gateway.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    /// Lower-case hex, 32 characters: the chunk file's name stem.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses exactly 32 lower- or upper-case hex digits.
    pub fn from_hex(s: &str) -> Option<ChunkId> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            id[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(ChunkId(id))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl From<[u8; 16]> for ChunkId {
    fn from(b: [u8; 16]) -> Self {
        ChunkId(b)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

/// What a chunk is a part of; recorded in the chunk header so the gateway's metadata can be
/// rebuilt from the nodes alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkMeta {
    pub file_id: [u8; 16],
    pub part_index: u32,
    pub part_count: u32,
    /// Offset of this part within the file.
    pub file_offset: u64,
    /// Declared length of the part (the chunk body), in bytes.
    pub length: u64,
}

/// The file a chunk belongs to, kept in a version 2 header so that the gateway's metadata can
/// be rebuilt from the nodes alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub name: String,
    pub content_type: Option<String>,
    /// When the upload began (unix milliseconds).
    pub created_unix_ms: u64,
}

/// What became of a chunk's file, as the gateway told the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    Committed,
    Deleted,
}

/// A commit mark: kept in the shard's `marks.log`, reported by the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitMark {
    pub kind: MarkKind,
    /// The committed file's size.
    pub file_size: u64,
    /// xxh3-128 of the whole file; zero for `Deleted`.
    pub checksum: [u8; 16],
    pub unix_ms: u64,
}

/// One chunk as the inventory reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryItem {
    pub stat: ChunkStat,
    /// 1 or 2; 0 when the header could not be read again (the chunk is then not trusted).
    pub header_version: u16,
    pub facts: Option<FileFacts>,
    pub mark: Option<CommitMark>,
}

/// Lifecycle of a chunk file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// Being written or interrupted; `durable_len` bytes (a whole number of blocks) can be resumed.
    Writing,
    /// Fully written and synced; readable.
    Complete,
}

/// What the store knows about one chunk (mirrors its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkStat {
    pub chunk_id: ChunkId,
    pub meta: ChunkMeta,
    /// Bytes of the body that are durable. Equals `meta.length` when Complete.
    pub durable_len: u64,
    /// crc32c of the durable prefix of the body, i.e. of the whole body when Complete.
    pub crc32c: u32,
    pub state: ChunkState,
}

/// Result of a completed put: the part is durable when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutDone {
    pub length: u64,
    pub crc32c: u32,
}

/// Space and activity of one shard's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes reserved by chunk files: header, crc table and the declared body of every chunk
    /// (Writing chunks count in full because their space is preallocated).
    pub used_bytes: u64,
    /// Chunks known to the store, Complete and Writing.
    pub chunk_count: u64,
    /// Puts currently holding a chunk (receiving or checkpointing).
    pub in_flight_puts: u64,
}

/// Tuning of one shard's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Number of 1 MiB aligned I/O buffers of the shard's pool (its data-path memory, plus as
    /// many again at most kept from blocks lent out to readers).
    pub buffer_count: usize,
    /// Body writes one put keeps in flight before it waits for the oldest.
    pub writes_in_flight: usize,
    /// Block reads one reader keeps in flight (read-ahead).
    pub reads_in_flight: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            buffer_count: 32,
            writes_in_flight: 4,
            reads_in_flight: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_hex_round_trip() {
        let id = ChunkId([
            0x00, 0x01, 0x7f, 0x80, 0xff, 0xab, 0xcd, 0xef, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        let hex = id.to_hex();
        assert_eq!(hex, "00017f80ffabcdef0102030405060708");
        assert_eq!(ChunkId::from_hex(&hex), Some(id));
        assert_eq!(ChunkId::from_hex(&hex.to_uppercase()), Some(id));
        assert_eq!(ChunkId::from_hex("00"), None);
        assert_eq!(ChunkId::from_hex("g0017f80ffabcdef0102030405060708"), None);
    }
}
