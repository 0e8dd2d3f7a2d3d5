//! Snapshots copy every table, record for record, and a restored one marks its nodes once.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, TableHandle};
use tempfile::TempDir;
use uuid::Uuid;

use super::super::tables::SNAPSHOT_TABLES;
use super::super::*;
use super::SNAPSHOT_NAME;
use crate::auth::{AccessKey, Scope};
use crate::split::{SplitPolicy, plan};

const CHECKSUM: &str = "0123456789abcdef0123456789abcdef";

fn node(id: Uuid) -> NodeRecord {
    NodeRecord {
        id,
        name: format!("node-{id}"),
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

fn session(size: u64, nodes: &[Uuid]) -> UploadSession {
    let ranges = plan(size, &SplitPolicy::default());
    let nodes: Vec<Uuid> = (0..ranges.len()).map(|i| nodes[i % nodes.len()]).collect();
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

fn commit(meta: &Meta, s: &UploadSession) -> FileRecord {
    let acks = s
        .parts
        .iter()
        .map(|p| {
            p.verify_ack(p.len, 0x1000 + p.index, 0x1000 + p.index)
                .expect("ack")
        })
        .collect();
    meta.commit_session(&s.file_id, acks, CHECKSUM.into(), s.size.expect("size"))
        .expect("commit")
}

/// What a populated database holds, for the checks.
struct Populated {
    _dir: TempDir,
    path: std::path::PathBuf,
    meta: Meta,
    nodes: Vec<Uuid>,
    file: FileRecord,
    open_session: UploadSession,
}

/// A database with a record in every table. A table added to the metadata needs a record
/// here too, or `every_table_is_listed_and_populated` fails.
fn populated() -> Populated {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let meta = Meta::open(&path).expect("open");
    let nodes: Vec<Uuid> = (1..=6).map(Uuid::from_u128).collect();
    for id in &nodes {
        meta.upsert_node(&node(*id)).expect("node");
    }
    // files + chunk_refs
    let committed = session(6 << 20, &nodes);
    meta.begin_session(&committed).expect("begin");
    let file = commit(&meta, &committed);
    // delete_queue (an aborted upload's chunks)
    let aborted = session(3 << 20, &nodes);
    meta.begin_session(&aborted).expect("begin");
    meta.abort_session(&aborted.file_id).expect("abort");
    // sessions (an upload in flight)
    let open_session = session(2 << 20, &nodes);
    meta.begin_session(&open_session).expect("begin");
    // quarantine
    let mark = QuarantineMark {
        file_id: Uuid::new_v4(),
        part_index: 2,
        first_seen_unix_ms: 77,
    };
    meta.update_quarantine(&nodes[0], &[([9u8; 16], mark)], &[])
        .expect("quarantine");
    // unaccounted_nodes
    meta.mark_unaccounted(&UnaccountedNode {
        node_id: nodes[5],
        chunk_count: 4,
        reason: "test".into(),
        since_unix_ms: 8,
    })
    .expect("mark");
    // access_keys
    meta.insert_key(&AccessKey::generate("k", Scope::Read, 9).expect("key"))
        .expect("insert key");
    // s3_buckets, s3_objects (an object of the committed file), s3_uploads, s3_parts
    meta.create_bucket("photos", 10).expect("bucket");
    meta.put_object(
        "photos",
        "a/b.jpg",
        &crate::meta::ObjectRecord {
            size: file.size,
            etag: "00".into(),
            content_type: None,
            last_modified_unix_ms: 11,
            segments: vec![crate::meta::Segment {
                file_id: file.id,
                size: file.size,
            }],
            user_metadata: Default::default(),
            id: Some(Uuid::new_v4()),
        },
    )
    .expect("object");
    let upload = crate::meta::MultipartRecord {
        upload_id: Uuid::new_v4(),
        bucket: "photos".into(),
        key: "big.bin".into(),
        content_type: None,
        initiated_unix_ms: 12,
        user_metadata: Default::default(),
    };
    meta.create_multipart(&upload).expect("multipart");
    let part_session = session(1 << 20, &nodes);
    meta.begin_session(&part_session).expect("begin");
    let part_file = commit(&meta, &part_session);
    meta.put_part(
        &upload.upload_id,
        &crate::meta::UploadedPart {
            part_number: 1,
            file_id: part_file.id,
            size: part_file.size,
            etag: "11".into(),
            last_modified_unix_ms: 13,
        },
    )
    .expect("part");
    // damaged_files
    let damaged = &part_file.parts[0];
    meta.mark_damaged(
        &damaged.node_id,
        &[crate::meta::ChunkDamage {
            chunk_id: damaged.chunk_id,
            damage: crate::meta::DamageKind::ChecksumMismatch,
            block: Some(0),
            found_by: crate::meta::FoundBy::Scrub,
            found_unix_ms: 14,
        }],
        15,
    )
    .expect("damaged");
    // moves (a part of the committed file being copied to a seventh node)
    let from = file.parts[0].node_id;
    let begun = meta
        .begin_move(&file.id, 0, &from, &Uuid::from_u128(7), [0x3c; 16], 14)
        .expect("begin move");
    assert!(matches!(begun, BeginOutcome::Recorded(_)), "{begun:?}");
    Populated {
        _dir: dir,
        path,
        meta,
        nodes,
        file,
        open_session,
    }
}

fn listed_names() -> BTreeSet<String> {
    SNAPSHOT_TABLES
        .iter()
        .map(|t| t.table_name().to_owned())
        .collect()
}

fn table_names(db: &redb::ReadTransaction) -> BTreeSet<String> {
    db.list_tables()
        .expect("list tables")
        .map(|t| t.name().to_owned())
        .collect()
}

#[test]
fn every_table_is_listed_and_populated() {
    let p = populated();
    let txn = p.meta.db.begin_read().expect("read");
    assert_eq!(
        table_names(&txn),
        listed_names(),
        "the tables of the metadata and tables::SNAPSHOT_TABLES differ: a table missing from \
         the list would be missing from every backup"
    );
    assert_eq!(
        txn.list_multimap_tables().expect("list").count(),
        0,
        "multimap tables are not copied by snapshots yet"
    );
    for table in SNAPSHOT_TABLES {
        assert!(
            !table.raw_records(&txn).expect("records").is_empty(),
            "table {} is empty: populate it in `populated()` so that its copy is checked",
            table.table_name()
        );
    }
}

#[test]
fn a_snapshot_copies_every_record_byte_for_byte() {
    let p = populated();
    let dest = p.path.with_file_name("snap.redb");
    let report = p.meta.snapshot_to(&dest).expect("snapshot");
    assert_eq!(report.info.cluster_id, p.meta.cluster_id());
    assert_eq!(report.info.release, env!("CARGO_PKG_VERSION"));
    assert_eq!(report.tables.len(), SNAPSHOT_TABLES.len());

    let copy = redb::ReadOnlyDatabase::open(&dest).expect("open snapshot");
    let copied = copy.begin_read().expect("read");
    let original = p.meta.db.begin_read().expect("read");
    let mut want = listed_names();
    want.insert(SNAPSHOT_NAME.to_owned());
    assert_eq!(table_names(&copied), want);
    for (table, (name, count)) in SNAPSHOT_TABLES.iter().zip(&report.tables) {
        let from = table.raw_records(&original).expect("original");
        let to = table.raw_records(&copied).expect("copy");
        assert_eq!(from, to, "table {name}");
        assert_eq!(*count, from.len() as u64, "table {name}");
    }
    drop(copy);
    let info = read_snapshot_info(&dest)
        .expect("info")
        .expect("a snapshot");
    assert_eq!(info, report.info);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dest).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "snapshots hold key secrets");
    // Never over an existing file.
    assert!(matches!(
        p.meta.snapshot_to(&dest),
        Err(MetaError::File(e)) if e.kind() == std::io::ErrorKind::AlreadyExists
    ));
}

#[test]
fn tables_larger_than_a_batch_are_copied_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
    let node = Uuid::from_u128(1);
    let chunks: Vec<ChunkId> = (0..(super::COPY_BATCH as u32 * 2 + 7))
        .map(|i| {
            let mut c = [0u8; 16];
            c[..4].copy_from_slice(&i.to_be_bytes());
            c
        })
        .collect();
    meta.enqueue_deletes(&node, &chunks, DeleteReason::Orphan)
        .expect("enqueue");
    let dest = dir.path().join("snap.redb");
    let report = meta.snapshot_to(&dest).expect("snapshot");
    let queued = report
        .tables
        .iter()
        .find(|(name, _)| *name == "delete_queue")
        .map(|(_, n)| *n);
    assert_eq!(queued, Some(chunks.len() as u64));
    drop(meta);
    let restored = Meta::open(&dest).expect("open restored");
    assert_eq!(
        restored.delete_queue_len().expect("len"),
        chunks.len() as u64
    );
}

