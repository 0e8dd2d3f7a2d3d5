//! The pure part of the protocol handler: which requests a shard takes, and how store results
//! become wire responses. No I/O, so every rule is unit-tested here.

use sixfold_wire::{ChunkInfo, ErrorResponse, Op, Request, Status, shard_for};

use crate::store::{self, StoreError};

/// Why a request is answered with an error before any store work.
pub fn check_request(request: &Request, shard: u16, shards: u16) -> Result<(), ErrorResponse> {
    if let Request::Mark { marks } = request
        && let Some(m) = marks
            .iter()
            .find(|m| shard_for(&m.chunk_id, shards) != shard)
    {
        return Err(ErrorResponse::new(
            request.op(),
            Status::BadRequest,
            0,
            format!(
                "wrong shard: marked chunk {} belongs to shard {} of {shards}, this is shard {shard}",
                hex(&m.chunk_id),
                shard_for(&m.chunk_id, shards)
            ),
        ));
    }
    if let Some(id) = request.chunk_id() {
        let owner = shard_for(id, shards);
        if owner != shard {
            return Err(ErrorResponse::new(
                request.op(),
                Status::BadRequest,
                0,
                format!(
                    "wrong shard: chunk belongs to shard {owner} of {shards}, this is shard {shard}"
                ),
            ));
        }
    }
    Ok(())
}

/// The error answer to a request header that cannot be used (malformed, cut short, too slow),
/// if the operation can be named from its kind byte: an error response carries the op it
/// answers. `None`: the stream can only be reset.
pub fn header_refusal(kind: Option<u8>, reason: &str) -> Option<ErrorResponse> {
    let op = Op::from_code(kind?).ok()?;
    Some(ErrorResponse::new(
        op,
        Status::BadRequest,
        0,
        format!("bad request header: {reason}"),
    ))
}

/// The wire answer to a failed store operation. `durable_len` is the chunk's durable length
/// when known, for the `Conflict` a busy chunk gets.
pub fn store_error_response(op: Op, error: &StoreError, durable_len: Option<u64>) -> ErrorResponse {
    let (status, detail) = match error {
        StoreError::NotFound => (Status::NotFound, 0),
        // Not readable yet: the protocol calls that not found, for Get.
        StoreError::NotComplete { .. } => (Status::NotFound, 0),
        StoreError::Conflict { durable_len } => (Status::Conflict, *durable_len),
        // Another put holds the chunk: a conflict with its state; the client may stat and
        // resume once that put ends.
        StoreError::Busy => (Status::Conflict, durable_len.unwrap_or(0)),
        StoreError::ChecksumMismatch { block } => (Status::ChecksumMismatch, *block),
        StoreError::DiskFull => (Status::DiskFull, 0),
        StoreError::BadRequest(_) => (Status::BadRequest, 0),
        StoreError::Corrupt(_) | StoreError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(op, status, detail, error.to_string())
}

/// Whether a failed request needs someone's attention (logged at warn: node failures, and bad
/// requests, which mean a gateway bug) or is an expected answer (logged at debug: not-found
/// deletes during cleanup, resume conflicts, refusals while shutting down).
pub fn worth_a_warning(status: Status) -> bool {
    matches!(
        status,
        Status::Internal | Status::ChecksumMismatch | Status::DiskFull | Status::BadRequest
    )
}

pub fn to_store_meta(m: &sixfold_wire::ChunkMeta) -> store::ChunkMeta {
    store::ChunkMeta {
        file_id: m.file_id,
        part_index: m.part_index,
        part_count: m.part_count,
        file_offset: m.file_offset,
        length: m.length,
    }
}

fn hex(id: &[u8; 16]) -> String {
    store::ChunkId(*id).to_hex()
}

pub fn to_store_facts(f: sixfold_wire::FileFacts) -> store::FileFacts {
    store::FileFacts {
        name: f.name,
        content_type: f.content_type,
        created_unix_ms: f.created_unix_ms,
    }
}

pub fn to_store_mark(m: &sixfold_wire::ChunkMark) -> (store::ChunkId, store::CommitMark) {
    (
        store::ChunkId(m.chunk_id),
        store::CommitMark {
            kind: match m.mark.kind {
                sixfold_wire::MarkKind::Committed => store::MarkKind::Committed,
                sixfold_wire::MarkKind::Deleted => store::MarkKind::Deleted,
            },
            file_size: m.mark.file_size,
            checksum: m.mark.checksum,
            unix_ms: m.mark.unix_ms,
        },
    )
}

pub fn to_inventory_entry(item: store::InventoryItem) -> sixfold_wire::InventoryEntry {
    sixfold_wire::InventoryEntry {
        info: to_chunk_info(&item.stat),
        header_version: item.header_version,
        facts: item.facts.map(|f| sixfold_wire::FileFacts {
            name: f.name,
            content_type: f.content_type,
            created_unix_ms: f.created_unix_ms,
        }),
        mark: item.mark.map(|m| sixfold_wire::Mark {
            kind: match m.kind {
                store::MarkKind::Committed => sixfold_wire::MarkKind::Committed,
                store::MarkKind::Deleted => sixfold_wire::MarkKind::Deleted,
            },
            file_size: m.file_size,
            checksum: m.checksum,
            unix_ms: m.unix_ms,
        }),
    }
}

pub fn to_chunk_info(s: &store::ChunkStat) -> ChunkInfo {
    ChunkInfo {
        chunk_id: s.chunk_id.0,
        meta: sixfold_wire::ChunkMeta {
            file_id: s.meta.file_id,
            part_index: s.meta.part_index,
            part_count: s.meta.part_count,
            file_offset: s.meta.file_offset,
            length: s.meta.length,
        },
        durable_len: s.durable_len,
        crc32c: s.crc32c,
        state: match s.state {
            store::ChunkState::Writing => sixfold_wire::ChunkState::Writing,
            store::ChunkState::Complete => sixfold_wire::ChunkState::Complete,
        },
    }
}

/// Splits a page fetched with `limit + 1` entries into the page and the `more` flag.
pub fn list_page(mut stats: Vec<store::ChunkStat>, limit: u32) -> (Vec<ChunkInfo>, bool) {
    let more = stats.len() > limit as usize;
    stats.truncate(limit as usize);
    (stats.iter().map(to_chunk_info).collect(), more)
}

/// What to do with one piece of a put body, given the bytes still expected.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPiece {
    /// Store it; this many bytes remain after it.
    Take { remaining: u64 },
    /// The client sent more than the header announced.
    TooLong,
}

