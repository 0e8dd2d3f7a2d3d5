//! The metadata port's conformance suite: what every [`MetaStore`] must do, written once and
//! run against each backend (redb on a file, redb in memory, PostgreSQL), so that no backend
//! can accept what another refuses.
//!
//! A backend runs the suite with [`conformance_suite!`], naming an async function that makes a
//! fresh, empty store (or `None` to skip, saying why):
//!
//! ```ignore
//! crate::meta::conformance_suite!(fresh_store);
//! ```
//!
//! Backend-specific behaviour (file modes, schema versions on disk, reopening a file) stays in
//! the backend's own tests.

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use super::s3_records::MIN_PART_SIZE;
use super::*;
use crate::split::{SplitPolicy, plan};

const CHECKSUM: &str = "0123456789abcdef0123456789abcdef";

/// What a fixture hands the suite: something to keep alive for the test (a temp dir, a
/// database to drop) and the store.
pub type Fixture = (Box<dyn std::any::Any + Send>, SharedMeta);

pub(super) fn session(size: u64) -> UploadSession {
    let ranges = plan(size, &SplitPolicy::default());
    let nodes: Vec<Uuid> = ranges.iter().map(|_| Uuid::new_v4()).collect();
    UploadSession {
        file_id: Uuid::new_v4(),
        name: "data.bin".into(),
        content_type: Some("application/octet-stream".into()),
        size: Some(size),
        created_unix_ms: 1_000,
        expires_unix_ms: 3_601_000,
        parts: PlannedPart::plan(&ranges, &nodes).expect("plan"),
        multipart: false,
        owner: None,
    }
}

/// What the nodes would acknowledge for a session (crc32c made up per part).
pub(super) fn acks(s: &UploadSession) -> Vec<PartRecord> {
    s.parts
        .iter()
        .map(|p| {
            p.verify_ack(p.len, 0x1000 + p.index, 0x1000 + p.index)
                .expect("ack")
        })
        .collect()
}

pub(super) fn node(name: &str) -> NodeRecord {
    NodeRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        shard_addrs: vec!["127.0.0.1:7000".parse().expect("addr")],
        capacity: 1 << 40,
        used: 1 << 30,
        chunk_count: 3,
        in_flight: 0,
        state: NodeState::Up,
        registered_unix_ms: 5,
        last_heartbeat_unix_ms: 6,
        operator_state: None,
    }
}

/// Every (node, chunk) pair queued for deletion across the given nodes.
async fn queued(
    meta: &dyn MetaStore,
    nodes: impl IntoIterator<Item = Uuid>,
) -> HashSet<(Uuid, ChunkId)> {
    let mut out = HashSet::new();
    for n in nodes {
        for d in meta.pending_deletes(&n, usize::MAX).await.expect("pending") {
            assert_eq!(d.node_id, n);
            out.insert((d.node_id, d.chunk_id));
        }
    }
    out
}

fn chunks_of(s: &UploadSession) -> HashSet<(Uuid, ChunkId)> {
    s.parts.iter().map(|p| (p.node_id, p.chunk_id)).collect()
}

pub async fn commit_turns_the_session_into_a_file(meta: &dyn MetaStore) {
    let s = session(10 * 1024 * 1024 + 7);
    meta.begin_session(&s).await.expect("begin");
    assert_eq!(
        meta.get_session(&s.file_id).await.expect("get"),
        Some(s.clone())
    );
    assert_eq!(meta.get_file(&s.file_id).await.expect("get"), None);

    // Acks in any order are accepted and stored in part order.
    let mut acked = acks(&s);
    acked.reverse();
    let file = meta
        .commit_session(&s.file_id, acked, CHECKSUM.into(), 10 * 1024 * 1024 + 7)
        .await
        .expect("commit");
    assert_eq!(file.parts, acks(&s));
    assert_eq!((file.id, file.size), (s.file_id, 10 * 1024 * 1024 + 7));
    assert_eq!(file.name, "data.bin");
    assert_eq!(file.checksum, CHECKSUM);
    assert_eq!(meta.get_file(&s.file_id).await.expect("get"), Some(file));
    assert_eq!(meta.get_session(&s.file_id).await.expect("get"), None);
    assert_eq!(meta.session_count().await.expect("count"), 0);
    assert_eq!(meta.file_count().await.expect("count"), 1);
    // Committed chunks stay referenced and are not queued.
    for p in &s.parts {
        assert!(
            meta.referenced_among(&p.node_id, &[p.chunk_id])
                .await
                .expect("refs")
                .contains(&p.chunk_id)
        );
    }
    assert_eq!(meta.delete_queue_len().await.expect("len"), 0);
}

