//! Reading a request header off a stream. Chunks arrive as QUIC delivers them: the header can
//! be split over several, and the first body bytes of a `Put` usually share a chunk with it.
//! [`HeaderAssembler`] is the sans-IO core (tested here); [`read_request`] feeds it from a
//! stream with a deadline.

use std::time::Duration;

use bytes::Bytes;
use sixfold_wire::{Decoded, Request, WireError, try_decode_request};

use crate::quic::{RecvStream, StreamError};

/// Longest wait for a complete header after a stream opens.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes asked of the stream per read; QUIC hands out what it has, up to this.
pub const READ_MAX: usize = 1 << 20;

/// Collects header bytes until a whole header decodes. Only a header that spans chunks is
/// copied (into a buffer bounded by the wire's header limit); the bytes after the header are
/// returned as a slice of the chunk they came in.
#[derive(Debug, Default)]
pub struct HeaderAssembler {
    buf: Vec<u8>,
}

/// A header that cannot be decoded; `kind` is its kind byte when it got that far, so the error
/// answer can name the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub kind: Option<u8>,
    pub error: WireError,
}

const KIND_OFFSET: usize = 6;

impl HeaderAssembler {
    /// Feeds the next chunk. `Ok(Some((request, rest)))` once the header is complete, `rest`
    /// being the bytes after it in this chunk; `Ok(None)` if more bytes are needed.
    pub fn push(&mut self, mut chunk: Bytes) -> Result<Option<(Request, Bytes)>, Malformed> {
        if self.buf.is_empty() {
            return match try_decode_request(&chunk) {
                Ok(Decoded::Message(request, used)) => Ok(Some((request, chunk.slice(used..)))),
                Ok(Decoded::NeedMore(_)) => {
                    // The decoder wants more than the chunk holds: all of it is header.
                    self.buf.extend_from_slice(&chunk);
                    Ok(None)
                }
                Err(error) => Err(Malformed {
                    kind: chunk.get(KIND_OFFSET).copied(),
                    error,
                }),
            };
        }
        loop {
            match try_decode_request(&self.buf) {
                Ok(Decoded::Message(request, _)) => return Ok(Some((request, chunk))),
                Ok(Decoded::NeedMore(needed)) => {
                    if chunk.is_empty() {
                        return Ok(None);
                    }
                    // `needed` is bounded by the wire's header limit (checked by the decoder).
                    let take = (needed - self.buf.len()).min(chunk.len());
                    self.buf.extend_from_slice(&chunk.split_to(take));
                }
                Err(error) => {
                    return Err(Malformed {
                        kind: self.buf.get(KIND_OFFSET).copied(),
                        error,
                    });
                }
            }
        }
    }

    /// Header bytes held so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The kind byte, if it arrived.
    pub fn kind(&self) -> Option<u8> {
        self.buf.get(KIND_OFFSET).copied()
    }
}

/// Why no request came off a stream.
#[derive(Debug)]
pub enum HeaderFailure {
    Malformed(Malformed),
    /// The client finished the stream before a whole header.
    Truncated {
        received: usize,
        kind: Option<u8>,
    },
    /// No whole header within [`HEADER_TIMEOUT`].
    TimedOut {
        kind: Option<u8>,
    },
    /// The stream was reset or the connection lost.
    Stream(StreamError),
}

