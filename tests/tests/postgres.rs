//! The gateway with its metadata in PostgreSQL (issue 16), with the real binaries and a real
//! server: `SIXFOLD_TEST_POSTGRES_URL` names it (`.ci/run` starts one). Without it these tests
//! skip with a message, unless `CI` is set, where they fail. Each test has a database of its own.
//! The rebalancer runs here too: a seventh node takes its share of the parts, every file's
//! bytes unchanged.

mod common;

use std::time::Duration;

use common::postgres::{TestDatabase, test_database};
use common::rebalance::{
    admin, chunks_settle, finished_run, moved_to_newcomer, now_ms, options, placement,
    rebalance_status, upload_files, verify_sha256,
};
use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

fn postgres_cluster(db: &TestDatabase) -> ClusterOptions {
    ClusterOptions {
        gateway_config: format!("metadata = \"{}\"\n", db.url),
        ..ClusterOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_with_the_metadata_in_postgres_and_survive_a_restart() {
    let Some(db) = test_database("postgres round trip").await else {
        return;
    };
    let mut c = TestCluster::start(postgres_cluster(&db)).await;
    bounded("round trip through PostgreSQL", async {
        let size = 7 * MIB + 3;
        let p = pattern(1601);
        let id = upload_ok(&c, "pg.bin", p, size).await;
        assert_download_matches(&c, &id, p, size).await;
        let m = meta(&c, &id).await;
        assert_eq!(m["size"], size);
        assert_eq!(m["parts"].as_array().expect("parts").len(), 6);
        // The records are PostgreSQL's: no redb file was made, the rows are there.
        assert!(!c.gateway_dir().join("meta.redb").exists());
        assert_eq!(db.rows("files").await, 1);
        assert_eq!(db.rows("nodes").await, 6);
        assert_eq!(db.rows("sessions").await, 0);

        let small = pattern(1602);
        let kept = upload_ok(&c, "kept.bin", small, 1000).await;

        let resp = c
            .http
            .delete(format!("{}/files/{id}", c.url))
            .send()
            .await
            .expect("delete");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let resp = c
            .http
            .get(format!("{}/files/{id}", c.url))
            .send()
            .await
            .expect("get");
        assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(db.rows("files").await, 1);

        // A restart reads the same database: the kept file is still served.
        let gateway = c.gateway.as_mut().expect("gateway");
        gateway.terminate(Duration::from_secs(10));
        c.start_gateway();
        c.wait_nodes_up(6).await;
        assert_download_matches(&c, &kept, small, 1000).await;
        assert_eq!(list_ids(&c).await, vec![kept.clone()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_metadata_url_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(sixfold_tests::process::bin_path("sixfold-gateway"))
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--metadata",
            "mysql://somewhere/db",
        ])
        .output()
        .expect("run gateway");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a postgres:// or postgresql:// URL"),
        "{err}"
    );
}

/// Runs `sixfold-gateway args...`, giving (success, stdout, stderr).
fn gateway_command(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(sixfold_tests::process::bin_path("sixfold-gateway"))
        .args(args)
        .output()
        .expect("run sixfold-gateway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_metadata_moves_a_redb_store_into_postgres_and_keeps_every_file() {
    let Some(db) = test_database("migrate-metadata").await else {
        return;
    };
    let mut c = TestCluster::start(ClusterOptions::default()).await;
    bounded("migration from redb", async {
        let files = [(1701u64, 0u64), (1702, 1000), (1703, 7 * MIB + 1)];
        let mut ids = Vec::new();
        for (seed, size) in files {
            ids.push(upload_ok(&c, &format!("m{seed}.bin"), pattern(seed), size).await);
        }
        let gw_dir = c.gateway_dir();
        let from = gw_dir.to_str().expect("utf-8").to_owned();

        // While the gateway runs, its redb file is locked: refused, nothing copied.
        let (ok, _, err) = gateway_command(&[
            "admin",
            "migrate-metadata",
            "--from",
            &from,
            "--to",
            &db.url,
        ]);
        assert!(!ok, "a running gateway's metadata must not be migrated");
        assert!(err.contains("stop the gateway"), "{err}");

        c.gateway
            .as_mut()
            .expect("gateway")
            .terminate(Duration::from_secs(10));
        let (ok, out, err) = gateway_command(&[
            "admin",
            "migrate-metadata",
            "--from",
            &from,
            "--to",
            &db.url,
        ]);
        assert!(ok, "migration failed: {out}{err}");
        assert!(out.contains("counts and checksums agree"), "{out}");
        let files_line = out
            .lines()
            .find(|l| l.starts_with("files "))
            .unwrap_or_else(|| panic!("no files line in {out}"));
        let counts: Vec<&str> = files_line.split_whitespace().collect();
        assert_eq!(&counts[1..3], ["3", "3"], "{out}");
        assert_eq!(db.rows("files").await, 3);
        assert_eq!(db.rows("nodes").await, 6);

        // A second run finds the database holding metadata and refuses.
        let (ok, _, err) = gateway_command(&[
            "admin",
            "migrate-metadata",
            "--from",
            &from,
            "--to",
            &db.url,
        ]);
        assert!(!ok);
        assert!(err.contains("already holds metadata"), "{err}");

        // The gateway now runs on PostgreSQL and serves every file, byte for byte, with the
        // same access keys.
        c.set_gateway_config(format!("metadata = \"{}\"\n", db.url));
        c.start_gateway();
        c.wait_nodes_up(6).await;
        for ((seed, size), id) in files.iter().zip(&ids) {
            assert_download_matches(&c, id, pattern(*seed), *size).await;
        }
        let mut listed = list_ids(&c).await;
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seventh_node_takes_its_share_with_the_metadata_in_postgres() {
    let Some(db) = test_database("postgres rebalance").await else {
        return;
    };
    let mut c = TestCluster::start(options(&format!("metadata = \"{}\"\n", db.url))).await;
    bounded("a rebalance with the metadata in PostgreSQL", async {
        let files = upload_files(&c).await;
        verify_sha256(&c, &files).await;
        let before = placement(&c, &files).await;
        let total_parts: u64 = before.values().map(|p| p.len() as u64).sum();

        // Paused first, through the CLI: the seventh node's run is planned but moves nothing
        // until it is resumed.
        let (ok, _, err) = admin(&c, &["rebalance", "pause"]);
        assert!(ok, "pause: {err}");
        let since = now_ms();
        let newcomer = c.add_node();
        c.wait_nodes_up(7).await;
        let planned = loop {
            let s = rebalance_status(&c).await;
            if s["trigger"] == "node_added"
                && s["state"] == "paused"
                && s["parts_planned"].as_u64().unwrap_or(0) > 0
            {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(planned["parts_done"], 0, "{planned}");
        assert_eq!(db.rows("moves").await, 0, "a move recorded while paused");
        let (ok, _, err) = admin(&c, &["rebalance", "resume"]);
        assert!(ok, "resume: {err}");
        let run = finished_run(&c, "node_added", since).await;
        assert_eq!(run["mode"], "converge", "{run}");
        assert_eq!(run["parts_failed"], 0, "{run}");
        let done = run["parts_done"].as_u64().unwrap_or(0);
        assert!(done > 0, "{run}");

        // Each moved part went to the new node, at most one per file, and the files name
        // exactly what the run says it moved.
        let after = placement(&c, &files).await;
        let moved = moved_to_newcomer(&c, newcomer, &before, &after).await;
        assert_eq!(moved, done, "{run}");
        verify_sha256(&c, &files).await;

        // The sources go after the grace period: one chunk per part on the nodes, no move
        // left in the database.
        chunks_settle(&c, total_parts).await;
        while db.rows("moves").await > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A forced run through the CLI finds the cluster converged.
        let since = now_ms();
        let (ok, _, err) = admin(&c, &["rebalance", "start", "--force"]);
        assert!(ok, "start: {err}");
        let again = finished_run(&c, "on_demand", since).await;
        assert_eq!(again["parts_planned"], 0, "{again}");
        let (ok, out, err) = admin(&c, &["rebalance", "status"]);
        assert!(ok, "status: {err}");
        assert!(out.contains("state:        idle"), "{out}");
        verify_sha256(&c, &files).await;
    })
    .await;
}
