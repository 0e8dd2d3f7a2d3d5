//! Responses, node to gateway. The node answers each request with one header on the same stream:
//! a success header for the request's operation (for `Get`, followed by exactly `length` raw body
//! bytes) or an error header. A failure after a success header was sent (for example a block
//! failing its checksum halfway through a `Get` body) is signalled by resetting the stream with
//! the [`Status`] code as the QUIC application error code: the receiver never mistakes a cut-off
//! body for a complete one.

use crate::WireError;
use crate::facts::{
    InventoryEntry, MAX_INVENTORY_LIMIT, MAX_MARKS, read_facts, read_mark, write_facts, write_mark,
};
use crate::frame::{FrameReader, FrameWriter};
use crate::request::{MAX_LIST_LIMIT, Op, read_meta, write_meta};
use crate::types::{ChunkInfo, ChunkState, NodeInfo, Status};

/// Longest error message carried; longer ones are cut at a character boundary.
pub const MAX_MESSAGE_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The whole chunk is durable; length and crc32c of the whole body, for the gateway to
    /// check against its own.
    Put {
        length: u64,
        crc32c: u32,
    },
    /// `length` body bytes follow, each 1 MiB block verified by the node before sending.
    Get {
        length: u64,
    },
    Delete,
    Stat(ChunkInfo),
    /// One page of chunks; `more` is true when a following page may hold further entries.
    List {
        entries: Vec<ChunkInfo>,
        more: bool,
    },
    NodeInfo(NodeInfo),
    /// The marks recorded (durable on the node); marks for chunks it does not hold are not.
    Mark {
        recorded: u16,
    },
    Inventory {
        entries: Vec<InventoryEntry>,
        more: bool,
    },
    /// Every block and the body crc verified; the chunk's length and crc32c.
    Verify {
        length: u64,
        crc32c: u32,
    },
    Error(ErrorResponse),
}

/// A failed request: what went wrong, for which operation, and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub op: Op,
    /// Never `Status::Ok`.
    pub status: Status,
    /// Status-specific number: the durable length for `Conflict`, the failing block index for
    /// `ChecksumMismatch`, otherwise 0.
    pub detail: u64,
    pub message: String,
}

impl ErrorResponse {
    pub fn new(op: Op, status: Status, detail: u64, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_LEN {
            let mut cut = MAX_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        ErrorResponse {
            op,
            status,
            detail,
            message,
        }
    }
}

impl Response {
    /// The operation this response answers.
    pub fn op(&self) -> Op {
        match self {
            Response::Put { .. } => Op::Put,
            Response::Get { .. } => Op::Get,
            Response::Delete => Op::Delete,
            Response::Stat(_) => Op::Stat,
            Response::List { .. } => Op::List,
            Response::NodeInfo(_) => Op::NodeInfo,
            Response::Mark { .. } => Op::Mark,
            Response::Inventory { .. } => Op::Inventory,
            Response::Verify { .. } => Op::Verify,
            Response::Error(e) => e.op,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Response::Error(e) => e.status,
            _ => Status::Ok,
        }
    }

    /// Body bytes that follow the header on the stream.
    pub fn body_len(&self) -> u64 {
        match self {
            Response::Get { length } => *length,
            _ => 0,
        }
    }

    /// Appends the encoded header to `out`. Panics only on a programming error: an
    /// `ErrorResponse` with `Status::Ok`, or a `List` or `Inventory` page longer than its limit.
    /// A `PutFile` request is answered with `Response::Put` (operation `Put`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = FrameWriter::new(out, self.status().code());
        w.u8(self.op() as u8);
        match self {
            Response::Put { length, crc32c } => {
                w.u64(*length).u32(*crc32c);
            }
            Response::Get { length } => {
                w.u64(*length);
            }
            Response::Delete => {}
            Response::Stat(info) => write_info(&mut w, info),
            Response::List { entries, more } => {
                assert!(
                    entries.len() <= MAX_LIST_LIMIT as usize,
                    "list page too long"
                );
                w.u8(u8::from(*more)).u32(entries.len() as u32);
                for e in entries {
                    write_info(&mut w, e);
                }
            }
            Response::NodeInfo(n) => {
                w.bytes(&n.node_id)
                    .u16(n.shard)
                    .u16(n.shards)
                    .u64(n.capacity)
                    .u64(n.used)
                    .u64(n.chunk_count)
                    .u32(n.in_flight);
            }
            Response::Mark { recorded } => {
                w.u16(*recorded);
            }
            Response::Inventory { entries, more } => {
                assert!(
                    entries.len() <= MAX_INVENTORY_LIMIT as usize,
                    "inventory page too long"
                );
                w.u8(u8::from(*more)).u32(entries.len() as u32);
                for e in entries {
                    write_info(&mut w, &e.info);
                    w.u16(e.header_version);
                    match &e.facts {
                        Some(f) => {
                            w.u8(1);
                            write_facts(&mut w, f);
                        }
                        None => {
                            w.u8(0);
                        }
                    }
                    match &e.mark {
                        Some(m) => {
                            w.u8(1);
                            write_mark(&mut w, m);
                        }
                        None => {
                            w.u8(0);
                        }
                    }
                }
            }
            Response::Verify { length, crc32c } => {
                w.u64(*length).u32(*crc32c);
            }
            Response::Error(e) => {
                assert!(e.status != Status::Ok, "error response with status ok");
                let msg = &e.message.as_bytes()[..e.message.len().min(MAX_MESSAGE_LEN)];
                w.u64(e.detail).u16(msg.len() as u16).bytes(msg);
            }
        }
        w.finish();
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }

