//! `Get`: verified pieces from the store's reader go out as they are, `Bytes` each. The first
//! piece is read before the answer header, so a bad first block becomes a proper
//! `ChecksumMismatch` answer; a bad block later resets the stream with that status code, and the
//! client sees a cut-off body, never bad bytes.

use std::rc::Rc;

use sixfold_wire::Response;

use super::ShardService;
use super::rules;
use super::stream::{Outcome, answer_error, encode};
use crate::quic::SendStream;
use crate::store::ChunkId;

pub(super) async fn handle(
    svc: &Rc<ShardService>,
    id: ChunkId,
    offset: u64,
    len: u64,
    send: &mut SendStream,
) -> Outcome {
    let mut reader = match svc.store.read(id, offset, len).await {
        Ok(r) => r,
        Err(e) => {
            if let Some((damage, block)) = rules::read_damage(&e) {
                svc.node.scrub.read_failed(id, damage, block);
            }
            return answer_error(send, rules::read_error_response(&e), 0).await;
        }
    };
    let first = match reader.next().await {
        None => bytes::Bytes::new(),
        Some(Ok(piece)) => piece,
        Some(Err(e)) => {
            let (damage, block) = rules::block_damage(&e);
            svc.node.scrub.read_failed(id, damage, block);
            return answer_error(send, rules::block_error_response(&e), 0).await;
        }
    };
    let mut sent = first.len() as u64;
    if let Err(e) = send
        .write_chunks(&mut [encode(&Response::Get { length: len }), first])
        .await
    {
        return Outcome::aborted(0, e);
    }
    while let Some(piece) = reader.next().await {
        match piece {
            Ok(piece) => {
                let n = piece.len() as u64;
                if let Err(e) = send.write(piece).await {
                    return Outcome::aborted(sent, e);
                }
                sent += n;
            }
            Err(e) => {
                let (damage, block) = rules::block_damage(&e);
                svc.node.scrub.read_failed(id, damage, block);
                let response = rules::block_error_response(&e);
                let _ = send.reset(response.status.code());
                return Outcome::failed(
                    response.status,
                    sent,
                    format!(
                        "{}; stream reset after {sent} of {len} bytes",
                        response.message
                    ),
                );
            }
        }
    }
    if let Err(e) = send.finish() {
        return Outcome::aborted(sent, e);
    }
    match send.finished().await {
        Ok(()) => Outcome::ok(sent),
        Err(e) => Outcome::aborted(sent, e),
    }
}
