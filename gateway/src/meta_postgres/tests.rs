//! Tests of the PostgreSQL backend against a real server: `SIXFOLD_TEST_POSTGRES_URL` names it
//! (`.ci/run` starts one). Without it the tests skip with a message, unless `CI` is set, where
//! they fail. Each test works in a database of its own, dropped at its end.

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::meta::{FileRecord, PartRecord, PlannedPart, UploadSession};
use crate::split::{SplitPolicy, plan};

const CHECKSUM: &str = "0123456789abcdef0123456789abcdef";

/// A database of its own for one test, dropped with the handle.
pub(crate) struct TestDb {
    pub url: String,
    server: String,
    name: String,
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..path]),
        None => format!("{}/{db}", &base[..path]),
    }
}

async fn admin(server: &str, sql: &str) -> Result<(), String> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(server, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let task = tokio::spawn(conn);
    let r = client.batch_execute(sql).await.map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    r
}

impl TestDb {
    /// A fresh database, or `None` (said on stderr) when the PostgreSQL tests skip.
    pub(crate) async fn create(test: &str) -> Option<TestDb> {
        let server = match std::env::var("SIXFOLD_TEST_POSTGRES_URL") {
            Ok(u) if !u.trim().is_empty() => u,
            _ if std::env::var_os("CI").is_some() => panic!(
                "{test}: SIXFOLD_TEST_POSTGRES_URL is not set, and CI is: the PostgreSQL tests \
                 must run here"
            ),
            _ => {
                eprintln!("skipped {test}: set SIXFOLD_TEST_POSTGRES_URL to run it");
                return None;
            }
        };
        let name = format!("sixfold_test_{}", Uuid::new_v4().simple());
        admin(&server, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("{test}: create database: {e}"));
        Some(TestDb {
            url: with_database(&server, &name),
            server,
            name,
        })
    }