    /// Decodes the header at the start of `buf`, returning it and the number of bytes it took.
    pub fn decode(buf: &[u8]) -> Result<(Response, usize), WireError> {
        let (kind, mut r, len) = FrameReader::open(buf)?;
        let status = Status::from_code(kind)?;
        let op = Op::from_code(r.u8("op")?)?;
        let resp = if status != Status::Ok {
            let detail = r.u64("detail")?;
            let n = r.u16("message_len")? as usize;
            if n > MAX_MESSAGE_LEN {
                return Err(WireError::InvalidField {
                    field: "message_len",
                    reason: "longer than 1024 bytes",
                });
            }
            let message = std::str::from_utf8(r.bytes(n, "message")?)
                .map_err(|_| WireError::InvalidField {
                    field: "message",
                    reason: "not UTF-8",
                })?
                .to_owned();
            Response::Error(ErrorResponse {
                op,
                status,
                detail,
                message,
            })
        } else {
            match op {
                // A PutFile succeeds with a Put answer: one success form per outcome keeps
                // every decoded header re-encodable to its own bytes.
                Op::PutFile => {
                    return Err(WireError::InvalidField {
                        field: "op",
                        reason: "a PutFile succeeds with a Put answer",
                    });
                }
                Op::Put => Response::Put {
                    length: r.u64("length")?,
                    crc32c: r.u32("crc32c")?,
                },
                Op::Get => Response::Get {
                    length: r.u64("length")?,
                },
                Op::Delete => Response::Delete,
                Op::Stat => Response::Stat(read_info(&mut r)?),
                Op::List => {
                    let more = match r.u8("more")? {
                        0 => false,
                        1 => true,
                        _ => {
                            return Err(WireError::InvalidField {
                                field: "more",
                                reason: "must be 0 or 1",
                            });
                        }
                    };
                    let count = r.u32("count")?;
                    if count > MAX_LIST_LIMIT {
                        return Err(WireError::InvalidField {
                            field: "count",
                            reason: "more than 512 entries",
                        });
                    }
                    let mut entries = Vec::with_capacity(count as usize);
                    for _ in 0..count {
                        entries.push(read_info(&mut r)?);
                    }
                    Response::List { entries, more }
                }
                Op::Mark => {
                    let recorded = r.u16("recorded")?;
                    if recorded > MAX_MARKS {
                        return Err(WireError::InvalidField {
                            field: "recorded",
                            reason: "more than 256 marks",
                        });
                    }
                    Response::Mark { recorded }
                }
                Op::Inventory => {
                    let more = read_flag(&mut r, "more")?;
                    let count = r.u32("count")?;
                    if count > MAX_INVENTORY_LIMIT {
                        return Err(WireError::InvalidField {
                            field: "count",
                            reason: "more than 24 entries",
                        });
                    }
                    let mut entries = Vec::with_capacity(count as usize);
                    for _ in 0..count {
                        let info = read_info(&mut r)?;
                        let header_version = r.u16("header_version")?;
                        let facts = match read_flag(&mut r, "facts_present")? {
                            true => Some(read_facts(&mut r)?),
                            false => None,
                        };
                        let mark = match read_flag(&mut r, "mark_present")? {
                            true => Some(read_mark(&mut r)?),
                            false => None,
                        };
                        entries.push(InventoryEntry {
                            info,
                            header_version,
                            facts,
                            mark,
                        });
                    }
                    Response::Inventory { entries, more }
                }
                Op::Verify => Response::Verify {
                    length: r.u64("length")?,
                    crc32c: r.u32("crc32c")?,
                },
                Op::NodeInfo => Response::NodeInfo(NodeInfo {
                    node_id: r.id("node_id")?,
                    shard: r.u16("shard")?,
                    shards: r.u16("shards")?,
                    capacity: r.u64("capacity")?,
                    used: r.u64("used")?,
                    chunk_count: r.u64("chunk_count")?,
                    in_flight: r.u32("in_flight")?,
                }),
            }
        };
        r.end()?;
        Ok((resp, len))
    }
}