#[test]
fn a_restored_snapshot_marks_its_nodes_once_and_keeps_in_flight_chunks() {
    let p = populated();
    let dest = p.path.with_file_name("snap.redb");
    let report = p.meta.snapshot_to(&dest).expect("snapshot");
    let queued_before = p.meta.delete_queue_len().expect("len");
    drop(p.meta);

    let restored = Meta::open(&dest).expect("open restored");
    // Every known node is marked; the mark made before the backup keeps its reason.
    let marks = restored.unaccounted_nodes().expect("marks");
    assert_eq!(marks.iter().map(|m| m.node_id).collect::<Vec<_>>(), p.nodes);
    let reason = restored_reason(report.info.taken_unix_ms);
    for mark in &marks[..5] {
        assert_eq!(mark.reason, reason);
    }
    assert_eq!(marks[5].reason, "test");
    // The session in flight is gone, its chunks neither referenced nor queued for deletion.
    assert_eq!(restored.session_count().expect("sessions"), 0);
    assert_eq!(restored.delete_queue_len().expect("len"), queued_before);
    for part in &p.open_session.parts {
        let referenced = restored
            .referenced_among(&part.node_id, &[part.chunk_id])
            .expect("refs");
        assert!(referenced.is_empty(), "{part:?}");
    }
    // The committed file is there as it was, its chunks still referenced.
    assert_eq!(
        restored.get_file(&p.file.id).expect("get"),
        Some(p.file.clone())
    );
    for part in &p.file.parts {
        let referenced = restored
            .referenced_among(&part.node_id, &[part.chunk_id])
            .expect("refs");
        assert_eq!(referenced.len(), 1, "{part:?}");
    }
    // The marker is gone: the file now looks like any metadata, and a second open of it
    // changes nothing (an operator's later clearing of a mark stays).
    assert!(restored.clear_unaccounted(&p.nodes[0]).expect("clear"));
    drop(restored);
    assert_eq!(read_snapshot_info(&dest).expect("info"), None);
    let again = Meta::open(&dest).expect("reopen");
    assert_eq!(again.unaccounted_count().expect("count"), 5);
    let txn = again.db.begin_read().expect("read");
    assert_eq!(table_names(&txn), listed_names());
}
