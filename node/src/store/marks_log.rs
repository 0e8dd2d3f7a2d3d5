//! The commit marks of one shard (`marks.log`): what became of each chunk's file after the chunk
//! was written (committed, with the file's size and checksum, or deleted). Unlike the index log
//! this file is not a cache: the marks exist nowhere else on the node, and a rebuild of the
//! gateway's metadata tells committed files from abandoned uploads by them.
//!
//! An append-only file of fixed-size records, each with its own crc32c. Fixed sizes make a torn
//! tail (a crash during an append that was never acknowledged) a remainder shorter than one
//! record, and a damaged record one that can be skipped without losing the ones after it. The
//! log is rewritten as a snapshot of the live marks at every open and when it has grown to four
//! times that.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use monoio::fs::File;

use super::index_log::write_snapshot;
use super::local_sync::Semaphore;
use super::types::{ChunkId, CommitMark, MarkKind};

pub(crate) const MARKS_FILE: &str = "marks.log";
const MARKS_TMP_FILE: &str = "marks.log.tmp";
const MAGIC: [u8; 8] = *b"SIXFMARK";
const VERSION: u32 = 1;
const FILE_HEADER_LEN: usize = 16;
/// `len` u32, body, crc32c u32.
const BODY_LEN: usize = 16 + 1 + 8 + 16 + 8;
const RECORD_LEN: usize = 4 + BODY_LEN + 4;
const COMPACT_MIN_RECORDS: u64 = 4096;

/// Why `marks.log` could not be read at all (damaged records are skipped, not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MarksError {
    #[error("marks log header damaged")]
    BadHeader,
    #[error("marks log version {0} is newer than this release")]
    UnsupportedVersion(u32),
}

/// What a load found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub marks: HashMap<ChunkId, CommitMark>,
    /// Records whose checksum or fields were wrong: skipped, and reported.
    pub damaged: u64,
    /// Bytes after the last whole record (a torn append).
    pub torn_tail: usize,
}

