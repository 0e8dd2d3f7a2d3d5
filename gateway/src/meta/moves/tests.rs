use super::*;
use crate::meta::{DeleteReason, PlannedPart, UploadSession};
use crate::split::{SplitPolicy, plan};

const CHECKSUM: &str = "0123456789abcdef0123456789abcdef";

struct Fixture {
    _dir: tempfile::TempDir,
    meta: Meta,
    nodes: Vec<Uuid>,
    file: FileRecord,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
    let nodes: Vec<Uuid> = (1..=7).map(Uuid::from_u128).collect();
    let ranges = plan(6 << 20, &SplitPolicy::default());
    let session = UploadSession {
        file_id: Uuid::new_v4(),
        name: "data.bin".into(),
        content_type: None,
        size: Some(6 << 20),
        created_unix_ms: 1_000,
        expires_unix_ms: 3_601_000,
        parts: PlannedPart::plan(&ranges, &nodes[..6]).expect("plan"),
        multipart: false,
        owner: None,
    };
    meta.begin_session(&session).expect("begin");
    let acks = session
        .parts
        .iter()
        .map(|p| p.verify_ack(p.len, 0x1000 + p.index, 0x1000 + p.index))
        .collect::<Result<Vec<_>, _>>()
        .expect("acks");
    let file = meta
        .commit_session(&session.file_id, acks, CHECKSUM.into(), 6 << 20)
        .expect("commit");
    meta.marks_delivered(
        &file
            .parts
            .iter()
            .map(|p| (p.node_id, p.chunk_id))
            .collect::<Vec<_>>(),
    )
    .expect("marks");
    Fixture {
        _dir: dir,
        meta,
        nodes,
        file,
    }
}

const COPY: ChunkId = [0xc0; 16];

fn queued(meta: &Meta, node: &Uuid) -> Vec<(ChunkId, DeleteReason)> {
    meta.pending_deletes(node, 100)
        .expect("queue")
        .into_iter()
        .map(|d| (d.chunk_id, d.reason))
        .collect()
}

#[test]
fn a_move_swaps_the_location_and_releases_the_source_after_its_grace() {
    let f = fixture();
    let (src, dst) = (f.nodes[2], f.nodes[6]);
    let source = f.file.parts[2].chunk_id;
    let begun = f
        .meta
        .begin_move(&f.file.id, 2, &src, &dst, COPY, 10)
        .expect("begin");
    assert_eq!(begun, BeginOutcome::Recorded(f.file.clone()));
    // The copy is protected from orphan scans; the file still names the source.
    assert!(
        f.meta
            .referenced_chunks(&dst)
            .expect("refs")
            .contains(&COPY)
    );
    assert_eq!(
        f.meta.get_file(&f.file.id).expect("get"),
        Some(f.file.clone())
    );
    assert_eq!(
        f.meta.swap_move(&dst, &COPY, false, 500, 20).expect("swap"),
        SwapOutcome::Swapped
    );
    let after = f.meta.get_file(&f.file.id).expect("get").expect("file");
    assert_eq!(
        (after.parts[2].node_id, after.parts[2].chunk_id),
        (dst, COPY)
    );
    assert_eq!(after.parts[2].crc32c, f.file.parts[2].crc32c);
    // The copy's mark waits for the cleanup; the source is kept until the grace is over.
    let marks = f.meta.pending_marks(&dst, 10).expect("marks");
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].chunk_id, COPY);
    assert!(
        f.meta
            .referenced_chunks(&src)
            .expect("refs")
            .contains(&source)
    );
    assert!(f.meta.release_moved_sources(499).expect("early").is_empty());
    assert!(queued(&f.meta, &src).is_empty());
    assert_eq!(
        f.meta.release_moved_sources(500).expect("due"),
        vec![(src, source)]
    );
    assert_eq!(queued(&f.meta, &src), vec![(source, DeleteReason::Moved)]);
    assert!(f.meta.referenced_chunks(&src).expect("refs").is_empty());
    assert!(
        f.meta
            .referenced_chunks(&dst)
            .expect("refs")
            .contains(&COPY)
    );
    assert_eq!(f.meta.move_count().expect("count"), 0);
    // Deleting the file now deletes the copy, not the source again.
    f.meta.delete_file(&f.file.id).expect("delete");
    assert_eq!(
        queued(&f.meta, &dst),
        vec![(COPY, DeleteReason::FileDeleted)]
    );
}

