//! Requests, gateway to node. One request per bidirectional QUIC stream: this header, then (for
//! `Put`) exactly `body_len()` raw body bytes, then the end of the stream.

use crate::WireError;
use crate::frame::{FrameReader, FrameWriter};
use crate::types::{ChunkId, ChunkMeta};

/// Most entries one `List` page may ask for; keeps the response header bounded.
pub const MAX_LIST_LIMIT: u32 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Put = 1,
    Get = 2,
    Delete = 3,
    Stat = 4,
    List = 5,
    NodeInfo = 6,
}

impl Op {
    pub fn from_code(code: u8) -> Result<Self, WireError> {
        Ok(match code {
            1 => Op::Put,
            2 => Op::Get,
            3 => Op::Delete,
            4 => Op::Stat,
            5 => Op::List,
            6 => Op::NodeInfo,
            other => return Err(WireError::UnknownOp(other)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Delete => "delete",
            Op::Stat => "stat",
            Op::List => "list",
            Op::NodeInfo => "node_info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store a chunk's body from `resume_from` to its end. `resume_from` is 0 to create, or the
    /// chunk's durable length to continue an interrupted put.
    Put {
        chunk_id: ChunkId,
        meta: ChunkMeta,
        resume_from: u64,
    },
    /// Read `len` bytes of a complete chunk starting at `offset`.
    Get {
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    },
    Delete {
        chunk_id: ChunkId,
    },
    Stat {
        chunk_id: ChunkId,
    },
    /// Chunks in ascending id order, strictly after `after`, at most `limit`.
    List {
        after: Option<ChunkId>,
        limit: u32,
    },
    NodeInfo,
}

impl Request {
    pub fn op(&self) -> Op {
        match self {
            Request::Put { .. } => Op::Put,
            Request::Get { .. } => Op::Get,
            Request::Delete { .. } => Op::Delete,
            Request::Stat { .. } => Op::Stat,
            Request::List { .. } => Op::List,
            Request::NodeInfo => Op::NodeInfo,
        }
    }

    /// The chunk the request is about, which decides the shard that must serve it.
    pub fn chunk_id(&self) -> Option<&ChunkId> {
        match self {
            Request::Put { chunk_id, .. }
            | Request::Get { chunk_id, .. }
            | Request::Delete { chunk_id }
            | Request::Stat { chunk_id } => Some(chunk_id),
            Request::List { .. } | Request::NodeInfo => None,
        }
    }

    /// Body bytes that follow the header on the stream.
    pub fn body_len(&self) -> u64 {
        match self {
            Request::Put {
                meta, resume_from, ..
            } => meta.length - resume_from,
            _ => 0,
        }
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = FrameWriter::new(out, self.op() as u8);
        match self {
            Request::Put {
                chunk_id,
                meta,
                resume_from,
            } => {
                w.bytes(chunk_id);
                write_meta(&mut w, meta);
                w.u64(*resume_from);
            }
            Request::Get {
                chunk_id,
                offset,
                len,
            } => {
                w.bytes(chunk_id).u64(*offset).u64(*len);
            }
            Request::Delete { chunk_id } | Request::Stat { chunk_id } => {
                w.bytes(chunk_id);
            }
            Request::List { after, limit } => {
                match after {
                    Some(id) => w.u8(1).bytes(id),
                    None => w.u8(0).bytes(&[0; 16]),
                };
                w.u32(*limit);
            }
            Request::NodeInfo => {}
        }
        w.finish();
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(96);
        self.encode(&mut v);
        v
    }

    /// Decodes the header at the start of `buf`, returning it and the number of bytes it took;
    /// the body (if any) starts right after.
    pub fn decode(buf: &[u8]) -> Result<(Request, usize), WireError> {
        let (kind, mut r, len) = FrameReader::open(buf)?;
        let req = match Op::from_code(kind)? {
            Op::Put => {
                let chunk_id = r.id("chunk_id")?;
                let meta = read_meta(&mut r)?;
                let resume_from = r.u64("resume_from")?;
                if resume_from > meta.length {
                    return Err(WireError::InvalidField {
                        field: "resume_from",
                        reason: "past the end of the chunk",
                    });
                }
                Request::Put {
                    chunk_id,
                    meta,
                    resume_from,
                }
            }
            Op::Get => {
                let chunk_id = r.id("chunk_id")?;
                let offset = r.u64("offset")?;
                let len = r.u64("len")?;
                if offset.checked_add(len).is_none() {
                    return Err(WireError::InvalidField {
                        field: "len",
                        reason: "offset + len overflows",
                    });
                }
                Request::Get {
                    chunk_id,
                    offset,
                    len,
                }
            }
            Op::Delete => Request::Delete {
                chunk_id: r.id("chunk_id")?,
            },
            Op::Stat => Request::Stat {
                chunk_id: r.id("chunk_id")?,
            },
            Op::List => {
                let has_after = r.u8("after_present")?;
                let id = r.id("after")?;
                let after = match has_after {
                    0 if id == [0; 16] => None,
                    1 => Some(id),
                    _ => {
                        return Err(WireError::InvalidField {
                            field: "after",
                            reason: "presence flag must be 0 (with zero id) or 1",
                        });
                    }
                };
                let limit = r.u32("limit")?;
                if limit == 0 || limit > MAX_LIST_LIMIT {
                    return Err(WireError::InvalidField {
                        field: "limit",
                        reason: "must be 1..=512",
                    });
                }
                Request::List { after, limit }
            }
            Op::NodeInfo => Request::NodeInfo,
        };
        r.end()?;
        Ok((req, len))
    }
}

pub(crate) fn write_meta(w: &mut FrameWriter<'_>, m: &ChunkMeta) {
    w.bytes(&m.file_id)
        .u32(m.part_index)
        .u32(m.part_count)
        .u64(m.file_offset)
        .u64(m.length);
}

pub(crate) fn read_meta(r: &mut FrameReader<'_>) -> Result<ChunkMeta, WireError> {
    let meta = ChunkMeta {
        file_id: r.id("file_id")?,
        part_index: r.u32("part_index")?,
        part_count: r.u32("part_count")?,
        file_offset: r.u64("file_offset")?,
        length: r.u64("length")?,
    };
    if meta.part_index >= meta.part_count {
        return Err(WireError::InvalidField {
            field: "part_index",
            reason: "must be below part_count",
        });
    }
    if meta.file_offset.checked_add(meta.length).is_none() {
        return Err(WireError::InvalidField {
            field: "length",
            reason: "file_offset + length overflows",
        });
    }
    Ok(meta)
}
