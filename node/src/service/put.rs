//! `Put`: the body streams from QUIC straight into the store's put writer, piece by piece as
//! `Bytes` (no copy until the store's aligned buffer). The writer's `write` waits while the
//! shard's buffers are busy, which stops reading the stream, which withholds QUIC credit from
//! the sender: backpressure from the disk to the gateway. The answer is sent only after the
//! store synced the whole chunk.
//!
//! A stream that breaks (reset, lost connection, early end, stall) interrupts the put: the
//! store keeps the durable prefix so a later put can resume there.
//!
//! The body loop only finds out how the put ended (a [`PutEnd`]); what each ending does
//! (writer, stop code, answer) is decided in [`super::put_end`] and applied in one place.

use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use bytes::Bytes;
use sixfold_wire::ChunkMeta;

use super::ShardService;
use super::header::READ_MAX;
use super::put_end::{self, PutEnd, Reply, WriterEnd};
use super::rules::{self, BodyPiece};
use super::stream::{Outcome, answer_error, durable_len, respond};
use crate::quic::{RecvStream, SendStream};
use crate::store::{ChunkId, FileFacts, PutWriter};

/// A put whose client sends nothing for this long is interrupted (keep-alives would otherwise
/// hold the chunk, and a later resume would find it busy).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a `Put` or `PutFile` header asks for.
pub(super) struct PutArgs {
    pub id: ChunkId,
    pub meta: ChunkMeta,
    pub resume_from: u64,
    pub facts: Option<FileFacts>,
}

pub(super) async fn handle(
    svc: &Rc<ShardService>,
    args: PutArgs,
    first: Bytes,
    recv: &mut RecvStream,
    send: &mut SendStream,
) -> Outcome {
    let (end, writer) = receive(svc, args, first, recv).await;
    // The one exit: what each ending does is decided in `put_end`.
    let effects = put_end::effects(end);
    let durable = match (effects.writer, writer) {
        (WriterEnd::KeepPrefix, Some(writer)) => interrupt(svc, writer).await,
        (_, writer) => {
            if writer.is_some() {
                // Discarded: after DiskFull there is no partial chunk left to keep.
                drop(writer);
                svc.refresh_stats();
            }
            0
        }
    };
    if let Some(status) = effects.stop {
        let _ = recv.stop(status.code());
    }
    let bytes = effects.bytes;
    match effects.answer.reply(durable) {
        Reply::Stored(response) => match respond(send, &response).await {
            Ok(()) => Outcome::ok(bytes),
            Err(e) => Outcome::aborted(bytes, format!("chunk stored, answer lost: {e}")),
        },
        Reply::Error(response) => answer_error(send, response, bytes).await,
        Reply::Abort(error) => Outcome::aborted(bytes, error),
    }
}

/// Opens the put and streams the body into it until the put ends one way or another. The
/// writer is handed back while it is still open (the body did not all arrive).
async fn receive(
    svc: &ShardService,
    args: PutArgs,
    first: Bytes,
    recv: &mut RecvStream,
) -> (PutEnd, Option<PutWriter>) {
    let PutArgs {
        id,
        meta,
        resume_from,
        facts,
    } = args;
    let mut writer = match svc
        .store
        .put(id, rules::to_store_meta(&meta), resume_from, facts)
        .await
    {
        Ok(w) => w,
        Err(error) => {
            let durable_len = durable_len(svc, id);
            return (PutEnd::Refused { error, durable_len }, None);
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
        let received = body_len - remaining;
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
                    return (PutEnd::BodyEnded { received, body_len }, Some(writer));
                }
                Some(Err(e)) => {
                    let error = e.to_string();
                    return (PutEnd::StreamBroken { received, error }, Some(writer));
                }
                None => return (PutEnd::Idle { received }, Some(writer)),
            },
        };
        match rules::body_piece(remaining, piece.len()) {
            BodyPiece::TooLong => {
                return (PutEnd::TooLong { received, body_len }, Some(writer));
            }
            BodyPiece::Take { remaining: left } => {
                if let Err(error) = writer.write(piece).await {
                    return (PutEnd::WriteFailed { received, error }, Some(writer));
                }
                remaining = left;
                last_progress = Instant::now();
            }
        }
    }
    let result = writer.finish().await;
    svc.refresh_stats();
    let end = match result {
        Ok(done) => PutEnd::Stored {
            body_len,
            length: done.length,
            crc32c: done.crc32c,
        },
        Err(error) => PutEnd::FinishFailed { body_len, error },
    };
    (end, None)
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