pub async fn empty_file_commits_without_parts(meta: &dyn MetaStore) {
    let s = session(0);
    assert!(s.parts.is_empty());
    meta.begin_session(&s).await.expect("begin");
    let file = meta
        .commit_session(&s.file_id, vec![], CHECKSUM.into(), 0)
        .await
        .expect("commit");
    assert_eq!((file.size, file.parts.len()), (0, 0));
}

pub async fn a_mismatched_commit_changes_nothing(meta: &dyn MetaStore) {
    let s = session(6 * 1024 * 1024 + 1);
    let size = 6 * 1024 * 1024 + 1;
    meta.begin_session(&s).await.expect("begin");
    let good = acks(&s);

    let mut short = good.clone();
    short[2].len -= 1;
    let mut moved = good.clone();
    moved[3].offset += 1;
    let mut wrong_node = good.clone();
    wrong_node[1].node_id = Uuid::new_v4();
    let mut wrong_chunk = good.clone();
    wrong_chunk[4].chunk_id = new_chunk_id();
    let mut missing = good.clone();
    missing.pop();
    let mut duplicated = good.clone();
    duplicated[5] = duplicated[4].clone();
    let mut extra = good.clone();
    extra.push(good[0].clone());

    let cases = [
        (short, CHECKSUM, size),
        (moved, CHECKSUM, size),
        (wrong_node, CHECKSUM, size),
        (wrong_chunk, CHECKSUM, size),
        (missing, CHECKSUM, size),
        (duplicated, CHECKSUM, size),
        (extra, CHECKSUM, size),
        (good.clone(), CHECKSUM, size - 1),
        (good.clone(), CHECKSUM, size + 1),
        (good.clone(), "not-a-checksum", size),
        (good.clone(), "0123456789ABCDEF0123456789ABCDEF", size),
    ];
    for (i, (acked, checksum, size)) in cases.into_iter().enumerate() {
        let err = meta
            .commit_session(&s.file_id, acked, checksum.into(), size)
            .await
            .expect_err("mismatch must fail");
        assert!(
            matches!(err, MetaError::InvalidCommit { file_id, .. } if file_id == s.file_id),
            "case {i}: {err}"
        );
        assert_eq!(
            meta.get_session(&s.file_id).await.expect("get"),
            Some(s.clone()),
            "case {i}"
        );
        assert_eq!(
            meta.get_file(&s.file_id).await.expect("get"),
            None,
            "case {i}"
        );
        assert_eq!(meta.file_count().await.expect("count"), 0, "case {i}");
    }
    // A crc mismatch is caught when the ack is checked, before commit.
    assert!(matches!(
        s.parts[0].verify_ack(s.parts[0].len, 1, 2),
        Err(AckMismatch::Crc { .. })
    ));
    // The untouched session still commits.
    meta.commit_session(&s.file_id, good, CHECKSUM.into(), size)
        .await
        .expect("commit");
}

pub async fn announced_size_must_match_at_commit(meta: &dyn MetaStore) {
    // A spooled upload whose announced size was wrong cannot be planned as that size...
    let mut s = session(3 * 1024 * 1024);
    s.size = Some(3 * 1024 * 1024 + 1);
    assert!(matches!(
        meta.begin_session(&s).await,
        Err(MetaError::InvalidRecord(_))
    ));
    // ... and one without a size commits at the planned size only.
    s.size = None;
    meta.begin_session(&s).await.expect("begin");
    assert!(matches!(
        meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 3 * 1024 * 1024 - 1)
            .await,
        Err(MetaError::InvalidCommit { .. })
    ));
    let file = meta
        .commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 3 * 1024 * 1024)
        .await
        .expect("commit");
    assert_eq!(file.size, 3 * 1024 * 1024);
}

pub async fn a_streamed_form_commits_the_file_inside_its_planned_bytes(meta: &dyn MetaStore) {
    // Planned: 2 MiB + 100 bytes of body, in parts of 1 MiB, 1 MiB and 100 bytes; the file is
    // the first 1 MiB + 30 bytes, the rest of the body the form's trailer.
    let planned = 2 * 1024 * 1024 + 100;
    let size = 1024 * 1024 + 30;
    let mut s = session(planned);
    s.multipart = true;
    meta.begin_session(&s).await.expect("begin");
    let clipped = |size: u64| -> Vec<PartRecord> {
        acks(&s).into_iter().map(|p| p.clipped_to(size)).collect()
    };
    // A raw upload's session would refuse this size; a form's refuses only parts that do not
    // describe the file's bytes, or a size past the planned bytes.
    let mut unclipped_last = clipped(size);
    unclipped_last[2] = acks(&s)[2].clone();
    let mut short_store = clipped(size);
    short_store[1].stored_len = Some(1024 * 1024 - 1);
    for (i, (acked, size)) in [
        (acks(&s), size),
        (unclipped_last, size),
        (short_store, size),
        (acks(&s), planned + 1),
        (clipped(size), size + 1),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            matches!(
                meta.commit_session(&s.file_id, acked, CHECKSUM.into(), size)
                    .await,
                Err(MetaError::InvalidCommit { .. })
            ),
            "case {i}"
        );
    }
    let file = meta
        .commit_session(&s.file_id, clipped(size), CHECKSUM.into(), size)
        .await
        .expect("commit");
    assert_eq!(file.size, size);
    let shape: Vec<_> = file
        .parts
        .iter()
        .map(|p| (p.offset, p.len, p.stored_len()))
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, 1024 * 1024, 1024 * 1024),
            (1024 * 1024, 30, 1024 * 1024),
            (size, 0, 100)
        ]
    );
    assert_eq!(
        meta.get_file(&s.file_id).await.expect("get"),
        Some(file.clone())
    );
    // Deleting the file queues every chunk, those past the file's end too.
    meta.delete_file(&s.file_id).await.expect("delete");
    assert_eq!(meta.delete_queue_len().await.expect("len"), 3);
}