fn read_flag(r: &mut FrameReader<'_>, field: &'static str) -> Result<bool, WireError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(WireError::InvalidField {
            field,
            reason: "must be 0 or 1",
        }),
    }
}

fn write_info(w: &mut FrameWriter<'_>, info: &ChunkInfo) {
    w.bytes(&info.chunk_id);
    write_meta(w, &info.meta);
    w.u64(info.durable_len)
        .u32(info.crc32c)
        .u8(info.state as u8);
}

fn read_info(r: &mut FrameReader<'_>) -> Result<ChunkInfo, WireError> {
    let chunk_id = r.id("chunk_id")?;
    let meta = read_meta(r)?;
    let durable_len = r.u64("durable_len")?;
    let crc32c = r.u32("crc32c")?;
    let state = ChunkState::from_code(r.u8("state")?)?;
    if durable_len > meta.length {
        return Err(WireError::InvalidField {
            field: "durable_len",
            reason: "longer than the chunk",
        });
    }
    Ok(ChunkInfo {
        chunk_id,
        meta,
        durable_len,
        crc32c,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PREFIX_LEN;

    const CHUNK_INFO_LEN: usize = 16 + 16 + 4 + 4 + 8 + 8 + 8 + 4 + 1;

    #[test]
    fn a_full_list_page_fits_in_a_header() {
        let info = ChunkInfo {
            chunk_id: [1; 16],
            meta: crate::ChunkMeta {
                file_id: [2; 16],
                part_index: 0,
                part_count: 1,
                file_offset: 0,
                length: 9,
            },
            durable_len: 9,
            crc32c: 3,
            state: ChunkState::Complete,
        };
        let one = Response::List {
            entries: vec![info],
            more: false,
        }
        .to_vec()
        .len();
        let none = Response::List {
            entries: vec![],
            more: false,
        }
        .to_vec()
        .len();
        assert_eq!(one - none, CHUNK_INFO_LEN);
        let max =
            crate::frame::PREFIX_LEN + 1 + 1 + 4 + CHUNK_INFO_LEN * MAX_LIST_LIMIT as usize + 4;
        assert!(max <= crate::frame::MAX_HEADER_LEN, "{max}");
    }

    #[test]
    fn a_put_file_succeeds_only_as_a_put() {
        let put = Response::Put {
            length: 5,
            crc32c: 6,
        }
        .to_vec();
        assert_eq!(put[PREFIX_LEN], Op::Put as u8);
        // The same success header naming PutFile (the fuzzer's find): refused, since it would
        // re-encode as a Put.
        let mut file = put.clone();
        file[PREFIX_LEN] = Op::PutFile as u8;
        let at = file.len() - 4;
        let crc = crc32c::crc32c(&file[..at]);
        file[at..].copy_from_slice(&crc.to_le_bytes());
        assert!(Response::decode(&file).is_err());
        // Errors of a PutFile name it.
        let e = Response::Error(ErrorResponse::new(Op::PutFile, Status::DiskFull, 0, "full"));
        assert_eq!(Response::decode(&e.to_vec()).unwrap().0, e);
    }

    #[test]
    fn a_full_inventory_page_of_longest_names_fits_in_a_header() {
        let long = "n".repeat(crate::facts::MAX_FACT_LEN);
        let entry = InventoryEntry {
            info: ChunkInfo {
                chunk_id: [1; 16],
                meta: crate::ChunkMeta {
                    file_id: [2; 16],
                    part_index: 0,
                    part_count: 1,
                    file_offset: 0,
                    length: 9,
                },
                durable_len: 9,
                crc32c: 3,
                state: ChunkState::Complete,
            },
            header_version: 2,
            facts: Some(crate::FileFacts {
                name: long.clone(),
                content_type: Some(long),
                created_unix_ms: 5,
            }),
            mark: Some(crate::Mark {
                kind: crate::MarkKind::Committed,
                file_size: 9,
                checksum: [7; 16],
                unix_ms: 6,
            }),
        };
        let page = Response::Inventory {
            entries: vec![entry; MAX_INVENTORY_LIMIT as usize],
            more: true,
        };
        let bytes = page.to_vec();
        assert!(
            bytes.len() <= crate::frame::MAX_HEADER_LEN,
            "{}",
            bytes.len()
        );
        assert_eq!(Response::decode(&bytes).unwrap().0, page);
    }
}
