//! The gateway with its metadata in PostgreSQL (issue 16), with the real binaries and a real
//! server: `SIXFOLD_TEST_POSTGRES_URL` names it (`.ci/run` starts one). Without it these tests
//! skip with a message, unless `CI` is set, where they fail. Each test has a database of its own.

mod common;

use std::time::Duration;

use common::postgres::{TestDatabase, test_database};
use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

/// Rows of `table` in the test's database.
async fn rows(db: &TestDatabase, table: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    let task = tokio::spawn(conn);
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0);
    drop(client);
    let _ = task.await;
    n
}

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
        assert_eq!(rows(&db, "files").await, 1);
        assert_eq!(rows(&db, "nodes").await, 6);
        assert_eq!(rows(&db, "sessions").await, 0);

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
        assert_eq!(rows(&db, "files").await, 1);

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