pub async fn commit_of_an_unknown_session_is_not_found(meta: &dyn MetaStore) {
    let id = Uuid::new_v4();
    assert!(matches!(
        meta.commit_session(&id, vec![], CHECKSUM.into(), 0).await,
        Err(MetaError::NotFound { kind: "upload session", id: got }) if got == id
    ));
}

pub async fn begin_refuses_reused_ids_and_bad_plans(meta: &dyn MetaStore) {
    let s = session(2 * 1024 * 1024);
    meta.begin_session(&s).await.expect("begin");
    assert!(matches!(
        meta.begin_session(&s).await,
        Err(MetaError::Conflict(_))
    ));
    meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 2 * 1024 * 1024)
        .await
        .expect("commit");
    // A committed file's id cannot start a new session.
    let mut again = session(1024);
    again.file_id = s.file_id;
    assert!(matches!(
        meta.begin_session(&again).await,
        Err(MetaError::Conflict(_))
    ));
    // Nor can a new session reuse a chunk that is in use on the same node.
    let mut reuse = session(1024);
    reuse.parts[0].node_id = s.parts[0].node_id;
    reuse.parts[0].chunk_id = s.parts[0].chunk_id;
    assert!(matches!(
        meta.begin_session(&reuse).await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(meta.get_session(&reuse.file_id).await.expect("get"), None);
    // A plan with a gap is refused before anything is written.
    let mut gap = session(6 * 1024 * 1024);
    gap.parts[2].offset += 1;
    assert!(matches!(
        meta.begin_session(&gap).await,
        Err(MetaError::InvalidRecord(_))
    ));
    assert_eq!(meta.session_count().await.expect("count"), 0);
}

pub async fn abort_queues_exactly_the_session_chunks(meta: &dyn MetaStore) {
    let keep = session(6 * 1024 * 1024);
    let s = session(6 * 1024 * 1024);
    meta.begin_session(&keep).await.expect("begin");
    meta.begin_session(&s).await.expect("begin");

    let aborted: HashSet<_> = meta
        .abort_session(&s.file_id)
        .await
        .expect("abort")
        .into_iter()
        .collect();
    assert_eq!(aborted, chunks_of(&s));
    let nodes = s.parts.iter().chain(&keep.parts).map(|p| p.node_id);
    assert_eq!(queued(meta, nodes).await, chunks_of(&s));
    for p in &s.parts {
        let pending = meta.pending_deletes(&p.node_id, 10).await.expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].reason, DeleteReason::Aborted);
        assert_eq!(pending[0].file_id, Some(s.file_id));
        assert!(
            meta.referenced_among(&p.node_id, &[p.chunk_id])
                .await
                .expect("refs")
                .is_empty()
        );
        assert_eq!(meta.referenced_count(&p.node_id).await.expect("count"), 0);
    }
    assert_eq!(meta.get_session(&s.file_id).await.expect("get"), None);
    assert_eq!(
        meta.get_session(&keep.file_id).await.expect("get"),
        Some(keep.clone())
    );
    // Aborting again, or committing after the abort, finds nothing.
    assert!(
        meta.abort_session(&s.file_id)
            .await
            .expect("abort")
            .is_empty()
    );
    assert!(matches!(
        meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 6 * 1024 * 1024)
            .await,
        Err(MetaError::NotFound { .. })
    ));
    // The node reports each chunk gone.
    for (n, c) in &aborted {
        assert!(meta.complete_delete(n, c).await.expect("complete"));
        assert!(!meta.complete_delete(n, c).await.expect("complete"));
    }
    assert_eq!(meta.delete_queue_len().await.expect("len"), 0);
}

