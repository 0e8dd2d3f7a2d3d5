//! Online backups of the metadata (issue #13, test 5): `admin backup` while the gateway serves,
//! a restore that serves every file committed before the backup and deletes nothing it cannot
//! account for, and the periodic snapshots to `backup_dir`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, Pattern, TestCluster, bin_path, pattern};

/// The value of a `/metrics` line starting with `name` (labels included), 0 if absent.
async fn counter(c: &TestCluster, name: &str) -> u64 {
    metrics_text(c)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

async fn total_chunks(c: &TestCluster) -> u64 {
    chunk_counts(c).await.iter().sum()
}

/// Runs `sixfold-gateway admin ... backup --out OUT` against the cluster, as an operator would
/// from another directory; returns stderr.
async fn admin_backup(c: &TestCluster, out: &Path) -> String {
    let args: Vec<String> = vec![
        "admin".into(),
        "--gateway".into(),
        c.url.clone(),
        "--token-file".into(),
        c.gateway_dir().join("admin.token").display().to_string(),
        "backup".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin_path("sixfold-gateway"))
            .args(&args)
            .env_remove("SIXFOLD_TOKEN")
            .current_dir(std::env::temp_dir())
            .output()
    })
    .await
    .expect("join")
    .expect("run admin backup");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "admin backup failed: {stderr}");
    stderr
}

/// A committed file and what it must read back as.
struct Uploaded {
    id: String,
    pattern: Pattern,
    len: u64,
    checksum: String,
}

async fn upload(c: &TestCluster, name: &str, p: Pattern, len: u64) -> Uploaded {
    let (status, json) = upload_raw(c, name, p, len).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    Uploaded {
        id: json["id"].as_str().expect("id").to_owned(),
        pattern: p,
        len,
        checksum: json["checksum"].as_str().expect("checksum").to_owned(),
    }
}

