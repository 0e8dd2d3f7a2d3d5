//! One stream, one request: read the header, check it, run the operation, answer, log one line.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use sixfold_wire::{ErrorResponse, NodeInfo, Op, Request, Response, Status};

use super::header::{self, HeaderFailure};
use super::rules;
use super::{ShardService, get, put};
use crate::quic::{RecvStream, SendStream, StreamError};
use crate::store::ChunkId;

/// Who sent the requests of one connection, as logged with each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PeerLabel {
    /// `gateway`, `node <id>` or why the certificate names no role.
    pub role: String,
    /// The certificate's common name, peer-supplied: logged escaped (`?`).
    pub common_name: Option<String>,
}

impl PeerLabel {
    pub fn of(chain: Option<&[rustls::pki_types::CertificateDer<'static>]>) -> Self {
        let Some(leaf) = chain.and_then(<[_]>::first) else {
            return Self {
                role: "no certificate".into(),
                common_name: None,
            };
        };
        match sixfold_certs::parse_identity(leaf) {
            Ok(id) => Self {
                role: id.role.to_string(),
                common_name: id.common_name,
            },
            Err(e) => Self {
                role: format!("unknown ({e})"),
                common_name: None,
            },
        }
    }
}

/// How a request ended, for its log line.
pub(super) struct Outcome {
    /// Status name, or `aborted` when the stream broke and nobody was left to answer.
    pub status: &'static str,
    /// Needs attention (see [`rules::worth_a_warning`]).
    pub warn: bool,
    /// Body bytes moved (received for a put, sent for a get).
    pub bytes: u64,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(bytes: u64) -> Self {
        Self {
            status: Status::Ok.name(),
            warn: false,
            bytes,
            error: None,
        }
    }

    pub fn failed(status: Status, bytes: u64, error: impl ToString) -> Self {
        Self {
            status: status.name(),
            warn: rules::worth_a_warning(status),
            bytes,
            error: Some(error.to_string()),
        }
    }

