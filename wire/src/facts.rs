//! What a rebuild of the gateway's metadata needs from the nodes: the file facts a chunk's
//! header keeps (sent with `PutFile`), the commit marks the gateway sends after a commit
//! (`Mark`), and the inventory entries that report both (`Inventory`).

use crate::WireError;
use crate::frame::{FrameReader, FrameWriter};
use crate::types::{ChunkId, ChunkInfo};

/// Longest file name and content type carried, in bytes (the gateway's own limit on names).
pub const MAX_FACT_LEN: usize = 1024;
/// Most commit marks one `Mark` request carries.
pub const MAX_MARKS: u16 = 256;
/// Most entries one `Inventory` page may ask for: every entry may carry two 1 KiB strings, and
/// the page must fit one header.
pub const MAX_INVENTORY_LIMIT: u32 = 24;

/// The file a chunk belongs to, as the upload knew it when the chunk was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub name: String,
    pub content_type: Option<String>,
    /// When the upload began (unix milliseconds).
    pub created_unix_ms: u64,
}

/// What happened to a chunk's file after the chunk was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MarkKind {
    /// The file was committed (its upload answered, or was about to answer, 201).
    Committed = 1,
    /// The file was deleted.
    Deleted = 2,
}

impl MarkKind {
    pub fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(MarkKind::Committed),
            2 => Ok(MarkKind::Deleted),
            _ => Err(WireError::InvalidField {
                field: "mark kind",
                reason: "must be 1 (committed) or 2 (deleted)",
            }),
        }
    }
}

/// A commit mark: what a chunk's file became, with the facts only known at its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub kind: MarkKind,
    /// The committed file's size (a streamed form's parts may hold more than the file).
    pub file_size: u64,
    /// xxh3-128 of the whole file, big-endian bytes; zero for `Deleted`.
    pub checksum: [u8; 16],
    /// When the file was committed or deleted (unix milliseconds).
    pub unix_ms: u64,
}

/// One entry of a `Mark` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMark {
    pub chunk_id: ChunkId,
    pub mark: Mark,
}

/// One chunk as `Inventory` reports it: its stat, the header version, the facts of a version 2
/// header, and its latest commit mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    pub info: ChunkInfo,
    pub header_version: u16,
    pub facts: Option<FileFacts>,
    pub mark: Option<Mark>,
}

pub(crate) fn write_facts(w: &mut FrameWriter<'_>, f: &FileFacts) {
    write_str(w, &f.name);
    match &f.content_type {
        Some(ct) => {
            w.u8(1);
            write_str(w, ct);
        }
        None => {
            w.u8(0).u16(0);
        }
    }
    w.u64(f.created_unix_ms);
}

pub(crate) fn read_facts(r: &mut FrameReader<'_>) -> Result<FileFacts, WireError> {
    let name = read_str(r, "name")?;
    let present = r.u8("content_type_present")?;
    let ct = read_str(r, "content_type")?;
    let content_type = match present {
        0 if ct.is_empty() => None,
        1 => Some(ct),
        _ => {
            return Err(WireError::InvalidField {
                field: "content_type_present",
                reason: "must be 0 (with an empty string) or 1",
            });
        }
    };
    Ok(FileFacts {
        name,
        content_type,
        created_unix_ms: r.u64("created_unix_ms")?,
    })
}

pub(crate) fn write_mark(w: &mut FrameWriter<'_>, m: &Mark) {
    w.u8(m.kind as u8)
        .u64(m.file_size)
        .bytes(&m.checksum)
        .u64(m.unix_ms);
}

pub(crate) fn read_mark(r: &mut FrameReader<'_>) -> Result<Mark, WireError> {
    Ok(Mark {
        kind: MarkKind::from_code(r.u8("mark kind")?)?,
        file_size: r.u64("file_size")?,
        checksum: r.id("checksum")?,
        unix_ms: r.u64("unix_ms")?,
    })
}

/// A string that is too long is cut at a character boundary: encoding never fails, and the
/// gateway refuses longer names before any chunk is written.
fn write_str(w: &mut FrameWriter<'_>, s: &str) {
    let mut end = s.len().min(MAX_FACT_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    w.u16(end as u16).bytes(&s.as_bytes()[..end]);
}

fn read_str(r: &mut FrameReader<'_>, field: &'static str) -> Result<String, WireError> {
    let n = r.u16(field)? as usize;
    if n > MAX_FACT_LEN {
        return Err(WireError::InvalidField {
            field,
            reason: "longer than 1024 bytes",
        });
    }
    std::str::from_utf8(r.bytes(n, field)?)
        .map(str::to_owned)
        .map_err(|_| WireError::InvalidField {
            field,
            reason: "not UTF-8",
        })
}
