//! The local index log, version 1: pure encode/decode (layout in `node/STORAGE-FORMAT.md`).
//!
//! The log is a header followed by records, each an upsert of a chunk's stat or a removal.
//! Replaying the records in order yields the index. Any damage makes the whole log invalid;
//! the store then rebuilds the index from chunk headers.

use std::collections::BTreeMap;

use super::format::MAX_CHUNK_LEN;
use super::types::{ChunkId, ChunkMeta, ChunkStat, ChunkState};

pub const INDEX_MAGIC: [u8; 8] = *b"SIXFINDX";
pub const INDEX_VERSION: u32 = 1;
pub const INDEX_HEADER_LEN: usize = 16;

const KIND_UPSERT: u8 = 1;
const KIND_REMOVE: u8 = 2;
const UPSERT_BODY_LEN: usize = 70;
const REMOVE_BODY_LEN: usize = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRecord {
    Upsert(ChunkStat),
    Remove(ChunkId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index file too short for its header")]
    TooShort,
    #[error("bad index magic")]
    BadMagic,
    #[error("unsupported index version {0}")]
    UnsupportedVersion(u32),
    #[error("index header checksum mismatch")]
    HeaderChecksum,
    #[error("index record at byte {at} is truncated")]
    Truncated { at: usize },
    #[error("index record at byte {at} has a bad checksum")]
    RecordChecksum { at: usize },
    #[error("index record at byte {at} is invalid: {reason}")]
    BadRecord { at: usize, reason: &'static str },
}

pub fn encode_log_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&out[out.len() - 12..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

pub fn encode_record(rec: &LogRecord, out: &mut Vec<u8>) {
    let mut body = [0u8; UPSERT_BODY_LEN];
    let len = match rec {
        LogRecord::Upsert(s) => {
            body[0] = KIND_UPSERT;
            body[1..17].copy_from_slice(&s.chunk_id.0);
            body[17..33].copy_from_slice(&s.meta.file_id);
            body[33..37].copy_from_slice(&s.meta.part_index.to_le_bytes());
            body[37..41].copy_from_slice(&s.meta.part_count.to_le_bytes());
            body[41..49].copy_from_slice(&s.meta.file_offset.to_le_bytes());
            body[49..57].copy_from_slice(&s.meta.length.to_le_bytes());
            body[57..65].copy_from_slice(&s.durable_len.to_le_bytes());
            body[65..69].copy_from_slice(&s.crc32c.to_le_bytes());
            body[69] = match s.state {
                ChunkState::Writing => 1,
                ChunkState::Complete => 2,
            };
            UPSERT_BODY_LEN
        }
        LogRecord::Remove(id) => {
            body[0] = KIND_REMOVE;
            body[1..17].copy_from_slice(&id.0);
            REMOVE_BODY_LEN
        }
    };
    let body = &body[..len];
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
}

/// Decodes a whole log file; fails on the first damaged byte.
pub fn decode_log(b: &[u8]) -> Result<Vec<LogRecord>, IndexError> {
    if b.len() < INDEX_HEADER_LEN {
        return Err(IndexError::TooShort);
    }
    if b[0..8] != INDEX_MAGIC {
        return Err(IndexError::BadMagic);
    }
    let version = u32_at(b, 8);
    if version != INDEX_VERSION {
        return Err(IndexError::UnsupportedVersion(version));
    }
    if crc32c::crc32c(&b[0..12]) != u32_at(b, 12) {
        return Err(IndexError::HeaderChecksum);
    }
    let mut records = Vec::new();
    let mut at = INDEX_HEADER_LEN;
    while at < b.len() {
        if b.len() - at < 4 {
            return Err(IndexError::Truncated { at });
        }
        let len = u32_at(b, at) as usize;
        if len != UPSERT_BODY_LEN && len != REMOVE_BODY_LEN {
            return Err(IndexError::BadRecord {
                at,
                reason: "record length",
            });
        }
        let end = at + 4 + len + 4;
        if end > b.len() {
            return Err(IndexError::Truncated { at });
        }
        let body = &b[at + 4..at + 4 + len];
        if crc32c::crc32c(body) != u32_at(b, at + 4 + len) {
            return Err(IndexError::RecordChecksum { at });
        }
        records.push(decode_body(body).map_err(|reason| IndexError::BadRecord { at, reason })?);
        at = end;
    }
    Ok(records)
}

fn decode_body(body: &[u8]) -> Result<LogRecord, &'static str> {
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[1..17]);
    match (body[0], body.len()) {
        (KIND_REMOVE, REMOVE_BODY_LEN) => Ok(LogRecord::Remove(ChunkId(id))),
        (KIND_UPSERT, UPSERT_BODY_LEN) => {
            let mut file_id = [0u8; 16];
            file_id.copy_from_slice(&body[17..33]);
            let meta = ChunkMeta {
                file_id,
                part_index: u32_at(body, 33),
                part_count: u32_at(body, 37),
                file_offset: u64_at(body, 41),
                length: u64_at(body, 49),
            };
            let state = match body[69] {
                1 => ChunkState::Writing,
                2 => ChunkState::Complete,
                _ => return Err("state"),
            };
            let durable_len = u64_at(body, 57);
            if meta.part_index >= meta.part_count {
                return Err("part index");
            }
            if meta.length > MAX_CHUNK_LEN || durable_len > meta.length {
                return Err("length");
            }
            if state == ChunkState::Complete && durable_len != meta.length {
                return Err("durable length of a complete chunk");
            }
            Ok(LogRecord::Upsert(ChunkStat {
                chunk_id: ChunkId(id),
                meta,
                durable_len,
                crc32c: u32_at(body, 65),
                state,
            }))
        }
        _ => Err("kind"),
    }
}

/// Applies records in order to an index.
pub fn replay(records: &[LogRecord], index: &mut BTreeMap<ChunkId, ChunkStat>) {
    for r in records {
        match r {
            LogRecord::Upsert(s) => {
                index.insert(s.chunk_id, *s);
            }
            LogRecord::Remove(id) => {
                index.remove(id);
            }
        }
    }
}

/// A complete log holding exactly `stats`.
pub fn encode_snapshot<'a>(stats: impl Iterator<Item = &'a ChunkStat>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_log_header(&mut out);
    for s in stats {
        encode_record(&LogRecord::Upsert(*s), &mut out);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stat(n: u8, state: ChunkState) -> ChunkStat {
        ChunkStat {
            chunk_id: ChunkId([n; 16]),
            meta: ChunkMeta {
                file_id: [n ^ 0xff; 16],
                part_index: 1,
                part_count: 6,
                file_offset: 1 << 40,
                length: 3 << 20,
            },
            durable_len: if state == ChunkState::Complete {
                3 << 20
            } else {
                1 << 20
            },
            crc32c: 0x1234_5678 ^ u32::from(n),
            state,
        }
    }

    #[test]
    fn log_round_trip_and_replay() {
        let recs = vec![
            LogRecord::Upsert(stat(1, ChunkState::Writing)),
            LogRecord::Upsert(stat(2, ChunkState::Complete)),
            LogRecord::Upsert(stat(1, ChunkState::Complete)),
            LogRecord::Remove(ChunkId([2; 16])),
        ];
        let mut b = Vec::new();
        encode_log_header(&mut b);
        for r in &recs {
            encode_record(r, &mut b);
        }
        let decoded = decode_log(&b).unwrap();
        assert_eq!(decoded, recs);
        let mut idx = BTreeMap::new();
        replay(&decoded, &mut idx);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx[&ChunkId([1; 16])], stat(1, ChunkState::Complete));
    }

    #[test]
    fn snapshot_decodes_to_the_same_index() {
        let stats = [stat(3, ChunkState::Complete), stat(4, ChunkState::Writing)];
        let b = encode_snapshot(stats.iter());
        let mut idx = BTreeMap::new();
        replay(&decode_log(&b).unwrap(), &mut idx);
        assert_eq!(idx.values().copied().collect::<Vec<_>>(), stats.to_vec());
    }

    #[test]
    fn damage_is_detected() {
        let b = encode_snapshot([stat(3, ChunkState::Complete)].iter());
        assert_eq!(decode_log(&b[..10]), Err(IndexError::TooShort));
        assert!(matches!(
            decode_log(&b[..b.len() - 1]),
            Err(IndexError::Truncated { .. })
        ));
        let mut v = b.clone();
        v[8] = 9;
        assert_eq!(decode_log(&v), Err(IndexError::UnsupportedVersion(9)));
        let mut v = b.clone();
        v[30] ^= 1;
        assert_eq!(decode_log(&v), Err(IndexError::RecordChecksum { at: 16 }));
        let mut v = b.clone();
        v[0] = 0;
        assert_eq!(decode_log(&v), Err(IndexError::BadMagic));
        for at in 0..b.len() {
            let mut v = b.clone();
            v[at] ^= 0x21;
            assert!(decode_log(&v).is_err(), "flip at {at} not detected");
        }
    }

    proptest! {
        #[test]
        fn decode_arbitrary_bytes_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_log(&tail);
            let mut b = Vec::new();
            encode_log_header(&mut b);
            b.extend_from_slice(&tail);
            let _ = decode_log(&b);
        }
    }
}
