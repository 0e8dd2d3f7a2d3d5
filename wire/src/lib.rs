//! # sixfold-wire: the protocol between the gateway and storage nodes
//!
//! Pure code: message types and their binary encoding, no I/O and no runtime. The gateway and
//! the node both use it, and it is the fuzzing target. The byte-level specification, written so
//! a third party can implement it, is `PROTOCOL.md` in this crate.
//!
//! One request per bidirectional QUIC stream: the client writes a request header
//! ([`Request::encode`]) followed by the request's raw body bytes and finishes its side; the
//! node answers with a response header ([`Response::encode`]) followed by the response's raw
//! body bytes. Body bytes are never framed or copied by this crate: a reader decodes the header
//! and hands everything after it to the data path untouched.
//!
//! Decoding any byte string yields either a message or a [`WireError`]; it never panics.

pub mod crc;
mod error;
mod facts;
mod frame;
pub mod registration;
mod request;
mod response;
mod shard;
mod types;

pub use error::WireError;
pub use facts::{
    ChunkMark, FileFacts, InventoryEntry, MAX_FACT_LEN, MAX_INVENTORY_LIMIT, MAX_MARKS, Mark,
    MarkKind,
};
pub use frame::{MAX_HEADER_LEN, MIN_HEADER_LEN, PREFIX_LEN, PROTOCOL_VERSION, header_len};
pub use request::{MAX_LIST_LIMIT, Op, Request};
pub use response::{ErrorResponse, MAX_MESSAGE_LEN, Response};
pub use shard::shard_for;
pub use types::{ChunkId, ChunkInfo, ChunkMeta, ChunkState, FileId, NodeInfo, Status};

/// The ALPN protocol name both ends of a QUIC connection must offer.
pub const ALPN: &[u8] = b"sixfold/1";
/// Size of the blocks each of which carries its own crc32c on a node.
pub const CHECKSUM_BLOCK: u64 = 1 << 20;

/// Result of feeding a growing buffer to a decoder: either more bytes are needed, or a message
/// and the number of bytes its header took.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    NeedMore(usize),
    Message(T, usize),
}

/// Decodes a request from the front of `buf` if it holds a whole header. A stream reader calls
/// this as bytes arrive; `NeedMore(n)` says the header is `n` bytes in total (or at least
/// [`PREFIX_LEN`] while the prefix is incomplete).
pub fn try_decode_request(buf: &[u8]) -> Result<Decoded<Request>, WireError> {
    try_decode(buf, Request::decode)
}

/// Same as [`try_decode_request`] for responses.
pub fn try_decode_response(buf: &[u8]) -> Result<Decoded<Response>, WireError> {
    try_decode(buf, Response::decode)
}

/// A whole-header decoder: the message and the number of bytes its header took.
type DecodeFn<T> = fn(&[u8]) -> Result<(T, usize), WireError>;

fn try_decode<T>(buf: &[u8], decode: DecodeFn<T>) -> Result<Decoded<T>, WireError> {
    if buf.len() < PREFIX_LEN {
        return Ok(Decoded::NeedMore(PREFIX_LEN));
    }
    let len = header_len(buf)?;
    if buf.len() < len {
        return Ok(Decoded::NeedMore(len));
    }
    let (msg, used) = decode(buf)?;
    Ok(Decoded::Message(msg, used))
}