pub async fn a_commit_records_a_pending_mark_per_part_until_delivered_or_deleted(
    meta: &dyn MetaStore,
) {
    let s = session(7 * 1024 * 1024);
    meta.begin_session(&s).await.expect("begin");
    assert_eq!(meta.pending_mark_count().await.expect("count"), 0);
    let file = meta
        .commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 7 * 1024 * 1024)
        .await
        .expect("commit");
    assert_eq!(
        meta.pending_mark_count().await.expect("count"),
        s.parts.len() as u64
    );
    let first = &s.parts[0];
    let pending = meta
        .pending_marks(&first.node_id, 10)
        .await
        .expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].chunk_id, first.chunk_id);
    assert_eq!(Some(pending[0].mark), CommitMark::of(&file));
    assert_eq!(pending[0].mark.file_size, 7 * 1024 * 1024);

    meta.marks_delivered(&[(first.node_id, first.chunk_id)])
        .await
        .expect("delivered");
    assert!(
        meta.pending_marks(&first.node_id, 10)
            .await
            .expect("pending")
            .is_empty()
    );
    assert_eq!(
        meta.pending_mark_count().await.expect("count"),
        s.parts.len() as u64 - 1
    );
    // A deleted file's marks are no longer worth sending.
    meta.delete_file(&s.file_id).await.expect("delete");
    assert_eq!(meta.pending_mark_count().await.expect("count"), 0);
}

pub async fn delete_file_queues_its_chunks(meta: &dyn MetaStore) {
    let s = session(7 * 1024 * 1024);
    meta.begin_session(&s).await.expect("begin");
    meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 7 * 1024 * 1024)
        .await
        .expect("commit");
    let removed = meta
        .delete_file(&s.file_id)
        .await
        .expect("delete")
        .expect("existed");
    assert_eq!(removed.id, s.file_id);
    assert_eq!(meta.get_file(&s.file_id).await.expect("get"), None);
    assert_eq!(meta.file_count().await.expect("count"), 0);
    let nodes: Vec<Uuid> = s.parts.iter().map(|p| p.node_id).collect();
    assert_eq!(queued(meta, nodes.clone()).await, chunks_of(&s));
    for n in &nodes {
        let pending = meta.pending_deletes(n, 10).await.expect("pending");
        assert_eq!(pending[0].reason, DeleteReason::FileDeleted);
        assert_eq!(meta.referenced_count(n).await.expect("count"), 0);
    }
    assert_eq!(meta.delete_file(&s.file_id).await.expect("delete"), None);
}

pub async fn referenced_chunks_cover_files_and_live_sessions(meta: &dyn MetaStore) {
    let shared = Uuid::new_v4();
    let mut committed = session(1024);
    committed.parts[0].node_id = shared;
    let mut live = session(2048);
    live.parts[0].node_id = shared;
    meta.begin_session(&committed).await.expect("begin");
    meta.commit_session(&committed.file_id, acks(&committed), CHECKSUM.into(), 1024)
        .await
        .expect("commit");
    meta.begin_session(&live).await.expect("begin");
    let want: HashSet<ChunkId> = [committed.parts[0].chunk_id, live.parts[0].chunk_id].into();
    let asked = [
        committed.parts[0].chunk_id,
        live.parts[0].chunk_id,
        new_chunk_id(),
    ];
    let refs = meta.referenced_among(&shared, &asked).await.expect("refs");
    assert_eq!(refs, want);
    assert_eq!(meta.referenced_count(&shared).await.expect("count"), 2);
    assert_eq!(
        meta.referenced_count(&Uuid::new_v4()).await.expect("count"),
        0
    );

    // Orphan reconciliation may queue unreferenced chunks only.
    let orphan = new_chunk_id();
    let found = [committed.parts[0].chunk_id, live.parts[0].chunk_id, orphan];
    assert_eq!(
        meta.enqueue_deletes(&shared, &found, DeleteReason::Orphan)
            .await
            .expect("enqueue"),
        1
    );
    let pending = meta.pending_deletes(&shared, 10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].chunk_id, pending[0].reason),
        (orphan, DeleteReason::Orphan)
    );
    assert_eq!(pending[0].file_id, None);
    // Queuing it again changes nothing.
    assert_eq!(
        meta.enqueue_deletes(&shared, &[orphan], DeleteReason::Orphan)
            .await
            .expect("enqueue"),
        0
    );
}

pub async fn pending_deletes_respects_the_limit(meta: &dyn MetaStore) {
    let n = Uuid::new_v4();
    let chunks: Vec<ChunkId> = (0..10).map(|_| new_chunk_id()).collect();
    assert_eq!(
        meta.enqueue_deletes(&n, &chunks, DeleteReason::Orphan)
            .await
            .expect("enqueue"),
        10
    );
    assert_eq!(meta.pending_deletes(&n, 4).await.expect("pending").len(), 4);
    assert_eq!(meta.pending_deletes(&n, 0).await.expect("pending").len(), 0);
    let all: HashSet<ChunkId> = meta
        .pending_deletes(&n, 100)
        .await
        .expect("pending")
        .into_iter()
        .map(|d| d.chunk_id)
        .collect();
    assert_eq!(all, chunks.into_iter().collect());
}

