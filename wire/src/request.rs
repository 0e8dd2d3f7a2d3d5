//! Requests, gateway to node. One request per bidirectional QUIC stream: this header, then (for
//! `Put`) exactly `body_len()` raw body bytes, then the end of the stream.

use crate::WireError;
use crate::facts::{
    ChunkMark, FileFacts, MAX_INVENTORY_LIMIT, MAX_MARKS, read_facts, read_mark, write_facts,
    write_mark,
};
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
    /// A `Put` that also records the file's facts in the chunk header (version 2 chunks).
    PutFile = 7,
    Mark = 8,
    Inventory = 9,
    Verify = 10,
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
            7 => Op::PutFile,
            8 => Op::Mark,
            9 => Op::Inventory,
            10 => Op::Verify,
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
            Op::PutFile => "put_file",
            Op::Mark => "mark",
            Op::Inventory => "inventory",
            Op::Verify => "verify",
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
        /// Sent as `PutFile` when present; a node keeps them in the chunk's header so that the
        /// gateway's metadata can be rebuilt from the nodes. A resumed put keeps the facts the
        /// chunk was created with.
        facts: Option<FileFacts>,
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
    /// Records commit marks, durably, for chunks of the receiving shard. Chunks the node does
    /// not hold are skipped (the answer counts those recorded).
    Mark {
        marks: Vec<ChunkMark>,
    },
    /// Like `List`, with the facts of each chunk's header and its latest commit mark.
    Inventory {
        after: Option<ChunkId>,
        limit: u32,
    },
    /// Reads a Complete chunk whole and checks every block and the body crc against its
    /// header, without sending the bytes.
    Verify {
        chunk_id: ChunkId,
    },
}

impl Request {
    pub fn op(&self) -> Op {
        match self {
            Request::Put { facts: None, .. } => Op::Put,
            Request::Put { facts: Some(_), .. } => Op::PutFile,
            Request::Get { .. } => Op::Get,
            Request::Delete { .. } => Op::Delete,
            Request::Stat { .. } => Op::Stat,
            Request::List { .. } => Op::List,
            Request::NodeInfo => Op::NodeInfo,
            Request::Mark { .. } => Op::Mark,
            Request::Inventory { .. } => Op::Inventory,
            Request::Verify { .. } => Op::Verify,
        }
    }

    /// The chunk the request is about, which decides the shard that must serve it.
    pub fn chunk_id(&self) -> Option<&ChunkId> {
        match self {
            Request::Put { chunk_id, .. }
            | Request::Get { chunk_id, .. }
            | Request::Delete { chunk_id }
            | Request::Stat { chunk_id }
            | Request::Verify { chunk_id } => Some(chunk_id),
            // Every mark of one request must belong to the same shard (the node checks).
            Request::Mark { marks } => marks.first().map(|m| &m.chunk_id),
            Request::List { .. } | Request::Inventory { .. } | Request::NodeInfo => None,
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

    /// Appends the encoded header to `out`. Panics only on a programming error: a `Mark`
    /// request with no mark or more than [`MAX_MARKS`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Request::Mark { marks } = self {
            assert!(
                !marks.is_empty() && marks.len() <= usize::from(MAX_MARKS),
                "a mark request carries 1..=256 marks"
            );
        }
        let mut w = FrameWriter::new(out, self.op() as u8);
        match self {
            Request::Put {
                chunk_id,
                meta,
                resume_from,
                facts,
            } => {
                w.bytes(chunk_id);
                write_meta(&mut w, meta);
                w.u64(*resume_from);
                if let Some(f) = facts {
                    write_facts(&mut w, f);
                }
            }
            Request::Get {
                chunk_id,
                offset,
                len,
            } => {
                w.bytes(chunk_id).u64(*offset).u64(*len);
            }
            Request::Delete { chunk_id }
            | Request::Stat { chunk_id }
            | Request::Verify { chunk_id } => {
                w.bytes(chunk_id);
            }
            Request::Mark { marks } => {
                w.u16(marks.len() as u16);
                for m in marks {
                    w.bytes(&m.chunk_id);
                    write_mark(&mut w, &m.mark);
                }
            }
            Request::List { after, limit } | Request::Inventory { after, limit } => {
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
        let op = Op::from_code(kind)?;
        let req = match op {
            Op::Put | Op::PutFile => {
                let chunk_id = r.id("chunk_id")?;
                let meta = read_meta(&mut r)?;
                let resume_from = r.u64("resume_from")?;
                if resume_from > meta.length {
                    return Err(WireError::InvalidField {
                        field: "resume_from",
                        reason: "past the end of the chunk",
                    });
                }
                let facts = match op {
                    Op::PutFile => Some(read_facts(&mut r)?),
                    _ => None,
                };
                Request::Put {
                    chunk_id,
                    meta,
                    resume_from,
                    facts,
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
                let after = read_after(&mut r)?;
                let limit = r.u32("limit")?;
                if limit == 0 || limit > MAX_LIST_LIMIT {
                    return Err(WireError::InvalidField {
                        field: "limit",
                        reason: "must be 1..=512",
                    });
                }
                Request::List { after, limit }
            }
            Op::Inventory => {
                let after = read_after(&mut r)?;
                let limit = r.u32("limit")?;
                if limit == 0 || limit > MAX_INVENTORY_LIMIT {
                    return Err(WireError::InvalidField {
                        field: "limit",
                        reason: "must be 1..=24",
                    });
                }
                Request::Inventory { after, limit }
            }
            Op::NodeInfo => Request::NodeInfo,
            Op::Verify => Request::Verify {
                chunk_id: r.id("chunk_id")?,
            },
            Op::Mark => {
                let count = r.u16("count")?;
                if count == 0 || count > MAX_MARKS {
                    return Err(WireError::InvalidField {
                        field: "count",
                        reason: "must be 1..=256",
                    });
                }
                let mut marks = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    marks.push(ChunkMark {
                        chunk_id: r.id("chunk_id")?,
                        mark: read_mark(&mut r)?,
                    });
                }
                Request::Mark { marks }
            }
        };
        r.end()?;
        Ok((req, len))
    }
}

fn read_after(r: &mut FrameReader<'_>) -> Result<Option<ChunkId>, WireError> {
    let has_after = r.u8("after_present")?;
    let id = r.id("after")?;
    match has_after {
        0 if id == [0; 16] => Ok(None),
        1 => Ok(Some(id)),
        _ => Err(WireError::InvalidField {
            field: "after",
            reason: "presence flag must be 0 (with zero id) or 1",
        }),
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
