//! What an operator reads in the logs: one info line per request with the file id, size,
//! duration and outcome (gateway, as JSON for log shippers), one line per part on the nodes,
//! and nothing per block or per packet.

mod common;

use std::time::Duration;

use common::{assert_download_matches, upload_ok};
use serde_json::Value;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

const MIB: u64 = 1 << 20;

/// The gateway's JSON log lines whose message is `message`.
fn json_lines(log: &str, message: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// Waits until `count(log) >= want`: lines of a finished response can land just after the
/// client saw its last byte.
async fn wait_for_lines(what: &str, want: usize, mut count: impl FnMut() -> usize) {
    for _ in 0..100 {
        if count() >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {want} {what} log lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_line_per_request_with_id_size_duration_and_outcome() {
    let c = TestCluster::start(ClusterOptions {
        gateway_config: "log_format = \"json\"\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    let size = 12 * MIB;
    let p = pattern(41);
    let id = upload_ok(&c, "logged.bin", p, size).await;
    assert_download_matches(&c, &id, p, size).await;
    let gone = c
        .http
        .delete(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(gone.status(), reqwest::StatusCode::NO_CONTENT);
    let missing = c
        .http
        .get(format!("{}/files/{id}", c.url))
        .send()
        .await
        .expect("get after delete");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);

    let gateway = c.gateway.as_ref().expect("gateway runs");
    wait_for_lines("download", 1, || {
        json_lines(&gateway.log_text(), "download").len()
    })
    .await;
    let log = gateway.log_text();

    let requests = json_lines(&log, "request");
    let about_file: Vec<&Value> = requests
        .iter()
        .filter(|v| {
            v["fields"]["file_id"] == id.as_str()
                || v["fields"]["path"]
                    .as_str()
                    .is_some_and(|p| p.contains(&id))
        })
        .collect();
    let upload: Vec<&&Value> = about_file
        .iter()
        .filter(|v| v["fields"]["method"] == "POST")
        .collect();
    assert_eq!(upload.len(), 1, "upload lines: {upload:?}");
    let f = &upload[0]["fields"];
    assert_eq!(upload[0]["level"], "INFO");
    assert_eq!(f["status"], 201);
    assert_eq!(f["size"], size);
    assert_eq!(f["outcome"], "ok");
    assert!(f["elapsed_ms"].is_u64(), "no duration: {f}");

    // The download is streamed; its line is written when the last byte went out.
    let downloads = json_lines(&log, "download");
    assert_eq!(downloads.len(), 1, "download lines: {downloads:?}");
    let f = &downloads[0]["fields"];
    assert_eq!(f["file_id"], id.as_str());
    assert_eq!(f["bytes"], size);
    assert_eq!(f["outcome"], "ok");
    assert!(f["elapsed_ms"].is_u64(), "no duration: {f}");

    let deletes: Vec<&&Value> = about_file
        .iter()
        .filter(|v| v["fields"]["method"] == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "delete lines: {deletes:?}");
    assert_eq!(deletes[0]["fields"]["status"], 204);
    let not_found: Vec<&&Value> = about_file
        .iter()
        .filter(|v| v["fields"]["status"] == 404)
        .collect();
    assert_eq!(not_found.len(), 1, "404 lines: {not_found:?}");
    assert_eq!(not_found[0]["fields"]["outcome"], "not_found");

    // Nothing per block: 12 MiB moved both ways, yet only the four requests above mention the
    // file at info.
    let info_about_file = log
        .lines()
        .filter(|l| l.contains(&id) && l.contains("\"INFO\""))
        .count();
    assert_eq!(info_about_file, 4, "info lines about the file:\n{log}");

    // Each node logs its part's put, get and delete once: six parts, six of each, and no
    // line per block.
    let node_requests = |op: &str| {
        let tag = format!("op=\"{op}\"");
        c.nodes
            .iter()
            .map(|n| n.as_ref().expect("node runs").log_text())
            .flat_map(|log| {
                log.lines()
                    .filter(|l| l.contains(" INFO ") && l.contains(" request ") && l.contains(&tag))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<String>>()
    };
    wait_for_lines("node delete", 6, || node_requests("delete").len()).await;
    for op in ["put", "get", "delete"] {
        let lines = node_requests(op);
        assert_eq!(lines.len(), 6, "node {op} lines: {lines:#?}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("status=\"ok\"") && l.contains("micros=")),
            "node {op} lines: {lines:#?}"
        );
    }
    let put_bytes: u64 = node_requests("put")
        .iter()
        .filter_map(|l| {
            l.split("bytes=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(put_bytes, size, "bytes the nodes logged as stored");
}