    /// The stream broke (reset, connection lost, node closing): the client went away.
    pub fn aborted(bytes: u64, error: impl ToString) -> Self {
        Self {
            status: "aborted",
            warn: false,
            bytes,
            error: Some(error.to_string()),
        }
    }
}

pub(super) async fn handle(
    svc: Rc<ShardService>,
    peer: Rc<PeerLabel>,
    mut recv: RecvStream,
    mut send: SendStream,
) {
    let started = Instant::now();
    let (request, rest) = match header::read_request(&mut recv).await {
        Ok(r) => r,
        Err(failure) => return refuse_header(&svc, &mut recv, &mut send, failure).await,
    };
    let op = request.op();
    let chunk = request.chunk_id().map(|id| ChunkId(*id));
    if svc.is_draining() {
        let e = ErrorResponse::new(op, Status::ShuttingDown, 0, "the node is shutting down");
        let _ = respond(&mut send, &Response::Error(e)).await;
        tracing::debug!(shard = svc.shard, op = op.name(), "refused: shutting down");
        return;
    }
    let _in_flight = svc.enter();
    let outcome = match serve(&svc, request, rest, &mut recv, &mut send).await {
        Ok(outcome) => outcome,
        Err(response) => answer_error(&mut send, response, 0).await,
    };
    log(&svc, &peer, op, chunk, &outcome, started);
}

/// Runs one checked request; `Err` is an answer that ends it before any body moved.
async fn serve(
    svc: &Rc<ShardService>,
    request: Request,
    rest: Bytes,
    recv: &mut RecvStream,
    send: &mut SendStream,
) -> Result<Outcome, ErrorResponse> {
    rules::check_request(&request, svc.shard, svc.node.shards)?;
    let op = request.op();
    if !matches!(request, Request::Put { .. }) && !rest.is_empty() {
        return Err(ErrorResponse::new(
            op,
            Status::BadRequest,
            0,
            format!("{} takes no body, got {} bytes", op.name(), rest.len()),
        ));
    }
    let store = &svc.store;
    let response = match request {
        Request::Put {
            chunk_id,
            meta,
            resume_from,
            facts,
        } => {
            let args = put::PutArgs {
                id: ChunkId(chunk_id),
                meta,
                resume_from,
                facts: facts.map(rules::to_store_facts),
            };
            return Ok(put::handle(svc, args, rest, recv, send).await);
        }
        Request::Get {
            chunk_id,
            offset,
            len,
        } => return Ok(get::handle(svc, ChunkId(chunk_id), offset, len, send).await),
        Request::Delete { chunk_id } => {
            let id = ChunkId(chunk_id);
            match store.delete(id).await {
                Ok(()) => {
                    svc.node.scrub.forget(id);
                    svc.refresh_stats();
                    Response::Delete
                }
                Err(e) => return Err(rules::delete_error_response(&e, durable_len(svc, id))),
            }
        }
        Request::Stat { chunk_id } => Response::Stat(rules::to_chunk_info(
            &store
                .stat(ChunkId(chunk_id))
                .map_err(|e| rules::stat_error_response(&e))?,
        )),
        Request::List { after, limit } => {
            let page = store.list(after.map(ChunkId), limit as usize + 1);
            let (entries, more) = rules::list_page(page, limit);
            Response::List { entries, more }
        }
        Request::Mark { marks } => {
            let marks: Vec<_> = marks.iter().map(rules::to_store_mark).collect();
            let recorded = store
                .mark(&marks)
                .await
                .map_err(|e| rules::mark_error_response(&e))?;
            Response::Mark {
                recorded: recorded as u16,
            }
        }
        Request::Inventory { after, limit } => {
            let mut items = store
                .inventory(after.map(ChunkId), limit as usize + 1)
                .await;
            let more = items.len() > limit as usize;
            items.truncate(limit as usize);
            Response::Inventory {
                entries: items.into_iter().map(rules::to_inventory_entry).collect(),
                more,
            }
        }
        Request::Verify { chunk_id } => {
            let id = ChunkId(chunk_id);
            let result = store.verify(id).await;
            if let crate::scrub::Verdict::Damaged { damage, block } =
                crate::scrub::classify(&result)
            {
                svc.node.scrub.read_failed(id, damage, block);
            }
            let (length, crc32c) = result.map_err(|e| rules::verify_error_response(&e))?;
            Response::Verify { length, crc32c }
        }
        Request::NodeInfo => {
            let usage = store.usage();
            Response::NodeInfo(NodeInfo {
                node_id: *svc.node.node_id.as_bytes(),
                shard: svc.shard,
                shards: svc.node.shards,
                capacity: svc.node.shard_capacity(),
                used: usage.used_bytes,
                chunk_count: usage.chunk_count,
                in_flight: svc.in_flight(),
            })
        }
    };
    match respond(send, &response).await {
        Ok(()) => Ok(Outcome::ok(0)),
        Err(e) => Ok(Outcome::aborted(0, e)),
    }
}

/// The chunk's durable length, for the `Conflict` answer to a busy chunk.
pub(super) fn durable_len(svc: &ShardService, id: ChunkId) -> Option<u64> {
    svc.store.stat(id).ok().map(|s| s.durable_len)
}

/// Writes a response header (no body), ends the stream and waits for the peer to have it, so a
/// stopping shard does not close the connection under an unacknowledged answer.
pub(super) async fn respond(send: &mut SendStream, response: &Response) -> Result<(), StreamError> {
    send.write(encode(response)).await?;
    send.finish()?;
    send.finished().await
}

/// Answers with an error header and ends the stream.
pub(super) async fn answer_error(
    send: &mut SendStream,
    response: ErrorResponse,
    bytes: u64,
) -> Outcome {
    let outcome = Outcome::failed(response.status, bytes, &response.message);
    let _ = respond(send, &Response::Error(response)).await;
    outcome
}

pub(super) fn encode(response: &Response) -> Bytes {
    let mut header = Vec::with_capacity(64);
    response.encode(&mut header);
    Bytes::from(header)
}

async fn refuse_header(
    svc: &ShardService,
    recv: &mut RecvStream,
    send: &mut SendStream,
    failure: HeaderFailure,
) {
    let (kind, error) = match failure {
        HeaderFailure::Stream(e) => {
            tracing::debug!(shard = svc.shard, error = %e, "stream ended before a request header");
            return;
        }
        HeaderFailure::Malformed(m) => (m.kind, m.error.to_string()),
        HeaderFailure::Truncated { received, kind } => (
            kind,
            format!("stream finished after {received} bytes, before a whole request header"),
        ),
        HeaderFailure::TimedOut { kind } => (
            kind,
            format!(
                "no whole request header within {}s",
                header::HEADER_TIMEOUT.as_secs()
            ),
        ),
    };
    tracing::warn!(shard = svc.shard, %error, "bad request header");
    let _ = recv.stop(Status::BadRequest.code());
    match rules::header_refusal(kind, &error) {
        Some(e) => {
            let _ = respond(send, &Response::Error(e)).await;
        }
        // Without an operation there is no valid error header to send.
        None => {
            let _ = send.reset(Status::BadRequest.code());
        }
    }
}

fn log(
    svc: &ShardService,
    peer: &PeerLabel,
    op: Op,
    chunk: Option<ChunkId>,
    outcome: &Outcome,
    started: Instant,
) {
    let micros = started.elapsed().as_micros() as u64;
    let chunk = chunk.map(|c| c.to_hex()).unwrap_or_default();
    // A put that also keeps the file's facts is a put to whoever traces a file's parts.
    let op_name = match op {
        Op::PutFile => Op::Put.name(),
        other => other.name(),
    };
    let error = outcome.error.as_deref().unwrap_or_default();
    // `tracing::event!` needs its level as a constant: one expansion per level.
    macro_rules! line {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                shard = svc.shard,
                op = op_name,
                chunk,
                peer_role = %peer.role,
                peer_cn = ?peer.common_name,
                status = outcome.status,
                bytes = outcome.bytes,
                micros,
                error,
                $message
            )
        };
    }
    if outcome.warn {
        line!(tracing::Level::WARN, "request failed");
    } else if moves_data(op) {
        line!(tracing::Level::INFO, "request");
    } else {
        line!(tracing::Level::DEBUG, "request");
    }
}

/// Puts, gets and deletes are what an operator traces a file by, one info line each; stats,
/// lists and node info come from the gateway's own probing and reconciliation, and at info
/// they would bury those lines.
fn moves_data(op: Op) -> bool {
    matches!(op, Op::Put | Op::PutFile | Op::Get | Op::Delete | Op::Mark)
}
