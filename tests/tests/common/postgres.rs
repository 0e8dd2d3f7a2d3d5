//! A PostgreSQL database of its own for one test (issue 16).
//!
//! The server is given by `SIXFOLD_TEST_POSTGRES_URL` (`.ci/run` starts one). Without it a test
//! is skipped with a message, unless `CI` is set: there a missing server is a failure. Each test
//! creates `sixfold_test_<random>` and drops it when the handle goes, so tests run in parallel.

use std::time::Duration;

/// The variable naming the server.
pub const URL_VAR: &str = "SIXFOLD_TEST_POSTGRES_URL";

/// A database that exists for the life of this handle.
pub struct TestDatabase {
    /// Connection string of the test's own database.
    pub url: String,
    server_url: String,
    name: String,
}

/// The server's URL, `None` (after saying so) when the tests using it should skip.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{test}: {URL_VAR} is not set, and CI is: the PostgreSQL tests must run here")
        }
        _ => {
            eprintln!("skipped {test}: set {URL_VAR} to a PostgreSQL server to run it");
            None
        }
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn admin_execute(server_url: &str, sql: &str) -> Result<(), String> {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(server_url, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| format!("connecting to {server_url} timed out"))?
    .map_err(|e| format!("connecting to {server_url}: {e}"))?;
    let conn = tokio::spawn(connection);
    let result = client
        .batch_execute(sql)
        .await
        .map_err(|e| format!("{sql}: {e}"));
    drop(client);
    let _ = conn.await;
    result
}

/// A fresh database for `test`, or `None` when PostgreSQL tests are skipped (see the module).
pub async fn test_database(test: &str) -> Option<TestDatabase> {
    let server_url = server_url(test)?;
    let name = format!("sixfold_test_{}", uuid::Uuid::new_v4().simple());
    admin_execute(&server_url, &format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create the test database: {e}"));
    Some(TestDatabase {
        url: with_database(&server_url, &name),
        server_url,
        name,
    })
}

impl TestDatabase {
    /// Rows of `table` in this database.
    pub async fn rows(&self, table: &str) -> i64 {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
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
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with a small runtime drops the database.
        let server_url = self.server_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(admin_execute(&server_url, &sql))
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}