pub async fn list_paging_returns_each_file_once_in_order(meta: &dyn MetaStore) {
    let mut ids = Vec::new();
    for _ in 0..25 {
        let s = session(100);
        meta.begin_session(&s).await.expect("begin");
        meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 100)
            .await
            .expect("commit");
        ids.push(s.file_id);
    }
    // A live session is not a file and is never listed.
    meta.begin_session(&session(100)).await.expect("begin");
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = meta.list_files(after, 7).await.expect("list");
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|f| f.id));
    }
    assert_eq!(seen, ids);
    assert!(meta.list_files(None, 0).await.expect("list").is_empty());
    assert_eq!(
        meta.list_files(Some(ids[24]), 10).await.expect("list"),
        vec![]
    );
}

pub async fn nodes_are_registered_and_updated(meta: &dyn MetaStore) {
    let mut a = node("a");
    let b = node("b");
    meta.upsert_node(&a).await.expect("upsert");
    meta.upsert_node(&b).await.expect("upsert");
    assert_eq!(meta.get_node(&a.id).await.expect("get"), Some(a.clone()));
    a.used += 10;
    a.last_heartbeat_unix_ms = 99;
    meta.upsert_node(&a).await.expect("heartbeat");
    assert_eq!(meta.get_node(&a.id).await.expect("get"), Some(a.clone()));
    let drained = meta
        .set_node_state(&a.id, NodeState::Draining)
        .await
        .expect("state");
    assert_eq!(drained.state, NodeState::Draining);
    assert_eq!(drained.used, a.used);
    let mut all = meta.list_nodes().await.expect("list");
    all.sort_by_key(|n| n.name.clone());
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].state, NodeState::Draining);
    assert_eq!(all[1], b);
    let unknown = Uuid::new_v4();
    assert!(matches!(
        meta.set_node_state(&unknown, NodeState::Down).await,
        Err(MetaError::NotFound { kind: "node", .. })
    ));
    assert_eq!(meta.get_node(&unknown).await.expect("get"), None);
}

/// Commits a file of `size` bytes, as an upload would.
async fn file(meta: &dyn MetaStore, size: u64) -> FileRecord {
    let s = UploadSession {
        name: "f".into(),
        content_type: None,
        expires_unix_ms: u64::MAX,
        ..session(size)
    };
    meta.begin_session(&s).await.expect("begin");
    meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), size)
        .await
        .expect("commit")
}

/// Uploads part `n` of multipart upload `id` as a file of `size` bytes.
async fn part(meta: &dyn MetaStore, id: &Uuid, n: u32, size: u64) -> FileRecord {
    let f = file(meta, size).await;
    let p = UploadedPart {
        part_number: n,
        file_id: f.id,
        size,
        etag: format!("etag{n}"),
        last_modified_unix_ms: 1,
    };
    meta.put_part(id, &p).await.expect("part");
    f
}

fn object(files: &[&FileRecord]) -> ObjectRecord {
    ObjectRecord {
        size: files.iter().map(|f| f.size).sum(),
        etag: "e".into(),
        content_type: None,
        last_modified_unix_ms: 1,
        segments: files
            .iter()
            .map(|f| Segment {
                file_id: f.id,
                size: f.size,
            })
            .collect(),
        user_metadata: BTreeMap::new(),
        id: None,
    }
}

