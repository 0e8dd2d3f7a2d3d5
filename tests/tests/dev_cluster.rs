//! The README's first command: `sixfold-gateway dev` brings up a whole cluster, stops every child
//! on SIGTERM, and brings back the same cluster (same node ids, same files) when run again, also
//! from a data dir whose certificates predate node identities, and over HTTPS with `--tls`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sixfold_tests::{Proc, bin_path, free_tcp_port, pattern};

/// PIDs of running processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until no running process mentions `needle`, failing with `what` after `within`.
fn wait_no_process_mentioning(needle: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn wait_healthy(http: &reqwest::Client, url: &str, dev: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(dev.is_running(), "dev exited early:\n{}", dev.log_text());
        assert!(
            Instant::now() < deadline,
            "dev cluster not healthy in time:\n{}",
            dev.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until dev's log says `text`: dev prints its ready lines after its own health check,
/// which may come a moment after the test's.
fn wait_log(dev: &mut Proc, text: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dev.log_text().contains(text) {
        assert!(dev.is_running(), "dev exited early:\n{}", dev.log_text());
        assert!(Instant::now() < deadline, "{what}:\n{}", dev.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn node_ids(http: &reqwest::Client, url: &str) -> Vec<String> {
    let v: serde_json::Value = http
        .get(format!("{url}/nodes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let arr = v
        .as_array()
        .cloned()
        .or_else(|| v["nodes"].as_array().cloned())
        .expect("node list");
    let mut ids: Vec<String> = arr
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn start_dev(data: &Path, port: u16, run: u32) -> Proc {
    start_dev_with(data, port, run, &[])
}

fn start_dev_with(data: &Path, port: u16, run: u32, extra: &[&str]) -> Proc {
    let mut args = vec![
        "dev".to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--nodes".into(),
        "6".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        // Not dev's default 9000, which another cluster on this machine may hold.
        "--s3-listen".into(),
        format!("127.0.0.1:{}", free_tcp_port()),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Proc::spawn(
        "dev",
        &bin_path("sixfold-gateway"),
        &args,
        data.with_extension(format!("log{run}")),
    )
}

/// A dev killed outright (SIGKILL: no chance to stop its nodes itself) must not leave six
/// nodes running, holding their ports and data dirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dev_leaves_no_node_running() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("sixfold-data");
    let port = free_tcp_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut dev = start_dev(&data, port, 1);
    wait_healthy(&reqwest::Client::new(), &url, &mut dev).await;
    let needle = data.display().to_string();
    let running = processes_mentioning(&needle);
    assert!(running.len() >= 7, "gateway and six nodes run: {running:?}");

    dev.kill9();
    wait_no_process_mentioning(
        &needle,
        Duration::from_secs(30),
        "nodes left running after dev was killed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_starts_a_cluster_stops_it_and_brings_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("sixfold-data");
    let port = free_tcp_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut dev = start_dev(&data, port, 1);
    wait_healthy(&http, &url, &mut dev).await;
    // dev's first run leaves an admin token in the data dir; every other request carries it.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let http = sixfold_tests::cluster::authorized_client(token.trim());
    wait_log(&mut dev, &url, "dev prints its URL");
    // ... and the same key as AWS credentials for the S3 listener, private.
    let credentials = std::fs::read_to_string(data.join("credentials")).unwrap();
    let (key_id, secret) = token.trim().split_once('.').unwrap();
    assert!(credentials.contains(&format!("aws_access_key_id = {key_id}\n")));
    assert!(credentials.contains(&format!("aws_secret_access_key = {secret}\n")));
    assert!(credentials.contains("[default]") && credentials.contains("region = us-east-1"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let ids_first = node_ids(&http, &url).await;
    assert_eq!(ids_first.len(), 6);

    let p = pattern(4242);
    let size = 7 * 1024 * 1024 + 3;
    let r = http
        .post(format!("{url}/files"))
        .header("X-File-Name", "dev.bin")
        .body(p.bytes(0, size))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let needle = data.display().to_string();
    assert!(
        processes_mentioning(&needle).len() >= 7,
        "gateway and six nodes run"
    );
    assert_eq!(
        dev.terminate(Duration::from_secs(30)),
        Some(0),
        "dev exits cleanly on SIGTERM"
    );
    wait_no_process_mentioning(&needle, Duration::from_secs(10), "children left running");

    // Certificates as the release before node identities made them (no role URI): dev
    // re-issues them, keeping every node's id.
    let ca = sixfold_certs::ClusterCa::load(&data.join("gateway/certs")).expect("dev CA");
    for (cert, key) in [
        ("gateway/certs/gateway.pem", "gateway/certs/gateway-key.pem"),
        ("node-0/certs/node.pem", "node-0/certs/node-key.pem"),
    ] {
        ca.issue_server(
            &["127.0.0.1".parse().unwrap()],
            &[],
            sixfold_certs::Validity::leaf_default(),
        )
        .unwrap()
        .write(&data.join(cert), &data.join(key), true)
        .unwrap();
    }

    let mut dev = start_dev(&data, port, 2);
    wait_healthy(&http, &url, &mut dev).await;
    assert_eq!(
        node_ids(&http, &url).await,
        ids_first,
        "same nodes after a restart"
    );
    let body = http
        .get(format!("{url}/files/{id}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), size);
    assert_eq!(p.first_mismatch(0, &body), None);
    assert_eq!(dev.terminate(Duration::from_secs(30)), Some(0));

    // `--tls`: the same cluster over HTTPS, trusted through the cluster CA dev prints.
    let mut dev = start_dev_with(&data, port, 3, &["--tls"]);
    let ca_path = data.join("gateway/certs/ca.pem");
    let https = format!("https://127.0.0.1:{port}");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30", "--cacert"])
            .arg(&ca_path)
            .args(args)
            .output()
            .expect("run curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, code) = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{https}/health"),
        ]);
        if ok && code == "200" {
            break;
        }
        assert!(dev.is_running(), "dev --tls exited:\n{}", dev.log_text());
        assert!(
            Instant::now() < deadline,
            "dev --tls not healthy:\n{}",
            dev.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_log(
        &mut dev,
        &ca_path.display().to_string(),
        "dev prints the CA for curl --cacert",
    );
    let auth = format!("Authorization: Bearer {}", token.trim());
    let copy = tmp.path().join("copy.bin");
    let (ok, code) = curl(&[
        "--http2",
        "-H",
        &auth,
        "-o",
        copy.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &format!("{https}/files/{id}"),
    ]);
    assert!(ok && code == "200", "{code}");
    let body = std::fs::read(&copy).unwrap();
    assert_eq!(body.len(), size);
    assert_eq!(p.first_mismatch(0, &body), None);
    assert_eq!(dev.terminate(Duration::from_secs(30)), Some(0));

    // The metadata file is lost: dev starts anyway with a new first admin token (the old one
    // kept aside), says recovery_needed, and `admin recover` brings the file back.
    std::fs::remove_file(data.join("gateway/meta.redb")).unwrap();
    let mut dev = start_dev(&data, port, 4);
    let new_token = loop {
        match std::fs::read_to_string(data.join("admin.token")) {
            Ok(t) if t != token => break t,
            _ => {
                assert!(dev.is_running(), "dev exited early:\n{}", dev.log_text());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let stale: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("admin.token.stale-")
        })
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(std::fs::read_to_string(stale[0].path()).unwrap(), token);
    let http = sixfold_tests::cluster::authorized_client(new_token.trim());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = http.get(format!("{url}/health")).send().await;
        if let Ok(r) = r
            && r.status() == StatusCode::SERVICE_UNAVAILABLE
            && r.text()
                .await
                .unwrap_or_default()
                .contains("recovery_needed")
        {
            break;
        }
        assert!(dev.is_running(), "dev exited early:\n{}", dev.log_text());
        assert!(
            Instant::now() < deadline,
            "no recovery_needed:\n{}",
            dev.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The rebuild needs every node verified (up), not only registered: wait for that state.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let nodes: serde_json::Value = match http.get(format!("{url}/nodes")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let list = nodes
            .as_array()
            .or_else(|| nodes["nodes"].as_array())
            .cloned()
            .unwrap_or_default();
        if list.iter().filter(|n| n["state"] == "up").count() == 6 {
            break;
        }
        assert!(dev.is_running(), "dev exited early:\n{}", dev.log_text());
        assert!(
            Instant::now() < deadline,
            "six nodes never up:\n{}",
            dev.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = std::process::Command::new(sixfold_tests::bin_path("sixfold-gateway"))
        .args(["admin", "recover", "--timeout", "2m", "--gateway", &url])
        .arg("--token-file")
        .arg(data.join("admin.token"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files_restored"], 1, "{report}");
    wait_healthy(&http, &url, &mut dev).await;
    let body = http
        .get(format!("{url}/files/{id}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), size);
    assert_eq!(p.first_mismatch(0, &body), None);
    assert_eq!(dev.terminate(Duration::from_secs(30)), Some(0));
}