#[test]
fn a_file_deleted_or_changed_during_the_copy_drops_the_copy_instead() {
    let f = fixture();
    let (src, dst) = (f.nodes[0], f.nodes[6]);
    f.meta
        .begin_move(&f.file.id, 0, &src, &dst, COPY, 10)
        .expect("begin");
    f.meta.delete_file(&f.file.id).expect("delete");
    assert_eq!(
        f.meta.swap_move(&dst, &COPY, true, 500, 20).expect("swap"),
        SwapOutcome::Abandoned("the file was deleted")
    );
    assert_eq!(queued(&f.meta, &dst), vec![(COPY, DeleteReason::Aborted)]);
    assert!(f.meta.referenced_chunks(&dst).expect("refs").is_empty());
    assert_eq!(f.meta.move_count().expect("count"), 0);
    // A move of a part that is not where the plan saw it is not recorded at all.
    let g = fixture();
    assert_eq!(
        g.meta
            .begin_move(&g.file.id, 0, &g.nodes[3], &g.nodes[6], COPY, 10)
            .expect("begin"),
        BeginOutcome::Stale("the part is no longer at the source")
    );
    assert_eq!(
        g.meta
            .begin_move(&g.file.id, 0, &g.nodes[0], &g.nodes[1], COPY, 10)
            .expect("begin"),
        BeginOutcome::Stale("another part of the file is on the target")
    );
    assert_eq!(
        g.meta
            .begin_move(&Uuid::new_v4(), 0, &g.nodes[0], &g.nodes[6], COPY, 10)
            .expect("begin"),
        BeginOutcome::Stale("the file is gone")
    );
    assert_eq!(g.meta.move_count().expect("count"), 0);
}

#[test]
fn unfinished_moves_roll_back_on_start_and_swapped_ones_stay() {
    let f = fixture();
    let dst = f.nodes[6];
    f.meta
        .begin_move(&f.file.id, 1, &f.nodes[1], &dst, COPY, 10)
        .expect("begin");
    // A second move of another file's part, swapped before the "crash".
    let g = fixture();
    g.meta
        .begin_move(&g.file.id, 4, &g.nodes[4], &dst, [0xd0; 16], 10)
        .expect("begin");
    g.meta
        .swap_move(&dst, &[0xd0; 16], true, 900, 20)
        .expect("swap");
    let rolled = f.meta.roll_back_unfinished_moves(30).expect("roll back");
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0].to_chunk, COPY);
    assert_eq!(queued(&f.meta, &dst), vec![(COPY, DeleteReason::Aborted)]);
    assert_eq!(
        f.meta.get_file(&f.file.id).expect("get"),
        Some(f.file.clone())
    );
    assert!(
        g.meta
            .roll_back_unfinished_moves(30)
            .expect("none")
            .is_empty()
    );
    assert_eq!(g.meta.move_count().expect("count"), 1);
    // A swap after the roll back finds nothing to do.
    assert_eq!(
        f.meta.swap_move(&dst, &COPY, true, 500, 40).expect("swap"),
        SwapOutcome::Unknown
    );
    // Abandoning a move that failed queues its copy.
    f.meta
        .begin_move(&f.file.id, 1, &f.nodes[1], &dst, [0xe0; 16], 50)
        .expect("begin");
    assert!(f.meta.abandon_move(&dst, &[0xe0; 16], 60).expect("abandon"));
    assert!(!f.meta.abandon_move(&dst, &[0xe0; 16], 60).expect("again"));
    assert_eq!(queued(&f.meta, &dst).len(), 2);
}

#[test]
fn a_move_record_of_this_release_decodes() {
    let m = MoveRecord {
        file_id: Uuid::nil(),
        part_index: 3,
        from_node: Uuid::from_u128(1),
        from_chunk: [1; 16],
        to_node: Uuid::from_u128(2),
        to_chunk: [2; 16],
        len: 10,
        crc32c: 7,
        recorded_unix_ms: 5,
        state: MoveState::Swapped {
            release_after_unix_ms: 99,
        },
    };
    let bytes = encode(&m).expect("encode");
    let text = std::str::from_utf8(&bytes[1..]).expect("json");
    assert!(text.contains(r#""state":"swapped""#), "{text}");
    assert!(text.contains(r#""release_after_unix_ms":99"#), "{text}");
    assert_eq!(decode::<MoveRecord>(&bytes).expect("decode"), m);
}