pub async fn objects_replace_delete_and_list_with_their_files(meta: &dyn MetaStore) {
    let a = file(meta, 10).await;
    assert!(matches!(
        meta.put_object("b", "k", &object(&[&a])).await,
        Err(ObjectStoreError::NoSuchBucket(_))
    ));
    // The refused object's file is gone.
    assert_eq!(meta.get_file(&a.id).await.expect("get"), None);
    meta.create_bucket("b", 1).await.expect("bucket");
    assert!(matches!(
        meta.create_bucket("b", 1).await,
        Err(ObjectStoreError::BucketExists(_))
    ));
    let a = file(meta, 10).await;
    assert_eq!(
        meta.put_object("b", "k", &object(&[&a]))
            .await
            .expect("put"),
        None
    );
    let (got, files) = meta.get_object("b", "k").await.expect("get");
    assert_eq!((got.size, files.len()), (10, 1));
    // Replacing deletes the old file.
    let b = file(meta, 20).await;
    assert!(
        meta.put_object("b", "k", &object(&[&b]))
            .await
            .expect("put")
            .is_some()
    );
    assert_eq!(meta.get_file(&a.id).await.expect("get"), None);
    assert!(matches!(
        meta.delete_bucket("b").await,
        Err(ObjectStoreError::BucketNotEmpty(_))
    ));
    let c = file(meta, 1).await;
    meta.put_object("b", "dir/x", &object(&[&c]))
        .await
        .expect("put");
    let page = meta
        .list_objects(
            "b",
            &ListQuery {
                delimiter: Some("/".into()),
                max_keys: 10,
                ..ListQuery::default()
            },
        )
        .await
        .expect("list");
    let names: Vec<&str> = page.entries.iter().map(ListEntry::name).collect();
    assert_eq!(names, ["dir/", "k"]);
    assert!(meta.delete_object("b", "k").await.expect("delete"));
    assert!(!meta.delete_object("b", "k").await.expect("delete again"));
    assert_eq!(meta.get_file(&b.id).await.expect("get"), None);
    assert!(matches!(
        meta.get_object("b", "k").await,
        Err(ObjectStoreError::NoSuchKey(_))
    ));
    meta.delete_object("b", "dir/x").await.expect("delete");
    meta.delete_bucket("b").await.expect("empty bucket");
    assert!(meta.list_buckets().await.expect("list").is_empty());
}

