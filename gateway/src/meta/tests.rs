//! Tests of the metadata store against real redb files in temporary directories.

use std::collections::HashSet;

use tempfile::TempDir;
use uuid::Uuid;

use super::conformance::{acks, node, session};
use super::*;

const CHECKSUM: &str = "0123456789abcdef0123456789abcdef";

fn fresh() -> (TempDir, Meta) {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
    (dir, meta)
}

fn queued(meta: &Meta, nodes: impl IntoIterator<Item = Uuid>) -> HashSet<(Uuid, ChunkId)> {
    let mut out = HashSet::new();
    for n in nodes {
        for d in meta.pending_deletes(&n, usize::MAX).expect("pending") {
            assert_eq!(d.node_id, n);
            out.insert((d.node_id, d.chunk_id));
        }
    }
    out
}

fn chunks_of(s: &UploadSession) -> HashSet<(Uuid, ChunkId)> {
    s.parts.iter().map(|p| (p.node_id, p.chunk_id)).collect()
}

#[test]
fn errors_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<MetaError>();
    send_sync::<Meta>();
}

#[test]
fn expired_sessions_are_listed() {
    let (_dir, meta) = fresh();
    let mut early = session(10);
    early.expires_unix_ms = 100;
    let mut late = session(10);
    late.expires_unix_ms = 200;
    meta.begin_session(&early).expect("begin");
    meta.begin_session(&late).expect("begin");
    assert!(meta.expired_sessions(99).expect("expired").is_empty());
    assert_eq!(
        meta.expired_sessions(100).expect("expired"),
        vec![early.clone()]
    );
    let mut both: Vec<Uuid> = meta
        .expired_sessions(1_000)
        .expect("expired")
        .into_iter()
        .map(|s| s.file_id)
        .collect();
    both.sort();
    let mut want = vec![early.file_id, late.file_id];
    want.sort();
    assert_eq!(both, want);
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let (s, live, gone, n) = {
        let meta = Meta::open(&path).expect("open");
        let s = session(9 * 1024 * 1024);
        meta.begin_session(&s).expect("begin");
        meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 9 * 1024 * 1024)
            .expect("commit");
        let live = session(4096);
        meta.begin_session(&live).expect("begin");
        let gone = session(2 * 1024 * 1024);
        meta.begin_session(&gone).expect("begin");
        meta.abort_session(&gone.file_id).expect("abort");
        let n = node("n");
        meta.upsert_node(&n).expect("upsert");
        (
            meta.get_file(&s.file_id).expect("get").expect("file"),
            live,
            gone,
            n,
        )
    };
    let meta = Meta::open(&path).expect("reopen");
    assert_eq!(meta.get_file(&s.id).expect("get"), Some(s));
    assert_eq!(
        meta.get_session(&live.file_id).expect("get"),
        Some(live.clone())
    );
    assert_eq!(meta.get_node(&n.id).expect("get"), Some(n));
    let nodes = gone.parts.iter().map(|p| p.node_id);
    assert_eq!(queued(&meta, nodes), chunks_of(&gone));
    assert!(
        meta.referenced_chunks(&live.parts[0].node_id)
            .expect("refs")
            .contains(&live.parts[0].chunk_id)
    );
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    drop(Meta::open(&path).expect("open"));
    {
        let db = redb::Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("txn");
        txn.open_table(tables::SCHEMA)
            .expect("table")
            .insert(tables::SCHEMA_VERSION_KEY, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = Meta::open(&path).expect_err("newer schema");
    assert!(
        matches!(
            err,
            MetaError::SchemaVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("schema version 2"), "{err}");
}

#[test]
fn a_database_open_elsewhere_is_refused() {
    let (dir, _meta) = fresh();
    let err = Meta::open(dir.path().join("meta.redb")).expect_err("already open");
    assert!(matches!(err, MetaError::Storage(_)), "{err}");
}

#[test]
fn a_corrupt_value_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let id = Uuid::new_v4();
    drop(Meta::open(&path).expect("open"));
    {
        let db = redb::Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("txn");
        txn.open_table(tables::FILES)
            .expect("table")
            .insert(id.as_bytes(), &[9u8, 1, 2][..])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let meta = Meta::open(&path).expect("open");
    assert!(matches!(
        meta.get_file(&id),
        Err(MetaError::Corrupt {
            table: "files",
            source: CodecError::UnknownVersion(9)
        })
    ));
    assert!(matches!(
        meta.list_files(None, 10),
        Err(MetaError::Corrupt { .. })
    ));
}

#[test]
fn not_a_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    std::fs::write(&path, vec![0x5a; 8192]).expect("write");
    assert!(matches!(Meta::open(&path), Err(MetaError::Storage(_))));
}

#[test]
fn the_cluster_id_is_made_once_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let first = Meta::open(&path).expect("open").cluster_id();
    assert!(!first.is_nil());
    assert_eq!(Meta::open(&path).expect("reopen").cluster_id(), first);
    // A new metadata file is a new cluster.
    let other = Meta::open(dir.path().join("other.redb"))
        .expect("open other")
        .cluster_id();
    assert_ne!(other, first);
}