pub fn body_piece(remaining: u64, piece_len: usize) -> BodyPiece {
    match remaining.checked_sub(piece_len as u64) {
        Some(remaining) => BodyPiece::Take { remaining },
        None => BodyPiece::TooLong,
    }
}

#[cfg(test)]
mod tests {
    use sixfold_wire::{ChunkMeta, ChunkState, WireError};

    use super::*;
    use crate::store::ChunkId;

    fn meta(length: u64) -> ChunkMeta {
        ChunkMeta {
            file_id: [9; 16],
            part_index: 2,
            part_count: 6,
            file_offset: 40,
            length,
        }
    }

    /// A chunk id owned by `shard` of `shards`.
    fn id_on(shard: u16, shards: u16) -> [u8; 16] {
        (0u8..=255)
            .map(|b| [b; 16])
            .find(|id| shard_for(id, shards) == shard)
            .unwrap()
    }

    #[test]
    fn requests_for_another_shard_are_refused() {
        let id = id_on(1, 4);
        let get = Request::Get {
            chunk_id: id,
            offset: 0,
            len: 1,
        };
        assert_eq!(check_request(&get, 1, 4), Ok(()));
        let err = check_request(&get, 2, 4).unwrap_err();
        assert_eq!((err.op, err.status), (Op::Get, Status::BadRequest));
        assert!(err.message.starts_with("wrong shard"), "{}", err.message);
        // Requests without a chunk go to any shard.
        assert_eq!(check_request(&Request::NodeInfo, 3, 4), Ok(()));
        assert_eq!(
            check_request(
                &Request::List {
                    after: Some(id),
                    limit: 5
                },
                0,
                4
            ),
            Ok(())
        );
        // One shard owns everything.
        assert_eq!(check_request(&get, 0, 1), Ok(()));
    }