pub async fn multipart_completes_into_segments_and_aborts_clean(meta: &dyn MetaStore) {
    meta.create_bucket("b", 1).await.expect("bucket");
    let upload = MultipartRecord {
        upload_id: Uuid::new_v4(),
        bucket: "b".into(),
        key: "big".into(),
        content_type: None,
        initiated_unix_ms: 5,
        user_metadata: BTreeMap::new(),
    };
    meta.create_multipart(&upload).await.expect("create");
    let id = upload.upload_id;
    let first = part(meta, &id, 1, MIN_PART_SIZE).await;
    let replaced = part(meta, &id, 2, 3).await;
    let second = part(meta, &id, 2, 4).await;
    // Re-uploading part 2 deleted the first version's file.
    assert_eq!(meta.get_file(&replaced.id).await.expect("get"), None);
    let unlisted = part(meta, &id, 3, 9).await;
    let refs = [1, 2].map(|n| CompletedPartRef {
        part_number: n,
        etag: Some(format!("etag{n}")),
    });
    let object = meta
        .complete_multipart(&id, "b", "big", &refs, 9, |parts| {
            format!("x-{}", parts.len())
        })
        .await
        .expect("complete");
    assert_eq!(object.etag, "x-2");
    assert_eq!(object.size, MIN_PART_SIZE + 4);
    let (_, files) = meta.get_object("b", "big").await.expect("get");
    assert_eq!(
        files.iter().map(|f| f.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );
    assert_eq!(meta.get_file(&unlisted.id).await.expect("get"), None);
    // The object is a file of its own: the upload's id finds it, with its segments in order.
    assert_eq!(object.file_id(), Some(id));
    let by_id = meta.object_by_id(&id).await.expect("by id").expect("found");
    assert_eq!((by_id.bucket.as_str(), by_id.key.as_str()), ("b", "big"));
    assert_eq!(by_id.record, object);
    assert_eq!(
        by_id.files.iter().map(|f| f.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );
    assert_eq!(meta.object_by_id(&first.id).await.expect("by id"), None);
    assert!(matches!(
        meta.list_parts(&id).await,
        Err(ObjectStoreError::NoSuchUpload(_))
    ));
    // A part arriving after the completion is refused and its file removed.
    let late = file(meta, 2).await;
    let p = UploadedPart {
        part_number: 4,
        file_id: late.id,
        size: 2,
        etag: "late".into(),
        last_modified_unix_ms: 1,
    };
    assert!(matches!(
        meta.put_part(&id, &p).await,
        Err(ObjectStoreError::NoSuchUpload(_))
    ));
    assert_eq!(meta.get_file(&late.id).await.expect("get"), None);

    // Abort removes the upload and its parts' files; the sweep finds old uploads.
    let upload = MultipartRecord {
        upload_id: Uuid::new_v4(),
        ..upload
    };
    meta.create_multipart(&upload).await.expect("create");
    let f = file(meta, 1).await;
    meta.put_part(
        &upload.upload_id,
        &UploadedPart {
            part_number: 1,
            file_id: f.id,
            size: 1,
            etag: "e".into(),
            last_modified_unix_ms: 1,
        },
    )
    .await
    .expect("part");
    assert_eq!(
        meta.multipart_started_before(6).await.expect("old"),
        vec![upload.upload_id]
    );
    assert!(
        meta.multipart_started_before(5)
            .await
            .expect("old")
            .is_empty()
    );
    assert_eq!(
        meta.abort_multipart(&upload.upload_id)
            .await
            .expect("abort"),
        1
    );
    assert_eq!(meta.get_file(&f.id).await.expect("get"), None);
    assert!(
        meta.list_multipart_uploads("b")
            .await
            .expect("list")
            .is_empty()
    );
    // Replacing the object by a single PUT drops its id; deleting it drops the new one's.
    let single = file(meta, 3).await;
    meta.put_object("b", "big", &self::object(&[&single]))
        .await
        .expect("replace");
    assert_eq!(meta.object_by_id(&id).await.expect("by id"), None);
    assert_eq!(meta.get_file(&second.id).await.expect("get"), None);
    assert!(meta.delete_object("b", "big").await.expect("delete"));
    assert_eq!(meta.get_file(&single.id).await.expect("get"), None);
}

/// A damaged chunk marks the file owning it (once per part), not a session's or an unknown
/// chunk; deleting the file drops the mark.
pub async fn a_damaged_part_marks_its_file_until_it_is_deleted(meta: &dyn MetaStore) {
    let s = session(6 << 20);
    meta.begin_session(&s).await.expect("begin");
    let file = meta
        .commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 6 << 20)
        .await
        .expect("commit");
    let open = session(6 << 20);
    meta.begin_session(&open).await.expect("begin");
    let part = &file.parts[2];
    let report = |chunk_id| ChunkDamage {
        chunk_id,
        damage: DamageKind::ChecksumMismatch,
        block: Some(1),
        found_by: FoundBy::Scrub,
        found_unix_ms: 5,
    };
    let outcomes = meta
        .mark_damaged(
            &part.node_id,
            &[
                report(part.chunk_id),
                report(part.chunk_id),
                report([0xee; 16]),
            ],
            9,
        )
        .await
        .expect("mark");
    let marked = DamageOutcome::Marked {
        file_id: file.id,
        index: 2,
    };
    assert_eq!(
        outcomes,
        [
            marked,
            DamageOutcome::AlreadyMarked {
                file_id: file.id,
                index: 2
            },
            DamageOutcome::Unreferenced
        ]
    );
    let in_upload = &open.parts[0];
    let outcomes = meta
        .mark_damaged(&in_upload.node_id, &[report(in_upload.chunk_id)], 9)
        .await
        .expect("mark");
    assert_eq!(outcomes, [DamageOutcome::InUpload]);
    // The part's chunk on another node is not this part.
    let outcomes = meta
        .mark_damaged(&Uuid::new_v4(), &[report(part.chunk_id)], 9)
        .await
        .expect("mark");
    assert_eq!(outcomes, [DamageOutcome::Unreferenced]);
    let damage = meta
        .get_damage(&file.id)
        .await
        .expect("get")
        .expect("marked");
    assert_eq!(damage.parts.len(), 1);
    let p = &damage.parts[0];
    assert_eq!(
        (
            p.index,
            p.node_id,
            p.chunk_id,
            p.block,
            p.found_unix_ms,
            p.marked_unix_ms
        ),
        (2, part.node_id, part.chunk_id, Some(1), 5, 9)
    );
    assert_eq!(meta.damaged_count().await.expect("count"), 1);
    assert_eq!(
        meta.list_damaged(None, 10).await.expect("list"),
        vec![damage.clone()]
    );
    assert!(
        meta.list_damaged(Some(file.id), 10)
            .await
            .expect("list")
            .is_empty()
    );
    meta.delete_file(&file.id).await.expect("delete");
    assert_eq!(meta.get_damage(&file.id).await.expect("get"), None);
    assert_eq!(meta.damaged_count().await.expect("count"), 0);
}

/// A rebalancer's move: recorded, swapped by compare-and-swap, its source released after the
/// grace period; a move whose file went meanwhile drops its copy; unfinished moves roll back.
pub async fn a_move_swaps_the_part_and_releases_its_source_after_the_grace(meta: &dyn MetaStore) {
    let s = session(6 << 20);
    meta.begin_session(&s).await.expect("begin");
    let file = meta
        .commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 6 << 20)
        .await
        .expect("commit");
    let (src, chunk) = (file.parts[1].node_id, file.parts[1].chunk_id);
    let target = Uuid::new_v4();
    let copy = [0xc1; 16];
    assert_eq!(
        meta.begin_move(&file.id, 1, &src, &target, copy, 10)
            .await
            .expect("begin move"),
        BeginOutcome::Recorded(file.clone())
    );
    // A part that is not where the move thinks is not moved.
    assert!(matches!(
        meta.begin_move(&file.id, 2, &src, &target, [0xc2; 16], 10)
            .await
            .expect("stale"),
        BeginOutcome::Stale(_)
    ));
    assert_eq!(meta.move_count().await.expect("count"), 1);
    assert!(
        meta.referenced_among(&target, &[copy])
            .await
            .expect("refs")
            .contains(&copy)
    );
    assert_eq!(
        meta.swap_move(&target, &copy, true, 100, 20)
            .await
            .expect("swap"),
        SwapOutcome::Swapped
    );
    let now = meta.get_file(&file.id).await.expect("get").expect("file");
    assert_eq!(
        (now.parts[1].node_id, now.parts[1].chunk_id),
        (target, copy)
    );
    assert!(
        meta.release_moved_sources(99)
            .await
            .expect("early")
            .is_empty()
    );
    assert!(
        meta.referenced_among(&src, &[chunk])
            .await
            .expect("refs")
            .contains(&chunk)
    );
    assert_eq!(
        meta.release_moved_sources(100).await.expect("due"),
        vec![(src, chunk)]
    );
    assert_eq!(queued(meta, [src]).await, HashSet::from([(src, chunk)]));
    assert_eq!(meta.move_count().await.expect("count"), 0);

    // The file deleted during the copy: the copy is queued instead.
    let copy2 = [0xc3; 16];
    let (src2, target2) = (now.parts[2].node_id, Uuid::new_v4());
    meta.begin_move(&file.id, 2, &src2, &target2, copy2, 30)
        .await
        .expect("begin");
    meta.delete_file(&file.id).await.expect("delete");
    assert!(matches!(
        meta.swap_move(&target2, &copy2, true, 100, 40)
            .await
            .expect("swap"),
        SwapOutcome::Abandoned(_)
    ));
    assert!(queued(meta, [target2]).await.contains(&(target2, copy2)));

    // An unfinished move rolls back.
    let t = session(6 << 20);
    meta.begin_session(&t).await.expect("begin");
    let other = meta
        .commit_session(&t.file_id, acks(&t), CHECKSUM.into(), 6 << 20)
        .await
        .expect("commit");
    let copy3 = [0xc4; 16];
    meta.begin_move(&other.id, 0, &other.parts[0].node_id, &target, copy3, 50)
        .await
        .expect("begin");
    assert_eq!(meta.list_moves().await.expect("list").len(), 1);
    let rolled = meta
        .roll_back_unfinished_moves(60)
        .await
        .expect("roll back");
    assert_eq!(rolled.len(), 1);
    assert!(queued(meta, [target]).await.contains(&(target, copy3)));
    assert_eq!(meta.get_file(&other.id).await.expect("get"), Some(other));
    assert!(
        !meta
            .abandon_move(&target, &copy3, 70)
            .await
            .expect("abandon")
    );
}

