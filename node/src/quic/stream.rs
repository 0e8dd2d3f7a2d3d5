//! The two halves of a bidirectional stream.
//!
//! Flow control is the backpressure in both directions: a `RecvStream` that is not read grants
//! the peer no new credit, so the peer's writes stall; a `SendStream::write` waits while the
//! peer's credit or the connection's send window is used up, so nothing buffers without bound.

use std::future::poll_fn;
use std::task::Poll;

use bytes::Bytes;
use quinn_proto::{FinishError, ReadError, ReadableError, StreamId, VarInt, WriteError};

use super::connection::ConnRef;
use super::error::StreamError;
use super::state::ConnState;

/// Code sent with the implicit STOP_SENDING / RESET_STREAM of a half dropped while open.
pub const DROPPED_STREAM_CODE: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Open,
    /// Receive: the end was read, the peer reset, or we stopped. Send: finished or reset.
    Closed,
}

fn connection_error(state: &ConnState) -> Option<StreamError> {
    state.error.clone().map(StreamError::ConnectionLost)
}

/// The receiving half of a stream.
pub struct RecvStream {
    conn: ConnRef,
    id: StreamId,
    half: Half,
    end_reached: bool,
}

impl RecvStream {
    pub(crate) fn new(conn: ConnRef, id: StreamId) -> Self {
        Self {
            conn,
            id,
            half: Half::Open,
            end_reached: false,
        }
    }