    #[test]
    fn store_errors_map_to_statuses_and_details() {
        let cases: Vec<(StoreError, Option<u64>, Status, u64)> = vec![
            (StoreError::NotFound, None, Status::NotFound, 0),
            (
                StoreError::NotComplete { durable_len: 7 },
                None,
                Status::NotFound,
                0,
            ),
            (
                StoreError::Conflict {
                    durable_len: 3 << 20,
                },
                None,
                Status::Conflict,
                3 << 20,
            ),
            (StoreError::Busy, Some(1 << 20), Status::Conflict, 1 << 20),
            (StoreError::Busy, None, Status::Conflict, 0),
            (
                StoreError::ChecksumMismatch { block: 5 },
                None,
                Status::ChecksumMismatch,
                5,
            ),
            (StoreError::DiskFull, None, Status::DiskFull, 0),
            (
                StoreError::BadRequest("x".into()),
                None,
                Status::BadRequest,
                0,
            ),
            (StoreError::Corrupt("y".into()), None, Status::Internal, 0),
            (
                StoreError::Io(std::io::Error::other("z")),
                None,
                Status::Internal,
                0,
            ),
        ];
        for (error, durable, status, detail) in cases {
            let r = store_error_response(Op::Put, &error, durable);
            assert_eq!(
                (r.op, r.status, r.detail),
                (Op::Put, status, detail),
                "{error:?}"
            );
            assert_eq!(r.message, error.to_string());
            // Every mapped error encodes to a valid response header.
            let bytes = sixfold_wire::Response::Error(r.clone()).to_vec();
            let (back, _) = sixfold_wire::Response::decode(&bytes).unwrap();
            assert_eq!(back, sixfold_wire::Response::Error(r));
        }
    }

    #[test]
    fn bad_headers_are_answered_when_the_op_is_known() {
        let reason = WireError::HeaderChecksum {
            expected: 1,
            actual: 2,
        }
        .to_string();
        let resp = header_refusal(Some(Op::Stat as u8), &reason).unwrap();
        assert_eq!((resp.op, resp.status), (Op::Stat, Status::BadRequest));
        assert!(resp.message.contains("checksum"), "{}", resp.message);
        assert_eq!(header_refusal(Some(99), &reason), None);
        assert_eq!(header_refusal(None, &reason), None);
    }

    #[test]
    fn body_pieces_never_exceed_the_announced_length() {
        assert_eq!(body_piece(10, 4), BodyPiece::Take { remaining: 6 });
        assert_eq!(body_piece(6, 6), BodyPiece::Take { remaining: 0 });
        assert_eq!(body_piece(6, 7), BodyPiece::TooLong);
        assert_eq!(body_piece(0, 1), BodyPiece::TooLong);
        assert_eq!(body_piece(0, 0), BodyPiece::Take { remaining: 0 });
    }

    #[test]
    fn stats_convert_to_chunk_infos_and_pages() {
        let stat = |b: u8, state| store::ChunkStat {
            chunk_id: ChunkId([b; 16]),
            meta: to_store_meta(&meta(100)),
            durable_len: if state == store::ChunkState::Complete {
                100
            } else {
                0
            },
            crc32c: 0xdead_beef,
            state,
        };
        let info = to_chunk_info(&stat(1, store::ChunkState::Complete));
        assert_eq!(info.chunk_id, [1; 16]);
        assert_eq!(info.meta, meta(100));
        assert_eq!((info.durable_len, info.crc32c), (100, 0xdead_beef));
        assert_eq!(info.state, ChunkState::Complete);
        assert_eq!(
            to_chunk_info(&stat(2, store::ChunkState::Writing)).state,
            ChunkState::Writing
        );

        let page = vec![
            stat(1, store::ChunkState::Complete),
            stat(2, store::ChunkState::Writing),
            stat(3, store::ChunkState::Complete),
        ];
        let (entries, more) = list_page(page.clone(), 2);
        assert!(more);
        assert_eq!(
            entries.iter().map(|e| e.chunk_id[0]).collect::<Vec<_>>(),
            [1, 2]
        );
        let (entries, more) = list_page(page, 3);
        assert!(!more);
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn only_failures_that_need_attention_are_warnings() {
        for s in [
            Status::Internal,
            Status::ChecksumMismatch,
            Status::DiskFull,
            Status::BadRequest,
        ] {
            assert!(worth_a_warning(s), "{s}");
        }
        for s in [
            Status::NotFound,
            Status::Conflict,
            Status::ShuttingDown,
            Status::Ok,
        ] {
            assert!(!worth_a_warning(s), "{s}");
        }
    }
}