/// Downloads `f` and checks every byte and the whole-file checksum.
async fn assert_served(c: &TestCluster, f: &Uploaded) {
    let (status, _, body) = download(c, &f.id, None).await;
    assert_eq!(status, StatusCode::OK, "file {}", f.id);
    assert_eq!(body.len() as u64, f.len);
    assert_eq!(f.pattern.first_mismatch(0, &body), None, "file {}", f.id);
    let checksum = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body));
    assert_eq!(checksum, f.checksum, "file {}", f.id);
    assert_eq!(meta(c, &f.id).await["checksum"], f.checksum.as_str());
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_serves_every_file_committed_before_it_and_deletes_nothing() {
    // Orphan scans every 300 ms with no grace: any chunk left unprotected after the restore
    // would be quarantined and deleted within a second.
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: "cleanup_interval = \"300ms\"\nheartbeat_interval = \"500ms\"\n\
                         orphan_scan_interval = \"300ms\"\norphan_scan_delay = \"300ms\"\n\
                         orphan_grace = \"0s\"\n"
            .into(),
        ..ClusterOptions::default()
    })
    .await;
    let mut before = Vec::new();
    for i in 0..3u64 {
        before.push(upload(&c, &format!("before-{i}"), pattern(10 + i), 6 * MIB + i).await);
    }
    before.push(upload(&c, "small", pattern(20), 1000).await);
    bounded("19 chunks reported", async {
        while total_chunks(&c).await != 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // An upload in flight while the backup is taken: its session is in the snapshot, its
    // commit is not.
    let held_len = 6 * MIB;
    let held_pattern = pattern(30);
    let (tx, held) = held_upload(&c, "in-flight", held_len);
    send_range(&tx, held_pattern, 0, held_len / 2).await;
    let backups = c.dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("backups dir");
    let backup = backups.join("meta-backup.redb");
    let said = admin_backup(&c, &backup).await;
    assert!(said.contains("snapshot taken at"), "{said}");
    assert_eq!(mode(&backup), 0o600, "the backup holds key secrets");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&backups)
        .expect("read")
        .map(|e| e.expect("entry").path())
        .filter(|p| p != &backup)
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    send_range(&tx, held_pattern, held_len / 2, held_len).await;
    drop(tx);
    let answer = bounded("the held upload ends", held)
        .await
        .expect("join")
        .expect("held upload");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let answer: serde_json::Value = answer.json().await.expect("json");
    let held = Uploaded {
        id: answer["id"].as_str().expect("id").to_owned(),
        pattern: held_pattern,
        len: held_len,
        checksum: answer["checksum"].as_str().expect("checksum").to_owned(),
    };
    let after = upload(&c, "after", pattern(40), 6 * MIB).await;
    bounded("31 chunks reported", async {
        while total_chunks(&c).await != 31 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(counter(&c, "sixfold_backups_total{result=\"ok\"}").await, 1);

    // The operator restores the backup: stop, copy over meta.redb, start.
    if let Some(mut gateway) = c.gateway.take() {
        assert_eq!(gateway.terminate(Duration::from_secs(20)), Some(0));
    }
    std::fs::copy(&backup, c.gateway_dir().join("meta.redb")).expect("restore meta.redb");
    c.start_gateway();
    c.wait_nodes_up(6).await;

    // Every file committed before the backup is served at once, byte for byte.
    for f in &before {
        assert_served(&c, f).await;
    }
    // Files committed after it are not in the restored metadata (a rebuild brings them back).
    for id in [&held.id, &after.id] {
        let (status, _, _) = download(&c, id, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }
    let health = c
        .http
        .get(format!("{}/health", c.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = health.json().await.expect("json");
    assert_eq!(health["reason"], "recovery_needed", "{health}");
    let message = health["message"].as_str().unwrap_or_default();
    assert!(message.contains("restored from a backup"), "{health}");

    // Three orphan scan rounds on every node, each skipped, and not a chunk gone: the later
    // files' chunks (and the in-flight upload's) are still on the nodes.
    bounded("three orphan scan rounds", async {
        while counter(&c, "sixfold_orphan_scans_skipped_total").await < 18 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(total_chunks(&c).await, 31);
    assert_eq!(counter(&c, "sixfold_orphans_deleted_total").await, 0);
    assert_eq!(counter(&c, "sixfold_orphans_quarantined_total").await, 0);
    // And the restored files are still served after the scans; new uploads work meanwhile.
    assert_served(&c, &before[0]).await;
    let new = upload(&c, "after-restore", pattern(60), 6 * MIB).await;
    assert_served(&c, &new).await;

    // `admin recover` brings back what was committed after the backup (the upload in flight
    // during it included), leaves the rest as it is, and the cluster is healthy again.
    let report = admin_recover(&c).await;
    assert_eq!(report["files_restored"], 2, "{report}");
    assert_eq!(report["sets_not_restored"], 0, "{report}");
    for f in before.iter().chain([&held, &after, &new]) {
        assert_served(&c, f).await;
    }
    let health = c
        .http
        .get(format!("{}/health", c.url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
}

/// Runs `sixfold-gateway admin recover` and returns its JSON report.
async fn admin_recover(c: &TestCluster) -> serde_json::Value {
    let token_file = c.gateway_dir().join("admin.token");
    let url = c.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin_path("sixfold-gateway"))
            .args(["admin", "recover", "--timeout", "2m", "--gateway", &url])
            .arg("--token-file")
            .arg(token_file)
            .env_remove("SIXFOLD_TOKEN")
            .current_dir(std::env::temp_dir())
            .output()
    })
    .await
    .expect("join")
    .expect("run admin recover");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "admin recover failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_backups_appear_in_backup_dir_and_only_the_newest_are_kept() {
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().join("snapshots");
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 6,
        gateway_config: format!(
            "backup_dir = \"{}\"\nbackup_interval = \"1s\"\nbackup_keep = 2\n",
            dir.display()
        ),
        ..ClusterOptions::default()
    })
    .await;
    let f = upload(&c, "kept", pattern(50), 2 * MIB).await;
    let snapshots = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
            // Not the hidden temp file of a round being written.
            Ok(entries) => entries
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        found.sort();
        found
    };
    // Two rounds after the upload, and four in all: past `backup_keep`, so pruning has run.
    let ok_before = counter(&c, "sixfold_backups_total{result=\"ok\"}").await;
    let want = (ok_before + 2).max(4);
    // A round counts its snapshot when it is in place and prunes right after: wait for both.
    let found = bounded("four periodic backups, pruned to two", async {
        loop {
            let found = snapshots(&dir);
            if counter(&c, "sixfold_backups_total{result=\"ok\"}").await >= want
                && (1..=2).contains(&found.len())
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    for path in &found {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("meta-") && name.ends_with("Z.redb") && name.len() == 26,
            "{name}"
        );
        assert_eq!(mode(path), 0o600, "{name}");
        let head = std::fs::read(path).expect("read");
        assert!(head.starts_with(b"redb"), "{name} is no redb file");
    }
    assert_eq!(
        counter(&c, "sixfold_backups_total{result=\"failed\"}").await,
        0
    );
    assert!(counter(&c, "sixfold_backup_last_success_unix_ms").await > 0);

    // The newest periodic snapshot restores like one from `admin backup`.
    let newest = found.last().expect("a snapshot").clone();
    if let Some(mut gateway) = c.gateway.take() {
        assert_eq!(gateway.terminate(Duration::from_secs(20)), Some(0));
    }
    std::fs::copy(&newest, c.gateway_dir().join("meta.redb")).expect("restore");
    c.start_gateway();
    c.wait_nodes_up(6).await;
    assert_served(&c, &f).await;
}