    /// The stream's id on its connection (for logs).
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The next chunk of data, in order, at most `max` bytes, exactly as it came off the wire
    /// (no copy). `Ok(None)` once the peer finished the stream (and again on later calls);
    /// `Err(StreamError::Reset(code))` if the peer reset it. Reading grants the peer more
    /// credit; not reading holds it back.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        if self.end_reached {
            return Ok(None);
        }
        let id = self.id;
        let conn = &self.conn;
        let result = poll_fn(|cx| {
            let mut state = conn.shared().state.borrow_mut();
            let state = &mut *state;
            let mut recv = state.conn.recv_stream(id);
            let read = match recv.read(true) {
                Ok(mut chunks) => {
                    let next = chunks.next(max);
                    Ok((next, chunks.finalize().should_transmit()))
                }
                Err(ReadableError::ClosedStream | ReadableError::IllegalOrderedRead) => Err(()),
            };
            let Ok((next, should_transmit)) = read else {
                return Poll::Ready(Err(connection_error(state).unwrap_or(StreamError::Closed)));
            };
            if should_transmit {
                conn.shared().signal.notify();
            }
            match next {
                Ok(Some(chunk)) => Poll::Ready(Ok(Some(chunk.bytes))),
                Ok(None) => Poll::Ready(Ok(None)),
                Err(ReadError::Reset(code)) => Poll::Ready(Err(StreamError::Reset(code))),
                Err(ReadError::Blocked) => {
                    if let Some(error) = connection_error(state) {
                        return Poll::Ready(Err(error));
                    }
                    state.readers.insert(id, cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        match &result {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.end_reached = true;
                self.half = Half::Closed;
            }
            Err(_) => self.half = Half::Closed,
        }
        result
    }

    /// Tells the peer to stop sending (STOP_SENDING with `code`); unread data is discarded.
    pub fn stop(&mut self, code: impl Into<VarInt>) -> Result<(), StreamError> {
        if self.half == Half::Closed {
            return Err(StreamError::Closed);
        }
        self.half = Half::Closed;
        let shared = self.conn.shared();
        let mut state = shared.state.borrow_mut();
        let result = state.conn.recv_stream(self.id).stop(code.into());
        state.readers.remove(&self.id);
        let error = connection_error(&state);
        drop(state);
        shared.signal.notify();
        result.map_err(|_| error.unwrap_or(StreamError::Closed))
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if self.half == Half::Open {
            let _ = self.stop(DROPPED_STREAM_CODE);
        } else {
            self.conn
                .shared()
                .state
                .borrow_mut()
                .readers
                .remove(&self.id);
        }
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

/// The sending half of a stream.
///
/// Dropping it without [`SendStream::finish`] resets the stream with
/// [`DROPPED_STREAM_CODE`], so a peer never mistakes an abandoned stream for a complete one.
pub struct SendStream {
    conn: ConnRef,
    id: StreamId,
    half: Half,
}

impl SendStream {
    pub(crate) fn new(conn: ConnRef, id: StreamId) -> Self {
        Self {
            conn,
            id,
            half: Half::Open,
        }
    }

    /// The stream's id on its connection (for logs).
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Queues all of `data`, waiting for flow-control credit as needed. The bytes are not
    /// copied. If this future is dropped early, an unknown prefix of `data` was queued.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.write_chunks(&mut [data]).await
    }

    /// Queues all of `chunks`, in order, like [`SendStream::write`]. Written chunks are left
    /// empty.
    pub async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamError> {
        if self.half == Half::Closed {
            return Err(StreamError::Closed);
        }
        let id = self.id;
        let conn = &self.conn;
        let mut next = 0;
        poll_fn(|cx| {
            loop {
                while next < chunks.len() && chunks[next].is_empty() {
                    next += 1;
                }
                if next == chunks.len() {
                    return Poll::Ready(Ok(()));
                }
                let mut state = conn.shared().state.borrow_mut();
                if let Some(error) = connection_error(&state) {
                    return Poll::Ready(Err(error));
                }
                match state.conn.send_stream(id).write_chunks(&mut chunks[next..]) {
                    Ok(written) => {
                        next += written.chunks;
                        drop(state);
                        conn.shared().signal.notify();
                    }
                    Err(WriteError::Blocked) => {
                        state.writers.insert(id, cx.waker().clone());
                        return Poll::Pending;
                    }
                    Err(WriteError::Stopped(code)) => {
                        return Poll::Ready(Err(StreamError::Stopped(code)));
                    }
                    Err(WriteError::ClosedStream) => return Poll::Ready(Err(StreamError::Closed)),
                }
            }
        })
        .await
    }

    /// Marks the end of the stream after the data already queued. Returns at once; use
    /// [`SendStream::finished`] to wait for the peer's acknowledgement.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        if self.half == Half::Closed {
            return Err(StreamError::Closed);
        }
        let shared = self.conn.shared();
        let mut state = shared.state.borrow_mut();
        if let Some(error) = connection_error(&state) {
            return Err(error);
        }
        let result = state.conn.send_stream(self.id).finish();
        drop(state);
        match result {
            Ok(()) => {
                self.half = Half::Closed;
                shared.signal.notify();
                Ok(())
            }
            Err(FinishError::Stopped(code)) => Err(StreamError::Stopped(code)),
            Err(FinishError::ClosedStream) => Err(StreamError::Closed),
        }
    }

    /// Abandons the stream: queued data is dropped and the peer's reads fail with
    /// `StreamError::Reset(code)`.
    pub fn reset(&mut self, code: impl Into<VarInt>) -> Result<(), StreamError> {
        if self.half == Half::Closed {
            return Err(StreamError::Closed);
        }
        self.half = Half::Closed;
        let shared = self.conn.shared();
        let mut state = shared.state.borrow_mut();
        let result = state.conn.send_stream(self.id).reset(code.into());
        let error = connection_error(&state);
        drop(state);
        shared.signal.notify();
        result.map_err(|_| error.unwrap_or(StreamError::Closed))
    }

    /// Waits until the peer acknowledged everything up to the end of the finished stream.
    /// Fails with `Stopped(code)` if the peer stopped reading, or with the connection's error.
    pub async fn finished(&mut self) -> Result<(), StreamError> {
        let id = self.id;
        let conn = &self.conn;
        poll_fn(|cx| {
            let mut state = conn.shared().state.borrow_mut();
            if state.sends.get(&id).is_some_and(|flags| flags.acknowledged) {
                return Poll::Ready(Ok(()));
            }
            if let Ok(Some(code)) = state.conn.send_stream(id).stopped() {
                return Poll::Ready(Err(StreamError::Stopped(code)));
            }
            if let Some(error) = connection_error(&state) {
                return Poll::Ready(Err(error));
            }
            state.writers.insert(id, cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if self.half == Half::Open {
            let _ = self.reset(DROPPED_STREAM_CODE);
        }
        let mut state = self.conn.shared().state.borrow_mut();
        state.sends.remove(&self.id);
        state.writers.remove(&self.id);
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}
