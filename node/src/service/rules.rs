//! The pure part of the protocol handler: which requests a shard takes, and how store results
//! become wire responses. No I/O, so every rule is unit-tested here.

use sixfold_wire::registration::Damage;
use sixfold_wire::{ChunkInfo, ErrorResponse, Op, Request, Status, shard_for};

use crate::store::{
    self, BlockError, DeleteError, MarkError, PutError, ReadError, StatError, VerifyError,
};

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

// One answer function per store operation, each an exhaustive match without a wildcard: a
// new store error does not compile until it has a status here (and a row in the tests).

/// The answer to a put that failed at any step. `durable_len` is the chunk's durable length
/// when known, for the `Conflict` a busy chunk gets.
pub fn put_error_response(error: &PutError, durable_len: Option<u64>) -> ErrorResponse {
    let (status, detail) = match error {
        PutError::Conflict { durable_len } => (Status::Conflict, *durable_len),
        // Another put holds the chunk: a conflict with its state; the client may stat and
        // resume once that put ends.
        PutError::Busy => (Status::Conflict, durable_len.unwrap_or(0)),
        PutError::DiskFull => (Status::DiskFull, 0),
        PutError::BadRequest(_) => (Status::BadRequest, 0),
        PutError::Corrupt(_) => (Status::Internal, 0),
        PutError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(Op::Put, status, detail, error.to_string())
}

/// The answer to a `Get` whose range could not be opened.
pub fn read_error_response(error: &ReadError) -> ErrorResponse {
    let (status, detail) = match error {
        ReadError::NotFound => (Status::NotFound, 0),
        // Not readable yet: the protocol calls that not found, for Get.
        ReadError::NotComplete { .. } => (Status::NotFound, 0),
        ReadError::BadRequest(_) => (Status::BadRequest, 0),
        ReadError::Corrupt(_) => (Status::Internal, 0),
        ReadError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(Op::Get, status, detail, error.to_string())
}

/// The answer (or, once the body started, the reset code) for a `Get` block that failed.
pub fn block_error_response(error: &BlockError) -> ErrorResponse {
    let (status, detail) = match error {
        BlockError::ChecksumMismatch { block } => (Status::ChecksumMismatch, *block),
        BlockError::Corrupt(_) => (Status::Internal, 0),
        BlockError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(Op::Get, status, detail, error.to_string())
}

/// What a failed read says about the chunk's health: `None` for failures that are not the
/// chunk's fault (absent, unfinished, a bad range). Recorded and reported like a scrub's find.
pub fn read_damage(error: &ReadError) -> Option<(Damage, Option<u64>)> {
    match error {
        ReadError::NotFound | ReadError::NotComplete { .. } | ReadError::BadRequest(_) => None,
        ReadError::Corrupt(_) => Some((Damage::ChecksumMismatch, None)),
        ReadError::Io(_) => Some((Damage::Unreadable, None)),
    }
}

/// [`read_damage`] for a block that failed once the read was open.
pub fn block_damage(error: &BlockError) -> (Damage, Option<u64>) {
    match error {
        BlockError::ChecksumMismatch { block } => (Damage::ChecksumMismatch, Some(*block)),
        BlockError::Corrupt(_) => (Damage::ChecksumMismatch, None),
        BlockError::Io(_) => (Damage::Unreadable, None),
    }
}

pub fn stat_error_response(error: &StatError) -> ErrorResponse {
    let (status, detail) = match error {
        StatError::NotFound => (Status::NotFound, 0),
    };
    ErrorResponse::new(Op::Stat, status, detail, error.to_string())
}

/// The answer to a failed `Delete`. `durable_len` is the chunk's durable length when known,
/// for the `Conflict` a busy chunk gets.
pub fn delete_error_response(error: &DeleteError, durable_len: Option<u64>) -> ErrorResponse {
    let (status, detail) = match error {
        DeleteError::NotFound => (Status::NotFound, 0),
        DeleteError::Busy => (Status::Conflict, durable_len.unwrap_or(0)),
        DeleteError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(Op::Delete, status, detail, error.to_string())
}

pub fn mark_error_response(error: &MarkError) -> ErrorResponse {
    let (status, detail) = match error {
        MarkError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(Op::Mark, status, detail, error.to_string())
}

pub fn verify_error_response(error: &VerifyError) -> ErrorResponse {
    let (status, detail) = match error {
        VerifyError::NotFound => (Status::NotFound, 0),
        VerifyError::ChecksumMismatch { block } => (Status::ChecksumMismatch, *block),
        VerifyError::Corrupt(_) => (Status::Internal, 0),
        VerifyError::Io(_) => (Status::Internal, 0),
    };
    ErrorResponse::new(Op::Verify, status, detail, error.to_string())
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

    /// One row of an error table: the answer, the error's message, and the op, status and
    /// detail expected.
    fn assert_answer(r: ErrorResponse, message: String, expected: (Op, Status, u64)) {
        assert_eq!((r.op, r.status, r.detail), expected, "{message}");
        assert_eq!(r.message, message);
        // Every mapped error encodes to a valid response header.
        let bytes = sixfold_wire::Response::Error(r.clone()).to_vec();
        let (back, _) = sixfold_wire::Response::decode(&bytes).unwrap();
        assert_eq!(back, sixfold_wire::Response::Error(r));
    }

    fn io(why: &str) -> std::io::Error {
        std::io::Error::other(why.to_string())
    }

    #[test]
    fn put_errors_map_to_statuses_and_details() {
        let cases: Vec<(PutError, Option<u64>, Status, u64)> = vec![
            (
                PutError::Conflict {
                    durable_len: 3 << 20,
                },
                None,
                Status::Conflict,
                3 << 20,
            ),
            // The chunk's own durable length, not the one the busy chunk is asked about.
            (
                PutError::Conflict { durable_len: 5 },
                Some(9),
                Status::Conflict,
                5,
            ),
            (PutError::Busy, Some(1 << 20), Status::Conflict, 1 << 20),
            (PutError::Busy, None, Status::Conflict, 0),
            (PutError::DiskFull, None, Status::DiskFull, 0),
            (
                PutError::BadRequest("x".into()),
                None,
                Status::BadRequest,
                0,
            ),
            (PutError::Corrupt("y".into()), None, Status::Internal, 0),
            (PutError::Io(io("z")), None, Status::Internal, 0),
        ];
        for (error, durable, status, detail) in cases {
            let r = put_error_response(&error, durable);
            assert_answer(r, error.to_string(), (Op::Put, status, detail));
        }
    }

    #[test]
    fn read_errors_map_to_statuses_and_details() {
        let cases: Vec<(ReadError, Status, u64)> = vec![
            (ReadError::NotFound, Status::NotFound, 0),
            (
                ReadError::NotComplete { durable_len: 7 },
                Status::NotFound,
                0,
            ),
            (ReadError::BadRequest("x".into()), Status::BadRequest, 0),
            (ReadError::Corrupt("y".into()), Status::Internal, 0),
            (ReadError::Io(io("z")), Status::Internal, 0),
        ];
        for (error, status, detail) in cases {
            let r = read_error_response(&error);
            assert_answer(r, error.to_string(), (Op::Get, status, detail));
        }
    }

    #[test]
    fn block_errors_map_to_statuses_and_details() {
        let cases: Vec<(BlockError, Status, u64)> = vec![
            (
                BlockError::ChecksumMismatch { block: 5 },
                Status::ChecksumMismatch,
                5,
            ),
            (BlockError::Corrupt("y".into()), Status::Internal, 0),
            (BlockError::Io(io("z")), Status::Internal, 0),
        ];
        for (error, status, detail) in cases {
            let r = block_error_response(&error);
            assert_answer(r, error.to_string(), (Op::Get, status, detail));
        }
    }

    #[test]
    fn stat_errors_map_to_statuses_and_details() {
        let cases: Vec<(StatError, Status, u64)> = vec![(StatError::NotFound, Status::NotFound, 0)];
        for (error, status, detail) in cases {
            let r = stat_error_response(&error);
            assert_answer(r, error.to_string(), (Op::Stat, status, detail));
        }
    }

    #[test]
    fn delete_errors_map_to_statuses_and_details() {
        let cases: Vec<(DeleteError, Option<u64>, Status, u64)> = vec![
            (DeleteError::NotFound, None, Status::NotFound, 0),
            (DeleteError::Busy, Some(1 << 20), Status::Conflict, 1 << 20),
            (DeleteError::Busy, None, Status::Conflict, 0),
            (DeleteError::Io(io("z")), None, Status::Internal, 0),
        ];
        for (error, durable, status, detail) in cases {
            let r = delete_error_response(&error, durable);
            assert_answer(r, error.to_string(), (Op::Delete, status, detail));
        }
    }

    #[test]
    fn mark_errors_map_to_statuses_and_details() {
        let cases: Vec<(MarkError, Status, u64)> =
            vec![(MarkError::Io(io("z")), Status::Internal, 0)];
        for (error, status, detail) in cases {
            let r = mark_error_response(&error);
            assert_answer(r, error.to_string(), (Op::Mark, status, detail));
        }
    }

    #[test]
    fn failed_reads_say_what_is_wrong_with_the_chunk() {
        assert_eq!(read_damage(&ReadError::NotFound), None);
        assert_eq!(
            read_damage(&ReadError::NotComplete { durable_len: 1 }),
            None
        );
        assert_eq!(read_damage(&ReadError::BadRequest("r".into())), None);
        assert_eq!(
            read_damage(&ReadError::Corrupt("table".into())),
            Some((Damage::ChecksumMismatch, None))
        );
        assert_eq!(
            read_damage(&ReadError::Io(io("x"))),
            Some((Damage::Unreadable, None))
        );
        assert_eq!(
            block_damage(&BlockError::ChecksumMismatch { block: 7 }),
            (Damage::ChecksumMismatch, Some(7))
        );
        assert_eq!(
            block_damage(&BlockError::Corrupt("short".into())),
            (Damage::ChecksumMismatch, None)
        );
        assert_eq!(
            block_damage(&BlockError::Io(io("y"))),
            (Damage::Unreadable, None)
        );
    }

    #[test]
    fn verify_errors_map_to_statuses_and_details() {
        let cases: Vec<(VerifyError, Status, u64)> = vec![
            (VerifyError::NotFound, Status::NotFound, 0),
            (
                VerifyError::ChecksumMismatch { block: 5 },
                Status::ChecksumMismatch,
                5,
            ),
            (VerifyError::Corrupt("y".into()), Status::Internal, 0),
            (VerifyError::Io(io("z")), Status::Internal, 0),
        ];
        for (error, status, detail) in cases {
            let r = verify_error_response(&error);
            assert_answer(r, error.to_string(), (Op::Verify, status, detail));
        }
    }

    /// The messages the wire carries, as they read before the errors were split per
    /// operation: clients and operators see the same text.
    #[test]
    fn error_messages_read_as_before() {
        let cases: Vec<(String, &str)> = vec![
            (ReadError::NotFound.to_string(), "chunk not found"),
            (
                ReadError::NotComplete { durable_len: 7 }.to_string(),
                "chunk is not complete (durable length 7)",
            ),
            (
                PutError::Conflict { durable_len: 5 }.to_string(),
                "conflict: the chunk's durable length is 5",
            ),
            (
                PutError::Busy.to_string(),
                "chunk is busy: another put is in progress",
            ),
            (
                DeleteError::Busy.to_string(),
                "chunk is busy: another put is in progress",
            ),
            (
                BlockError::ChecksumMismatch { block: 5 }.to_string(),
                "checksum mismatch in block 5",
            ),
            (PutError::DiskFull.to_string(), "disk full"),
            (
                ReadError::BadRequest("x".into()).to_string(),
                "bad request: x",
            ),
            (
                VerifyError::Corrupt("y".into()).to_string(),
                "corrupt chunk store data: y",
            ),
            (MarkError::Io(io("z")).to_string(), "I/O error: z"),
            (StatError::NotFound.to_string(), "chunk not found"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
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
