//! One request on one bidirectional stream: the request header, the request body (puts only),
//! the response header, and the response body (gets only). Bodies move as `Bytes` handed
//! straight to and from quinn, never copied here.

use bytes::Bytes;
use futures_util::Stream;
use quinn::{ReadError, RecvStream, SendStream, VarInt, WriteError};
use sixfold_wire::{
    ChunkId, ChunkMeta, Decoded, FileFacts, Op, Request, Response, Status, WireError,
    try_decode_response,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::NodeError;

/// The node's acknowledgement of a durable part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutAck {
    /// Length of the whole chunk body, as stored.
    pub length: u64,
    /// crc32c of the whole chunk body, as stored.
    pub crc32c: u32,
}

/// Code the gateway resets a put's stream with when it abandons the upload.
const ABANDONED: u8 = Status::Internal as u8;

/// A request stream's sending half that is reset, not finished, if dropped before the request
/// was completely sent: a cancelled upload must never look like a complete (short) body.
struct Outgoing {
    stream: Option<SendStream>,
}

impl Outgoing {
    fn new(stream: SendStream) -> Self {
        Self {
            stream: Some(stream),
        }
    }

    fn get(&mut self) -> Result<&mut SendStream, NodeError> {
        self.stream
            .as_mut()
            .ok_or_else(|| NodeError::Stream("request stream already closed".into()))
    }

    fn finish(&mut self) -> Result<(), NodeError> {
        if let Some(mut s) = self.stream.take() {
            s.finish()
                .map_err(|e| NodeError::Stream(format!("finishing the request: {e}")))?;
        }
        Ok(())
    }

    fn abandon(&mut self) {
        if let Some(mut s) = self.stream.take() {
            // Already closed by the peer is fine: either way the node sees no complete body.
            let _ = s.reset(VarInt::from(ABANDONED));
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.abandon();
    }
}

async fn with_deadline<T>(
    deadline: Instant,
    fut: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| NodeError::Timeout)?
}

async fn write_header(send: &mut SendStream, req: &Request) -> Result<(), NodeError> {
    let header = req.to_vec();
    send.write_all(&header).await.map_err(write_error)
}

fn write_error(e: WriteError) -> NodeError {
    match e {
        WriteError::Stopped(code) => {
            NodeError::Stream(format!("node stopped reading (code {code})"))
        }
        other => NodeError::Stream(other.to_string()),
    }
}

/// A stream reset by the node carries the status code as its application error code.
fn reset_error(code: VarInt, got: u64) -> NodeError {
    let status = u8::try_from(code.into_inner())
        .ok()
        .and_then(|c| Status::from_code(c).ok())
        .filter(|s| *s != Status::Ok)
        .unwrap_or(Status::Internal);
    NodeError::Status {
        status,
        detail: 0,
        message: format!("node reset the stream after {got} body bytes (code {code})"),
    }
}

fn read_error(e: ReadError, got: u64) -> NodeError {
    match e {
        ReadError::Reset(code) => reset_error(code, got),
        other => NodeError::Stream(other.to_string()),
    }
}

/// Reads exactly one response header, never consuming body bytes after it.
async fn read_header(recv: &mut RecvStream, op: Op) -> Result<Response, NodeError> {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let response = loop {
        match try_decode_response(&buf)? {
            Decoded::Message(resp, _) => break resp,
            Decoded::NeedMore(total) => {
                let want = total.saturating_sub(buf.len()).max(1);
                match recv.read_chunk(want, true).await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                    Ok(None) => {
                        return Err(NodeError::Stream(format!(
                            "stream ended after {} bytes of the response header",
                            buf.len()
                        )));
                    }
                    Err(e) => return Err(read_error(e, 0)),
                }
            }
        }
    };
    // A `PutFile` succeeds with a `Put` answer; its errors name `PutFile`.
    let answers = response.op() == op || (op == Op::PutFile && response.op() == Op::Put);
    if !answers {
        return Err(NodeError::Protocol(WireError::InvalidField {
            field: "op",
            reason: "the response answers another operation",
        }));
    }
    match response {
        Response::Error(e) => Err(NodeError::Status {
            status: e.status,
            detail: e.detail,
            message: e.message,
        }),
        ok => Ok(ok),
    }
}

fn unexpected(op: Op) -> NodeError {
    NodeError::Protocol(WireError::InvalidField {
        field: "op",
        reason: match op {
            Op::Put => "expected a put response",
            Op::Get => "expected a get response",
            Op::Delete => "expected a delete response",
            Op::Stat => "expected a stat response",
            Op::List => "expected a list response",
            Op::NodeInfo => "expected a node info response",
            Op::PutFile => "expected a put response",
            Op::Mark => "expected a mark response",
            Op::Inventory => "expected an inventory response",
            Op::Verify => "expected a verify response",
        },
    })
}

