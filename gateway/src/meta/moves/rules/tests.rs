use super::*;
use crate::meta::PartRecord;

const COPY: ChunkId = [0xc0; 16];

fn node(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A committed file of six parts, part `i` on node `i + 1` as chunk `[i; 16]`.
fn file() -> FileRecord {
    FileRecord {
        id: Uuid::from_u128(0xf11e),
        name: "data.bin".into(),
        content_type: None,
        size: 6 << 20,
        created_unix_ms: 1_000,
        checksum: "0123456789abcdef0123456789abcdef".into(),
        parts: (0..6u32)
            .map(|i| PartRecord {
                index: i,
                offset: u64::from(i) << 20,
                len: 1 << 20,
                node_id: node(u128::from(i) + 1),
                chunk_id: [i as u8; 16],
                crc32c: 0x1000 + i,
                stored_len: None,
            })
            .collect(),
    }
}

fn request(part_index: u32, from: u128, to: u128) -> MoveRequest {
    MoveRequest {
        file_id: file().id,
        part_index,
        from_node: node(from),
        to_node: node(to),
        to_chunk: COPY,
    }
}

/// The record `begin` makes for part 2 moving from node 3 to node 7.
fn copying() -> MoveRecord {
    let (outcome, writes) = begin(&request(2, 3, 7), Some(file()), false, 10).expect("begin");
    assert_eq!(outcome, BeginOutcome::Recorded(file()));
    match writes.as_slice() {
        [MoveWrite::Reference { .. }, MoveWrite::PutMove(m)] => m.clone(),
        other => panic!("unexpected writes {other:?}"),
    }
}

#[test]
fn a_move_begins_by_protecting_the_copy_and_recording_the_source_as_the_file_has_it() {
    let m = copying();
    assert_eq!(
        (m.from_chunk, m.len, m.crc32c, m.state),
        ([2; 16], 1 << 20, 0x1002, MoveState::Copying)
    );
    let (_, writes) = begin(&request(2, 3, 7), Some(file()), false, 10).expect("begin");
    assert_eq!(
        writes[0],
        MoveWrite::Reference {
            key: chunk_key(&node(7), &COPY),
            file_id: file().id
        }
    );
    assert_eq!(m.key(), chunk_key(&node(7), &COPY));
    assert_eq!(m.source_key(), chunk_key(&node(3), &[2; 16]));
}

#[test]
fn a_stale_plan_records_nothing_and_a_used_chunk_id_is_a_conflict() {
    let cases = [
        (request(2, 3, 7), None, "the file is gone"),
        (request(9, 3, 7), Some(file()), "the file has no such part"),
        (
            request(2, 4, 7),
            Some(file()),
            "the part is no longer at the source",
        ),
        (
            request(2, 3, 1),
            Some(file()),
            "another part of the file is on the target",
        ),
    ];
    for (req, f, why) in cases {
        // Staleness is decided before the target chunk id is looked at.
        assert_eq!(
            begin(&req, f, true, 10).expect("stale"),
            (BeginOutcome::Stale(why), Vec::new())
        );
    }
    assert!(matches!(
        begin(&request(2, 3, 7), Some(file()), true, 10),
        Err(MetaError::Conflict(_))
    ));
}

#[test]
fn the_swap_names_the_copy_keeps_the_source_indexed_and_leaves_the_copys_mark_pending() {
    let m = copying();
    assert_eq!(swap_reads_file(Some(&m)), Some(file().id));
    let (outcome, writes) = swap(Some(m.clone()), Some(file()), false, 500, 20).expect("swap");
    assert_eq!(outcome, SwapOutcome::Swapped);
    let mut swapped = file();
    swapped.parts[2].node_id = node(7);
    swapped.parts[2].chunk_id = COPY;
    let mut after = m.clone();
    after.state = MoveState::Swapped {
        release_after_unix_ms: 500,
    };
    assert_eq!(
        writes,
        vec![
            MoveWrite::PutFile(swapped),
            MoveWrite::ForgetMark {
                key: m.source_key()
            },
            MoveWrite::PendMark {
                key: m.key(),
                mark: CommitMark::of(&file()).expect("mark"),
            },
            MoveWrite::PutMove(after.clone()),
        ]
    );
    // No write touches the index: the source stays referenced for reads that started before.
    assert!(!writes.iter().any(|w| matches!(
        w,
        MoveWrite::Unreference { .. } | MoveWrite::QueueDelete { .. }
    )));
    // A delivered mark is not left pending.
    let (_, writes) = swap(Some(m), Some(file()), true, 500, 20).expect("swap");
    assert!(
        !writes
            .iter()
            .any(|w| matches!(w, MoveWrite::PendMark { .. }))
    );
    // Swapping again, or an unknown move, changes nothing and reads no file.
    assert_eq!(swap_reads_file(Some(&after)), None);
    assert_eq!(
        swap(Some(after), None, false, 500, 30).expect("again"),
        (SwapOutcome::Swapped, Vec::new())
    );
    assert_eq!(swap_reads_file(None), None);
    assert_eq!(
        swap(None, None, false, 500, 30).expect("unknown"),
        (SwapOutcome::Unknown, Vec::new())
    );
}

#[test]
fn a_file_deleted_or_changed_before_the_swap_drops_the_copy() {
    let m = copying();
    let dropped = drop_copy(&m, 20).to_vec();
    assert_eq!(
        dropped,
        vec![
            MoveWrite::Unreference { key: m.key() },
            MoveWrite::ForgetMark { key: m.key() },
            MoveWrite::QueueDelete {
                key: m.key(),
                entry: DeleteEntry {
                    file_id: Some(m.file_id),
                    reason: DeleteReason::Aborted,
                    enqueued_unix_ms: 20,
                },
            },
            MoveWrite::DropMove { key: m.key() },
        ]
    );
    assert_eq!(
        swap(Some(m.clone()), None, true, 500, 20).expect("deleted"),
        (
            SwapOutcome::Abandoned("the file was deleted"),
            dropped.clone()
        )
    );
    let mut elsewhere = file();
    elsewhere.parts[2].chunk_id = [0xee; 16];
    let mut changed = file();
    changed.parts[2].crc32c ^= 1;
    let mut crowded = file();
    crowded.parts[4].node_id = node(7);
    for (f, why) in [
        (elsewhere, "the part is no longer at the source"),
        (changed, "the part changed"),
        (crowded, "another part of the file is on the target"),
    ] {
        assert_eq!(
            swap(Some(m.clone()), Some(f), true, 500, 20).expect("changed"),
            (SwapOutcome::Abandoned(why), dropped.clone())
        );
    }
}

#[test]
fn only_copying_moves_are_abandoned_or_rolled_back() {
    let m = copying();
    let mut swapped = m.clone();
    swapped.to_chunk = [0xd0; 16];
    swapped.state = MoveState::Swapped {
        release_after_unix_ms: 900,
    };
    assert_eq!(abandon(Some(&m), 5), (true, drop_copy(&m, 5).to_vec()));
    assert_eq!(abandon(Some(&swapped), 5), (false, Vec::new()));
    assert_eq!(abandon(None, 5), (false, Vec::new()));
    let (rolled, writes) = roll_back(vec![m.clone(), swapped], 5);
    assert_eq!(rolled, vec![m.clone()]);
    assert_eq!(writes, drop_copy(&m, 5).to_vec());
}

#[test]
fn a_source_goes_only_after_its_grace_and_only_this_files_hold_is_released() {
    let mut m = copying();
    assert!(!m.is_due(u64::MAX));
    m.state = MoveState::Swapped {
        release_after_unix_ms: 500,
    };
    assert!(!m.is_due(499));
    assert!(m.is_due(500));
    let queued = MoveWrite::QueueDelete {
        key: m.source_key(),
        entry: DeleteEntry {
            file_id: Some(m.file_id),
            reason: DeleteReason::Moved,
            enqueued_unix_ms: 600,
        },
    };
    let dropped = MoveWrite::DropMove { key: m.key() };
    assert_eq!(
        release(&m, Some(m.file_id.as_bytes()), 600),
        vec![
            MoveWrite::Unreference {
                key: m.source_key()
            },
            queued.clone(),
            dropped.clone(),
        ]
    );
    let other = Uuid::from_u128(0xbad);
    assert_eq!(
        release(&m, Some(other.as_bytes()), 600),
        vec![queued.clone(), dropped.clone()]
    );
    assert_eq!(release(&m, None, 600), vec![queued, dropped]);
}