    pub(crate) async fn open(&self) -> PostgresMeta {
        PostgresMeta::open(&self.url, &PostgresSettings::default())
            .await
            .expect("open")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(admin(&server, &sql))
        })
        .join();
        if !matches!(joined, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

fn session(size: u64) -> UploadSession {
    let ranges = plan(size, &SplitPolicy::default());
    let nodes: Vec<Uuid> = ranges.iter().map(|_| Uuid::new_v4()).collect();
    UploadSession {
        file_id: Uuid::new_v4(),
        name: "data.bin".into(),
        content_type: None,
        size: Some(size),
        created_unix_ms: 1_000,
        expires_unix_ms: 3_601_000,
        parts: PlannedPart::plan(&ranges, &nodes).expect("plan"),
        multipart: false,
        owner: None,
    }
}

fn acks(s: &UploadSession) -> Vec<PartRecord> {
    s.parts
        .iter()
        .map(|p| p.verify_ack(p.len, 7, 7).expect("ack"))
        .collect()
}

#[test]
fn urls_are_redacted_and_recognised() {
    assert_eq!(
        redacted("postgres://u:secret@h:5/db?x=1"),
        "postgres://u:***@h:5/db?x=1"
    );
    assert_eq!(redacted("postgres://h/db"), "postgres://h/db");
    assert!(is_postgres_url("postgresql://h/db"));
    assert!(!is_postgres_url("/var/lib/sixfold"));
    assert_eq!(
        with_database("postgres://u@h:1/postgres?a=b", "x"),
        "postgres://u@h:1/x?a=b"
    );
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
}

#[tokio::test]
async fn opening_twice_keeps_the_cluster_id_and_a_newer_schema_is_refused() {
    let Some(db) = TestDb::create("opening_twice").await else {
        return;
    };
    let a = db.open().await;
    let b = db.open().await;
    assert_eq!(a.cluster_id(), b.cluster_id());
    assert_ne!(a.cluster_id(), Uuid::nil());
    admin(
        &db.url,
        "INSERT INTO schema_version (version, release) VALUES (99, 'future')",
    )
    .await
    .expect("bump");
    let err = PostgresMeta::open(&db.url, &PostgresSettings::default())
        .await
        .expect_err("newer schema");
    assert!(
        matches!(
            err,
            MetaError::SchemaVersion {
                found: 99,
                supported: schema::SCHEMA_VERSION
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_session_commits_into_a_file_and_a_delete_queues_its_chunks() {
    let Some(db) = TestDb::create("session_commit").await else {
        return;
    };
    let meta = db.open().await;
    let s = session(10 << 20);
    meta.begin_session(&s).await.expect("begin");
    assert!(matches!(
        meta.begin_session(&s).await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(
        meta.get_session(&s.file_id).await.expect("get"),
        Some(s.clone())
    );
    let mut short = acks(&s);
    short.pop();
    assert!(matches!(
        meta.commit_session(&s.file_id, short, CHECKSUM.into(), 10 << 20)
            .await,
        Err(MetaError::InvalidCommit { .. })
    ));
    let file: FileRecord = meta
        .commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 10 << 20)
        .await
        .expect("commit");
    assert_eq!(
        meta.get_file(&s.file_id).await.expect("get"),
        Some(file.clone())
    );
    assert_eq!(meta.get_session(&s.file_id).await.expect("get"), None);
    assert_eq!(meta.file_count().await.expect("count"), 1);
    assert_eq!(meta.pending_mark_count().await.expect("marks"), 6);
    let listed = meta.list_files(None, 10).await.expect("list");
    assert_eq!(listed, vec![file.clone()]);
    let removed = meta.delete_file(&s.file_id).await.expect("delete");
    assert_eq!(removed, Some(file));
    assert_eq!(meta.delete_queue_len().await.expect("queue"), 6);
    assert_eq!(meta.pending_mark_count().await.expect("marks"), 0);
    for p in &s.parts {
        let pending = meta
            .pending_deletes(&p.node_id, usize::MAX)
            .await
            .expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].chunk_id, p.chunk_id);
    }
}

/// Many commits and deletes at once: the serializable transactions that clash are retried,
/// every commit lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_retried_and_all_land() {
    let Some(db) = TestDb::create("concurrent_writes").await else {
        return;
    };
    let meta = db.open().await;
    let sessions: Vec<UploadSession> = (0..24).map(|_| session(7 << 20)).collect();
    let mut tasks = Vec::new();
    for s in sessions.clone() {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            meta.begin_session(&s).await.expect("begin");
            meta.commit_session(&s.file_id, acks(&s), CHECKSUM.into(), 7 << 20)
                .await
                .expect("commit");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(meta.file_count().await.expect("count"), 24);
    let ids: HashSet<Uuid> = meta
        .list_files(None, 100)
        .await
        .expect("list")
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(ids, sessions.iter().map(|s| s.file_id).collect());
}

/// The shared behaviour, run against PostgreSQL: the same cases as redb's (`meta::conformance`).
mod conformance {
    async fn fresh() -> Option<crate::meta::conformance::Fixture> {
        let db = super::TestDb::create("meta conformance on PostgreSQL").await?;
        let meta = db.open().await;
        Some((Box::new(db), std::sync::Arc::new(meta)))
    }
    crate::conformance_suite!(fresh);
}

#[test]
fn retries_wait_longer_up_to_a_bound() {
    assert_eq!(retry_delay(1, 0), Duration::from_millis(2));
    assert_eq!(retry_delay(3, 0), Duration::from_millis(8));
    assert_eq!(retry_delay(30, 0), Duration::from_millis(128));
    assert!(retry_delay(2, 255) < Duration::from_millis(12));
}

#[tokio::test]
async fn two_gateways_share_liveness_leases_and_node_reports() {
    use crate::meta::MetaStore;
    use crate::meta::coordination::{GatewayBeat, RelayedReport, ReportKind};
    let Some(db) = TestDb::create("coordination").await else {
        return;
    };
    // Two gateways: two connections pools over one database.
    let (a, b) = (db.open().await, db.open().await);
    let (ca, cb) = (
        a.coordination().expect("shared"),
        b.coordination().expect("shared"),
    );
    let (ga, gb) = (Uuid::from_u128(1), Uuid::from_u128(2));

    let beat = |id, seen| GatewayBeat {
        id,
        name: format!("gw-{id}"),
        started_unix_ms: 5,
        seen_unix_ms: seen,
    };
    ca.beat(&beat(ga, 100)).await.expect("beat a");
    cb.beat(&beat(gb, 110)).await.expect("beat b");
    ca.beat(&beat(ga, 120)).await.expect("beat a again");
    let mut seen = cb.gateways().await.expect("gateways");
    seen.sort_by_key(|g| g.id);
    assert_eq!(seen, vec![beat(ga, 120), beat(gb, 110)]);
    cb.forget_gateway(gb).await.expect("forget");
    assert_eq!(ca.gateways().await.expect("gateways"), vec![beat(ga, 120)]);

    // The lease: one holder until it runs out or is given up.
    assert!(ca.claim_lease("cleanup", ga, 1_000, 500).await.expect("a"));
    assert!(
        !cb.claim_lease("cleanup", gb, 1_499, 500)
            .await
            .expect("b waits")
    );
    assert!(
        ca.claim_lease("cleanup", ga, 1_400, 500)
            .await
            .expect("a renews")
    );
    assert!(
        !cb.claim_lease("cleanup", gb, 1_800, 500)
            .await
            .expect("renewed")
    );
    assert!(
        cb.claim_lease("cleanup", gb, 1_900, 500)
            .await
            .expect("ran out")
    );
    assert_eq!(
        ca.lease("cleanup").await.expect("lease").map(|l| l.holder),
        Some(gb)
    );
    ca.release_lease("cleanup", ga)
        .await
        .expect("not a's to give");
    assert!(
        !ca.claim_lease("cleanup", ga, 2_000, 500)
            .await
            .expect("still b's")
    );
    cb.release_lease("cleanup", gb).await.expect("b gives up");
    assert!(
        ca.claim_lease("cleanup", ga, 2_001, 500)
            .await
            .expect("free")
    );
    // Other jobs have leases of their own.
    assert!(
        cb.claim_lease("rebalance", gb, 2_001, 500)
            .await
            .expect("other job")
    );

    // Claims racing from both gateways: exactly one wins each round.
    for round in 0..10u64 {
        let now = 10_000 + round * 1_000;
        let (x, y) = tokio::join!(
            ca.claim_lease("race", ga, now, 500),
            cb.claim_lease("race", gb, now, 500)
        );
        let (x, y) = (x.expect("a claims"), y.expect("b claims"));
        assert!(x ^ y, "round {round}: a {x}, b {y}");
    }

    // Relayed reports: the latest per node, readable by the other gateway.
    let report = |received| RelayedReport {
        node_id: Uuid::from_u128(9),
        via: ga,
        kind: ReportKind::Heartbeat,
        registered_unix_ms: 50,
        received_unix_ms: received,
        name: "node-9".into(),
        shard_addrs: vec!["127.0.0.1:7001".parse().expect("addr")],
        capacity: 100,
        used: 1,
        chunk_count: 1,
        in_flight: 0,
        draining: false,
        read_only: false,
        software: "t".into(),
        cluster_id: Some(a.cluster_id()),
    };
    ca.relay_report(&report(60)).await.expect("relay");
    ca.relay_report(&report(70)).await.expect("relay again");
    assert_eq!(cb.relayed_reports().await.expect("read"), vec![report(70)]);
    cb.forget_report(Uuid::from_u128(9)).await.expect("forget");
    assert!(ca.relayed_reports().await.expect("read").is_empty());
}

#[tokio::test]
async fn a_gateway_s_figures_never_overwrite_an_operator_state_set_through_another() {
    use crate::meta::coordination::Coordination;
    use crate::meta::{NodeRecord, NodeState, OperatorState};
    let Some(db) = TestDb::create("node figures").await else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let mut record = NodeRecord {
        id: Uuid::from_u128(3),
        name: "n".into(),
        shard_addrs: vec!["127.0.0.1:7002".parse().expect("addr")],
        capacity: 10,
        used: 1,
        chunk_count: 1,
        in_flight: 0,
        state: NodeState::Up,
        registered_unix_ms: 1,
        last_heartbeat_unix_ms: 1,
        operator_state: None,
    };
    a.save_node_figures(&record).await.expect("first figures");
    // The operator drains it through gateway B...
    b.upsert_node(&NodeRecord {
        operator_state: Some(OperatorState::Draining),
        ..record.clone()
    })
    .await
    .expect("drain");
    // ...while A, which has not seen that yet, stores the node's newer figures.
    record.used = 5;
    a.save_node_figures(&record).await.expect("figures");
    let stored = b.get_node(&record.id).await.expect("get").expect("there");
    assert_eq!(stored.used, 5);
    assert_eq!(stored.operator_state, Some(OperatorState::Draining));
}