/// Sends a put: header by `deadline`, then exactly `meta.length - resume_from` body bytes,
/// `first` and then those from `body` (paced by flow control only), then waits at most
/// `timeout` after the last byte for the node's durable acknowledgement.
#[allow(clippy::too_many_arguments)]
pub async fn put(
    (send, mut recv): (SendStream, RecvStream),
    chunk_id: ChunkId,
    meta: ChunkMeta,
    resume_from: u64,
    facts: Option<FileFacts>,
    first: Option<Bytes>,
    body: &mut mpsc::Receiver<Bytes>,
    deadline: Instant,
    timeout: std::time::Duration,
) -> Result<PutAck, NodeError> {
    if resume_from > meta.length {
        return Err(NodeError::Protocol(WireError::InvalidField {
            field: "resume_from",
            reason: "past the end of the chunk",
        }));
    }
    let req = Request::Put {
        chunk_id,
        meta,
        resume_from,
        facts,
    };
    let op = req.op();
    let expected = req.body_len();
    let mut out = Outgoing::new(send);
    with_deadline(deadline, write_header(out.get()?, &req)).await?;

    let mut sent = 0u64;
    let mut pending = first;
    while sent < expected {
        let next = match pending.take() {
            Some(chunk) => Some(chunk),
            None => body.recv().await,
        };
        let Some(chunk) = next else {
            out.abandon();
            return Err(NodeError::ShortBody {
                expected,
                got: sent,
            });
        };
        let len = chunk.len() as u64;
        if len > expected - sent {
            out.abandon();
            return Err(NodeError::Stream(format!(
                "the body is longer than the chunk's {expected} bytes"
            )));
        }
        if len == 0 {
            continue;
        }
        match out.get()?.write_chunk(chunk).await {
            Ok(()) => sent += len,
            Err(WriteError::Stopped(code)) => {
                // The node refused the body; its response header says why.
                out.abandon();
                let after = Instant::now() + timeout;
                return match with_deadline(after, read_header(&mut recv, op)).await {
                    Err(e @ NodeError::Status { .. }) => Err(e),
                    _ => Err(reset_error(code, sent)),
                };
            }
            Err(e) => {
                out.abandon();
                return Err(write_error(e));
            }
        }
    }
    out.finish()?;
    let after = Instant::now() + timeout;
    match with_deadline(after, read_header(&mut recv, op)).await? {
        Response::Put { length, crc32c } => Ok(PutAck { length, crc32c }),
        _ => Err(unexpected(Op::Put)),
    }
}

/// Sends a get and waits (until `deadline`) for its response header; the body is then read
/// through the returned [`ChunkReader`].
pub async fn get(
    (send, mut recv): (SendStream, RecvStream),
    chunk_id: ChunkId,
    offset: u64,
    len: u64,
    deadline: Instant,
) -> Result<ChunkReader, NodeError> {
    let req = Request::Get {
        chunk_id,
        offset,
        len,
    };
    let mut out = Outgoing::new(send);
    let length = with_deadline(deadline, async {
        write_header(out.get()?, &req).await?;
        out.finish()?;
        match read_header(&mut recv, Op::Get).await? {
            Response::Get { length } => Ok(length),
            _ => Err(unexpected(Op::Get)),
        }
    })
    .await?;
    if length != len {
        return Err(NodeError::Protocol(WireError::InvalidField {
            field: "length",
            reason: "the node announced another length than requested",
        }));
    }
    Ok(ChunkReader {
        recv,
        expected: length,
        received: 0,
        done: false,
    })
}

/// Sends a request without bodies (delete, stat, list, node info) and returns its successful
/// response; the whole exchange must finish by `deadline`.
pub async fn call(
    (send, mut recv): (SendStream, RecvStream),
    req: Request,
    deadline: Instant,
) -> Result<Response, NodeError> {
    let op = req.op();
    let mut out = Outgoing::new(send);
    with_deadline(deadline, async {
        write_header(out.get()?, &req).await?;
        out.finish()?;
        read_header(&mut recv, op).await
    })
    .await
}

/// The body of a get as it arrives. Read-ahead is bounded by the QUIC stream window; dropping
/// the reader stops the node's sending.
#[derive(Debug)]
pub struct ChunkReader {
    recv: RecvStream,
    expected: u64,
    received: u64,
    done: bool,
}

impl ChunkReader {
    /// Bytes the node announced.
    pub fn len(&self) -> u64 {
        self.expected
    }

    pub fn is_empty(&self) -> bool {
        self.expected == 0
    }

    /// Bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.expected - self.received
    }

    /// The next piece of the body; `None` once every announced byte was yielded and the node
    /// finished the stream. A reset, an early end, or bytes beyond the announced length are
    /// errors, after which the reader yields nothing more.
    pub async fn next(&mut self) -> Option<Result<Bytes, NodeError>> {
        if self.done {
            return None;
        }
        let item = self.read().await;
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }

    async fn read(&mut self) -> Option<Result<Bytes, NodeError>> {
        loop {
            let remaining = self.remaining();
            // Past the announced length only the end of the stream may follow: a node that
            // resets the stream after its last byte still failed the read.
            let max = usize::try_from(remaining).unwrap_or(usize::MAX).max(1);
            return match self.recv.read_chunk(max, true).await {
                Ok(Some(chunk)) if chunk.bytes.is_empty() => continue,
                Ok(Some(_)) if remaining == 0 => {
                    Some(Err(NodeError::Protocol(WireError::InvalidField {
                        field: "body",
                        reason: "more bytes than the response announced",
                    })))
                }
                Ok(Some(chunk)) => {
                    self.received += chunk.bytes.len() as u64;
                    Some(Ok(chunk.bytes))
                }
                Ok(None) if remaining == 0 => None,
                Ok(None) => Some(Err(NodeError::ShortBody {
                    expected: self.expected,
                    got: self.received,
                })),
                Err(e) => Some(Err(read_error(e, self.received))),
            };
        }
    }

    /// The reader as a `Stream`, for HTTP bodies.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, NodeError>> + Send + 'static {
        futures_util::stream::unfold(self, |mut reader| async move {
            reader.next().await.map(|item| (item, reader))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_map_to_statuses() {
        let e = reset_error(VarInt::from_u32(2), 10);
        assert_eq!(e.status(), Some(Status::ChecksumMismatch));
        // Unknown codes and "ok" still fail the read.
        assert_eq!(
            reset_error(VarInt::from_u32(0), 0).status(),
            Some(Status::Internal)
        );
        assert_eq!(
            reset_error(VarInt::from_u32(999), 0).status(),
            Some(Status::Internal)
        );
    }
}