/// Runs every case of the suite as its own `#[tokio::test]`, each on a fresh store from
/// `$fresh` (an async fn returning `Option<Fixture>`; `None` skips).
#[macro_export]
#[doc(hidden)]
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::conformance_suite!($fresh, without_moves);
        $crate::conformance_cases!($fresh; a_move_swaps_the_part_and_releases_its_source_after_the_grace);
    };
    // Every case but the rebalancer's part moves (which the arm above adds).
    ($fresh:path, without_moves) => {
        $crate::conformance_cases!($fresh; commit_turns_the_session_into_a_file, empty_file_commits_without_parts, a_mismatched_commit_changes_nothing, announced_size_must_match_at_commit, a_streamed_form_commits_the_file_inside_its_planned_bytes, commit_of_an_unknown_session_is_not_found, begin_refuses_reused_ids_and_bad_plans, abort_queues_exactly_the_session_chunks, a_commit_records_a_pending_mark_per_part_until_delivered_or_deleted, delete_file_queues_its_chunks, referenced_chunks_cover_files_and_live_sessions, pending_deletes_respects_the_limit, objects_replace_delete_and_list_with_their_files, multipart_completes_into_segments_and_aborts_clean, list_paging_returns_each_file_once_in_order, nodes_are_registered_and_updated, a_damaged_part_marks_its_file_until_it_is_deleted);
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! conformance_cases {
    ($fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((_keep, store)) = $fresh().await else {
                    return;
                };
                $crate::meta::conformance::$case(store.as_ref()).await;
            }
        )*
    };
}

pub use crate::conformance_suite;

/// redb on a file, as `serve` opens it.
#[cfg(test)]
mod on_a_redb_file {
    async fn fresh() -> Option<super::Fixture> {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = super::Meta::open(dir.path().join("meta.redb")).expect("open");
        Some((Box::new(dir), std::sync::Arc::new(meta)))
    }
    crate::conformance_suite!(fresh);
}

/// redb in memory, as the simulation opens it.
#[cfg(test)]
mod on_redb_in_memory {
    async fn fresh() -> Option<super::Fixture> {
        let meta = super::Meta::open_in_memory().expect("open");
        Some((Box::new(()), std::sync::Arc::new(meta)))
    }
    crate::conformance_suite!(fresh);
}
