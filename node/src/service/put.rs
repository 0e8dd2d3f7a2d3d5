//! `Put`: the body streams from QUIC straight into the store's put writer, piece by piece as
//! `Bytes` (no copy until the store's aligned buffer). The writer's `write` waits while the
//! shard's buffers are busy, which stops reading the stream, which withholds QUIC credit from
//! the sender: backpressure from the disk to the gateway. The answer is sent only after the
//! store synced the whole chunk.
//!
//! A stream that breaks (reset, lost connection, early end, stall) interrupts the put: the
//! store keeps the durable prefix so a later put can resume there.

use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use bytes::Bytes;
use sixfold_wire::{ChunkMeta, ErrorResponse, Op, Response, Status};

use super::ShardService;
use super::header::READ_MAX;
use super::rules::{self, BodyPiece};
use super::stream::{Outcome, answer_error, durable_len, respond};
use crate::quic::{RecvStream, SendStream};
use crate::store::{ChunkId, PutWriter, StoreError};

/// A put whose client sends nothing for this long is interrupted (keep-alives would otherwise
/// hold the chunk, and a later resume would find it busy).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn handle(
    svc: &Rc<ShardService>,
    id: ChunkId,
    meta: ChunkMeta,
    resume_from: u64,
    first: Bytes,
    recv: &mut RecvStream,
    send: &mut SendStream,
) -> Outcome {
    let op = Op::Put;
    let mut writer = match svc
        .store
        .put(id, rules::to_store_meta(&meta), resume_from)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            let response = rules::store_error_response(op, &e, durable_len(svc, id));
            let _ = recv.stop(response.status.code());
            return answer_error(send, response, 0).await;
        }
    };
    // The wire decoder guarantees resume_from <= length.
    let body_len = meta.length - resume_from;
    let mut remaining = body_len;
    let mut pending = Some(first).filter(|b| !b.is_empty());
    // One timer for the whole put, re-armed only when it fires: arming one per read (per
    // packet) would cost more than the packet.
    let idle = monoio::time::sleep(BODY_IDLE_TIMEOUT);
    let mut idle = std::pin::pin!(idle);
    let mut last_progress = Instant::now();
    loop {
        let piece = match pending.take() {
            Some(piece) => piece,
            None => match monoio::select! {
                read = recv.read_chunk(READ_MAX) => Some(read),
                _ = &mut idle => None,
            } {
                None if last_progress.elapsed() < BODY_IDLE_TIMEOUT => {
                    idle.as_mut().reset(last_progress + BODY_IDLE_TIMEOUT);
                    continue;
                }
                Some(Ok(Some(piece))) => piece,
                Some(Ok(None)) if remaining == 0 => break,
                Some(Ok(None)) => {
                    let received = body_len - remaining;
                    let durable = interrupt(svc, writer).await;
                    let response = ErrorResponse::new(
                        op,
                        Status::BadRequest,
                        0,
                        format!(
                            "body ended after {received} of {body_len} bytes; \
                             {durable} bytes of the chunk are durable"
                        ),
                    );
                    return answer_error(send, response, received).await;
                }
                Some(Err(e)) => {
                    let received = body_len - remaining;
                    let durable = interrupt(svc, writer).await;
                    return Outcome::aborted(
                        received,
                        format!("{e}; put interrupted, {durable} bytes durable"),
                    );
                }
                None => {
                    let received = body_len - remaining;
                    let durable = interrupt(svc, writer).await;
                    let _ = recv.stop(Status::BadRequest.code());
                    let response = ErrorResponse::new(
                        op,
                        Status::BadRequest,
                        0,
                        format!(
                            "no body bytes for {}s; put interrupted, {durable} bytes durable",
                            BODY_IDLE_TIMEOUT.as_secs()
                        ),
                    );
                    return answer_error(send, response, received).await;
                }
            },
        };
        match rules::body_piece(remaining, piece.len()) {
            BodyPiece::TooLong => {
                let durable = interrupt(svc, writer).await;
                let _ = recv.stop(Status::BadRequest.code());
                let response = ErrorResponse::new(
                    op,
                    Status::BadRequest,
                    0,
                    format!(
                        "more body bytes than the {body_len} the header announced; \
                         {durable} bytes of the chunk are durable"
                    ),
                );
                return answer_error(send, response, body_len - remaining).await;
            }
            BodyPiece::Take { remaining: left } => {
                if let Err(e) = writer.write(piece).await {
                    let received = body_len - remaining;
                    // After DiskFull the writer already removed the partial chunk.
                    if !matches!(e, StoreError::DiskFull) {
                        interrupt(svc, writer).await;
                    }
                    let response = rules::store_error_response(op, &e, None);
                    let _ = recv.stop(response.status.code());
                    svc.refresh_stats();
                    return answer_error(send, response, received).await;
                }
                remaining = left;
                last_progress = Instant::now();
            }
        }
    }
    let result = writer.finish().await;
    svc.refresh_stats();
    match result {
        Ok(done) => {
            let response = Response::Put {
                length: done.length,
                crc32c: done.crc32c,
            };
            match respond(send, &response).await {
                Ok(()) => Outcome::ok(body_len),
                Err(e) => Outcome::aborted(body_len, format!("chunk stored, answer lost: {e}")),
            }
        }
        Err(e) => answer_error(send, rules::store_error_response(op, &e, None), body_len).await,
    }
}

/// Keeps the durable prefix of an abandoned put; returns its length (0 if even that failed).
async fn interrupt(svc: &ShardService, writer: PutWriter) -> u64 {
    let result = writer.interrupt().await;
    svc.refresh_stats();
    match result {
        Ok(durable) => durable,
        Err(e) => {
            tracing::warn!(shard = svc.shard, error = %e, "checkpoint of an interrupted put failed");
            0
        }
    }
}