pub(crate) fn encode_file_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&out[out.len() - 12..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

pub(crate) fn encode_record(id: &ChunkId, m: &CommitMark, out: &mut Vec<u8>) {
    out.extend_from_slice(&(BODY_LEN as u32).to_le_bytes());
    let start = out.len();
    out.extend_from_slice(&id.0);
    out.push(match m.kind {
        MarkKind::Committed => 1,
        MarkKind::Deleted => 2,
    });
    out.extend_from_slice(&m.file_size.to_le_bytes());
    out.extend_from_slice(&m.checksum);
    out.extend_from_slice(&m.unix_ms.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Decodes a whole log. The latest record of a chunk wins.
pub(crate) fn decode(bytes: &[u8]) -> Result<Loaded, MarksError> {
    if bytes.len() < FILE_HEADER_LEN || bytes[..8] != MAGIC {
        return Err(MarksError::BadHeader);
    }
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc32c::crc32c(&bytes[..12]) != crc {
        return Err(MarksError::BadHeader);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(MarksError::UnsupportedVersion(version));
    }
    let mut loaded = Loaded::default();
    let records = &bytes[FILE_HEADER_LEN..];
    let mut whole = records.chunks_exact(RECORD_LEN);
    for rec in whole.by_ref() {
        match decode_record(rec) {
            Some((id, mark)) => {
                loaded.marks.insert(id, mark);
            }
            None => loaded.damaged += 1,
        }
    }
    loaded.torn_tail = whole.remainder().len();
    Ok(loaded)
}

fn decode_record(rec: &[u8]) -> Option<(ChunkId, CommitMark)> {
    let len = u32::from_le_bytes(rec[..4].try_into().ok()?) as usize;
    let body = &rec[4..4 + BODY_LEN];
    let crc = u32::from_le_bytes(rec[4 + BODY_LEN..].try_into().ok()?);
    if len != BODY_LEN || crc32c::crc32c(body) != crc {
        return None;
    }
    let id = ChunkId(body[..16].try_into().ok()?);
    let kind = match body[16] {
        1 => MarkKind::Committed,
        2 => MarkKind::Deleted,
        _ => return None,
    };
    Some((
        id,
        CommitMark {
            kind,
            file_size: u64::from_le_bytes(body[17..25].try_into().ok()?),
            checksum: body[25..41].try_into().ok()?,
            unix_ms: u64::from_le_bytes(body[41..49].try_into().ok()?),
        },
    ))
}

/// A snapshot: the file header and one record per mark.
pub(crate) fn encode_snapshot<'a>(
    marks: impl Iterator<Item = (&'a ChunkId, &'a CommitMark)>,
) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    encode_file_header(&mut out);
    let mut n = 0;
    for (id, m) in marks {
        encode_record(id, m, &mut out);
        n += 1;
    }
    (out, n)
}

/// The open log file of one shard.
pub(crate) struct MarksLog {
    path: PathBuf,
    tmp_path: PathBuf,
    dir: Rc<File>,
    file: std::cell::RefCell<Rc<File>>,
    /// Where the next record goes: only advanced by a write that succeeded, so a failed one is
    /// overwritten by the next.
    end: Cell<u64>,
    records: Cell<u64>,
    lock: Semaphore,
}

impl MarksLog {
    /// Reads the shard's marks; a missing log is an empty one.
    pub(crate) async fn load(dir: &Path) -> io::Result<Result<Loaded, MarksError>> {
        match monoio::fs::read(dir.join(MARKS_FILE)).await {
            Ok(bytes) => Ok(decode(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(Loaded::default())),
            Err(e) => Err(e),
        }
    }

    /// Writes `snapshot` as the new log (temp file, fsync, rename, fsync of the directory).
    pub(crate) async fn create(
        dir_path: &Path,
        dir: Rc<File>,
        snapshot: (Vec<u8>, u64),
    ) -> io::Result<MarksLog> {
        let path = dir_path.join(MARKS_FILE);
        let tmp_path = dir_path.join(MARKS_TMP_FILE);
        let (bytes, records) = snapshot;
        let end = bytes.len() as u64;
        let file = write_snapshot(&tmp_path, &path, &dir, bytes).await?;
        Ok(MarksLog {
            path,
            tmp_path,
            dir,
            file: std::cell::RefCell::new(Rc::new(file)),
            end: Cell::new(end),
            records: Cell::new(records),
            lock: Semaphore::new(1),
        })
    }

    /// Appends `records` (encoded with [`encode_record`]) and syncs: durable on `Ok`.
    /// `snapshot` is consulted first when the log has grown enough to be rewritten instead; it
    /// must already hold the new marks.
    pub(crate) async fn append(
        &self,
        records: Vec<u8>,
        count: u64,
        live: usize,
        snapshot: impl FnOnce() -> (Vec<u8>, u64),
    ) -> io::Result<()> {
        let _permit = self.lock.lock().await;
        let total = self.records.get() + count;
        if total >= COMPACT_MIN_RECORDS && total >= 4 * live as u64 {
            let (bytes, n) = snapshot();
            let end = bytes.len() as u64;
            let file = write_snapshot(&self.tmp_path, &self.path, &self.dir, bytes).await?;
            *self.file.borrow_mut() = Rc::new(file);
            self.end.set(end);
            self.records.set(n);
            return Ok(());
        }
        let file = self.file.borrow().clone();
        let at = self.end.get();
        let len = records.len() as u64;
        let (res, _) = file.write_all_at(records, at).await;
        res?;
        file.sync_data().await?;
        self.end.set(at + len);
        self.records.set(total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(kind: MarkKind, n: u8) -> CommitMark {
        CommitMark {
            kind,
            file_size: 1000 + u64::from(n),
            checksum: [n; 16],
            unix_ms: 1_780_000_000_000 + u64::from(n),
        }
    }

    fn log_of(records: &[(ChunkId, CommitMark)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_file_header(&mut out);
        for (id, m) in records {
            encode_record(id, m, &mut out);
        }
        out
    }

    #[test]
    fn marks_round_trip_and_the_latest_record_of_a_chunk_wins() {
        let a = ChunkId([1; 16]);
        let b = ChunkId([2; 16]);
        let bytes = log_of(&[
            (a, mark(MarkKind::Committed, 1)),
            (b, mark(MarkKind::Committed, 2)),
            (a, mark(MarkKind::Deleted, 3)),
        ]);
        let loaded = decode(&bytes).unwrap();
        assert_eq!(loaded.damaged, 0);
        assert_eq!(loaded.torn_tail, 0);
        assert_eq!(loaded.marks.len(), 2);
        assert_eq!(loaded.marks[&a], mark(MarkKind::Deleted, 3));
        assert_eq!(loaded.marks[&b], mark(MarkKind::Committed, 2));
    }

    #[test]
    fn a_torn_tail_is_ignored_and_a_damaged_record_skipped_without_losing_later_ones() {
        let ids: Vec<ChunkId> = (1..=3).map(|n| ChunkId([n; 16])).collect();
        let mut bytes = log_of(&[
            (ids[0], mark(MarkKind::Committed, 1)),
            (ids[1], mark(MarkKind::Committed, 2)),
            (ids[2], mark(MarkKind::Committed, 3)),
        ]);
        // Damage the second record's body, and tear a fourth append halfway.
        bytes[FILE_HEADER_LEN + RECORD_LEN + 10] ^= 0xff;
        let mut torn = Vec::new();
        encode_record(&ChunkId([9; 16]), &mark(MarkKind::Committed, 9), &mut torn);
        bytes.extend_from_slice(&torn[..20]);
        let loaded = decode(&bytes).unwrap();
        assert_eq!(loaded.damaged, 1);
        assert_eq!(loaded.torn_tail, 20);
        assert!(loaded.marks.contains_key(&ids[0]));
        assert!(!loaded.marks.contains_key(&ids[1]));
        assert!(loaded.marks.contains_key(&ids[2]));
    }

    #[test]
    fn a_bad_header_or_a_newer_version_is_refused() {
        let mut bytes = log_of(&[]);
        assert_eq!(decode(&bytes).map(|l| l.marks.len()), Ok(0));
        bytes[9] ^= 1;
        assert_eq!(decode(&bytes), Err(MarksError::BadHeader));
        let mut newer = b"SIXFMARK".to_vec();
        newer.extend_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&newer);
        newer.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&newer), Err(MarksError::UnsupportedVersion(2)));
        assert_eq!(decode(b"short"), Err(MarksError::BadHeader));
    }

    #[test]
    fn every_record_has_the_documented_size() {
        let mut out = Vec::new();
        encode_record(&ChunkId([1; 16]), &mark(MarkKind::Committed, 1), &mut out);
        assert_eq!(out.len(), 57);
    }
}