/// Reads the request header; returns it with the body bytes that came along.
pub async fn read_request(recv: &mut RecvStream) -> Result<(Request, Bytes), HeaderFailure> {
    let mut assembler = HeaderAssembler::default();
    let read = async {
        loop {
            match recv.read_chunk(READ_MAX).await {
                Ok(Some(chunk)) => {
                    if let Some(done) = assembler.push(chunk).map_err(HeaderFailure::Malformed)? {
                        return Ok(done);
                    }
                }
                Ok(None) => {
                    return Err(HeaderFailure::Truncated {
                        received: assembler.buffered(),
                        kind: assembler.kind(),
                    });
                }
                Err(e) => return Err(HeaderFailure::Stream(e)),
            }
        }
    };
    match monoio::time::timeout(HEADER_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(HeaderFailure::TimedOut {
            kind: assembler.kind(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use sixfold_wire::{ChunkMeta, Op};

    use super::*;

    fn put_header() -> Vec<u8> {
        Request::Put {
            chunk_id: [3; 16],
            meta: ChunkMeta {
                file_id: [4; 16],
                part_index: 0,
                part_count: 1,
                file_offset: 0,
                length: 10,
            },
            resume_from: 0,
            facts: None,
        }
        .to_vec()
    }

    #[test]
    fn header_and_body_in_one_chunk_split_without_copy() {
        let mut bytes = put_header();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"0123456789");
        let chunk = Bytes::from(bytes);
        let (req, rest) = HeaderAssembler::default()
            .push(chunk.clone())
            .unwrap()
            .unwrap();
        assert_eq!(req.op(), Op::Put);
        assert_eq!(&rest[..], b"0123456789");
        // `rest` points into the received chunk: no copy was made.
        assert_eq!(rest.as_ptr(), chunk[header_len..].as_ptr());
    }

    #[test]
    fn header_split_at_every_position_reassembles() {
        let header = put_header();
        let mut all = header.clone();
        all.extend_from_slice(b"body");
        for cut1 in 1..all.len() {
            for cut2 in [cut1, (cut1 + 7).min(all.len()), all.len()] {
                let mut a = HeaderAssembler::default();
                let mut result = None;
                for piece in [&all[..cut1], &all[cut1..cut2], &all[cut2..]] {
                    if result.is_none() {
                        result = a.push(Bytes::copy_from_slice(piece)).unwrap();
                    } else {
                        // Bytes after the header chunk are body; collect them too.
                        let (r, rest): (Request, Bytes) = result.take().unwrap();
                        let mut v = rest.to_vec();
                        v.extend_from_slice(piece);
                        result = Some((r, Bytes::from(v)));
                    }
                }
                let (req, rest) = result.unwrap_or_else(|| panic!("cuts {cut1} {cut2}"));
                assert_eq!(req.to_vec(), header, "cuts {cut1} {cut2}");
                assert_eq!(&rest[..], b"body", "cuts {cut1} {cut2}");
            }
        }
    }

    #[test]
    fn incomplete_header_waits_for_more() {
        let header = put_header();
        let mut a = HeaderAssembler::default();
        assert_eq!(a.push(Bytes::copy_from_slice(&header[..5])), Ok(None));
        assert_eq!(a.kind(), None);
        assert_eq!(a.push(Bytes::copy_from_slice(&header[5..20])), Ok(None));
        assert_eq!(a.kind(), Some(Op::Put as u8));
        assert_eq!(a.buffered(), 20);
        assert_eq!(a.push(Bytes::new()), Ok(None));
    }

    #[test]
    fn malformed_headers_report_their_kind() {
        let mut header = put_header();
        let last = header.len() - 1;
        header[last] ^= 0xff;
        let err = HeaderAssembler::default()
            .push(Bytes::from(header.clone()))
            .unwrap_err();
        assert_eq!(err.kind, Some(Op::Put as u8));
        assert!(matches!(err.error, WireError::HeaderChecksum { .. }));
        // Same when the bad header arrives in pieces.
        let mut a = HeaderAssembler::default();
        assert_eq!(a.push(Bytes::copy_from_slice(&header[..30])), Ok(None));
        let err = a.push(Bytes::copy_from_slice(&header[30..])).unwrap_err();
        assert_eq!(err.kind, Some(Op::Put as u8));
        // Garbage is refused as soon as the prefix is in.
        let err = HeaderAssembler::default()
            .push(Bytes::from_static(b"GET / HTTP/1.1\r\n"))
            .unwrap_err();
        assert!(matches!(err.error, WireError::BadMagic(_)));
    }
}
