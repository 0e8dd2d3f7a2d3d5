//! Property tests: every message survives encode → decode unchanged, a stream reader that sees
//! the bytes one at a time finds the same message, and no byte string makes a decoder panic.

use proptest::prelude::*;
use sixfold_wire::*;

fn id() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn meta() -> impl Strategy<Value = ChunkMeta> {
    (id(), 1u32..=64, any::<u64>(), any::<u64>()).prop_flat_map(|(file_id, count, off, len)| {
        (0..count).prop_map(move |index| {
            let length = len % (u64::MAX - off % (1 << 40));
            ChunkMeta {
                file_id,
                part_index: index,
                part_count: count,
                file_offset: off % (1 << 40),
                length,
            }
        })
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (id(), meta(), any::<u64>()).prop_map(|(chunk_id, meta, r)| Request::Put {
            facts: None,
            chunk_id,
            meta,
            resume_from: if meta.length == 0 {
                0
            } else {
                r % (meta.length + 1)
            },
        }),
        (id(), any::<u32>(), any::<u32>()).prop_map(|(chunk_id, o, l)| Request::Get {
            chunk_id,
            offset: u64::from(o),
            len: u64::from(l),
        }),
        id().prop_map(|chunk_id| Request::Delete { chunk_id }),
        id().prop_map(|chunk_id| Request::Stat { chunk_id }),
        (proptest::option::of(id()), 1u32..=MAX_LIST_LIMIT)
            .prop_map(|(after, limit)| Request::List { after, limit }),
        Just(Request::NodeInfo),
        (id(), meta(), facts()).prop_map(|(chunk_id, meta, facts)| Request::Put {
            facts: Some(facts),
            chunk_id,
            meta,
            resume_from: 0,
        }),
        proptest::collection::vec(chunk_mark(), 1..20).prop_map(|marks| Request::Mark { marks }),
        (proptest::option::of(id()), 1u32..=MAX_INVENTORY_LIMIT)
            .prop_map(|(after, limit)| Request::Inventory { after, limit }),
        id().prop_map(|chunk_id| Request::Verify { chunk_id }),
    ]
}

fn facts() -> impl Strategy<Value = FileFacts> {
    (
        ".{0,40}",
        proptest::option::of("[a-z/+.-]{1,30}"),
        any::<u64>(),
    )
        .prop_map(|(name, content_type, created_unix_ms)| FileFacts {
            name,
            content_type,
            created_unix_ms,
        })
}

fn mark() -> impl Strategy<Value = Mark> {
    (any::<bool>(), any::<u64>(), id(), any::<u64>()).prop_map(
        |(committed, file_size, checksum, unix_ms)| Mark {
            kind: if committed {
                MarkKind::Committed
            } else {
                MarkKind::Deleted
            },
            file_size,
            checksum,
            unix_ms,
        },
    )
}

fn chunk_mark() -> impl Strategy<Value = ChunkMark> {
    (id(), mark()).prop_map(|(chunk_id, mark)| ChunkMark { chunk_id, mark })
}

fn inventory_entry() -> impl Strategy<Value = InventoryEntry> {
    (
        info(),
        1u16..=2,
        proptest::option::of(facts()),
        proptest::option::of(mark()),
    )
        .prop_map(|(info, header_version, facts, mark)| InventoryEntry {
            info,
            header_version,
            facts,
            mark,
        })
}

fn state() -> impl Strategy<Value = ChunkState> {
    prop_oneof![Just(ChunkState::Writing), Just(ChunkState::Complete)]
}

fn info() -> impl Strategy<Value = ChunkInfo> {
    (id(), meta(), any::<u64>(), any::<u32>(), state()).prop_map(
        |(chunk_id, meta, d, crc32c, state)| ChunkInfo {
            chunk_id,
            meta,
            durable_len: if meta.length == 0 {
                0
            } else {
                d % (meta.length + 1)
            },
            crc32c,
            state,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Put),
        Just(Op::Get),
        Just(Op::Delete),
        Just(Op::Stat),
        Just(Op::List),
        Just(Op::NodeInfo),
        Just(Op::PutFile),
        Just(Op::Mark),
        Just(Op::Inventory),
        Just(Op::Verify),
    ]
}

fn error_status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::NotFound),
        Just(Status::ChecksumMismatch),
        Just(Status::DiskFull),
        Just(Status::BadRequest),
        Just(Status::Conflict),
        Just(Status::Internal),
        Just(Status::ShuttingDown),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u64>(), any::<u32>()).prop_map(|(length, crc32c)| Response::Put { length, crc32c }),
        any::<u64>().prop_map(|length| Response::Get { length }),
        Just(Response::Delete),
        info().prop_map(Response::Stat),
        (proptest::collection::vec(info(), 0..40), any::<bool>())
            .prop_map(|(entries, more)| Response::List { entries, more }),
        (
            id(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(
                |(node_id, shard, shards, capacity, used, chunk_count, in_flight)| {
                    Response::NodeInfo(NodeInfo {
                        node_id,
                        shard,
                        shards,
                        capacity,
                        used,
                        chunk_count,
                        in_flight,
                    })
                }
            ),
        any::<u16>().prop_map(|n| Response::Mark {
            recorded: n % (MAX_MARKS + 1)
        }),
        (
            proptest::collection::vec(inventory_entry(), 0..=MAX_INVENTORY_LIMIT as usize),
            any::<bool>()
        )
            .prop_map(|(entries, more)| Response::Inventory { entries, more }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(length, crc32c)| Response::Verify { length, crc32c }),
        (op(), error_status(), any::<u64>(), ".{0,80}").prop_map(|(op, status, detail, msg)| {
            Response::Error(ErrorResponse::new(op, status, detail, msg))
        }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in request(), body in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut buf = req.to_vec();
        let header = buf.len();
        buf.extend_from_slice(&body);
        let (back, used) = Request::decode(&buf).unwrap();
        prop_assert_eq!(&back, &req);
        prop_assert_eq!(used, header);
        prop_assert_eq!(&buf[used..], &body[..]);
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        let buf = resp.to_vec();
        let (back, used) = Response::decode(&buf).unwrap();
        prop_assert_eq!(back, resp);
        prop_assert_eq!(used, buf.len());
    }

    #[test]
    fn byte_by_byte_reader_finds_the_same_request(req in request()) {
        let buf = req.to_vec();
        let mut seen = Vec::new();
        let mut found = None;
        for b in &buf {
            seen.push(*b);
            match try_decode_request(&seen).unwrap() {
                Decoded::NeedMore(n) => prop_assert!(n > seen.len()),
                Decoded::Message(m, used) => { found = Some((m, used)); break; }
            }
        }
        let (m, used) = found.expect("decoded once the whole header arrived");
        prop_assert_eq!(m, req);
        prop_assert_eq!(used, buf.len());
    }

    #[test]
    fn any_flipped_bit_is_detected(req in request(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut buf = req.to_vec();
        let i = pos.index(buf.len());
        buf[i] ^= 1 << bit;
        prop_assert!(Request::decode(&buf).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        let _ = try_decode_request(&bytes);
        let _ = try_decode_response(&bytes);
    }

    #[test]
    fn well_enveloped_garbage_never_panics(kind in any::<u8>(), fields in proptest::collection::vec(any::<u8>(), 0..256)) {
        // A valid envelope and checksum around random fields reaches the field decoders, which a
        // purely random byte string almost never does.
        let buf = envelope(kind, &fields);
        let _ = Request::decode(&buf);
        let _ = Response::decode(&buf);
    }
}

fn envelope(kind: u8, fields: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(b"SXFW");
    buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    buf.push(kind);
    buf.push(0);
    buf.extend_from_slice(&((PREFIX_LEN + fields.len() + 4) as u32).to_le_bytes());
    buf.extend_from_slice(fields);
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

#[test]
fn known_errors_are_typed() {
    let good = Request::Stat { chunk_id: [9; 16] }.to_vec();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        Request::decode(&bad_magic),
        Err(WireError::BadMagic(_))
    ));

    let mut bad_version = good.clone();
    bad_version[4] = 2;
    assert_eq!(
        Request::decode(&bad_version),
        Err(WireError::UnsupportedVersion(2))
    );

    assert!(matches!(
        Request::decode(&good[..good.len() - 1]),
        Err(WireError::Incomplete { .. })
    ));

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert!(matches!(
        Request::decode(&bad_crc),
        Err(WireError::HeaderChecksum { .. })
    ));

    assert_eq!(
        Request::decode(&envelope(99, &[])),
        Err(WireError::UnknownOp(99))
    );
    assert_eq!(
        Response::decode(&envelope(200, &[1])),
        Err(WireError::UnknownStatus(200))
    );

    // Stat with one byte too many after its chunk id.
    let mut fields = vec![9u8; 17];
    fields[16] = 0;
    assert_eq!(
        Request::decode(&envelope(Op::Stat as u8, &fields)),
        Err(WireError::TrailingBytes(1))
    );

    // Put whose part index is not below its part count.
    let put = Request::Put {
        chunk_id: [1; 16],
        meta: ChunkMeta {
            file_id: [2; 16],
            part_index: 0,
            part_count: 1,
            file_offset: 0,
            length: 10,
        },
        resume_from: 0,
        facts: None,
    }
    .to_vec();
    let mut fields = put[PREFIX_LEN..put.len() - 4].to_vec();
    fields[32..36].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(
        Request::decode(&envelope(Op::Put as u8, &fields)),
        Err(WireError::InvalidField {
            field: "part_index",
            ..
        })
    ));
}

#[test]
fn put_body_length_is_what_remains_after_resume() {
    let req = Request::Put {
        chunk_id: [1; 16],
        meta: ChunkMeta {
            file_id: [2; 16],
            part_index: 3,
            part_count: 6,
            file_offset: 30,
            length: 10,
        },
        resume_from: 4,
        facts: None,
    };
    assert_eq!(req.body_len(), 6);
    assert_eq!(req.chunk_id(), Some(&[1; 16]));
}

#[test]
fn long_error_messages_are_cut_at_a_char_boundary() {
    let e = ErrorResponse::new(Op::Get, Status::Internal, 0, "é".repeat(1000));
    assert!(e.message.len() <= MAX_MESSAGE_LEN);
    assert!(e.message.chars().all(|c| c == 'é'));
    let resp = Response::Error(e);
    assert_eq!(Response::decode(&resp.to_vec()).unwrap().0, resp);
}
