//! Node identity bound to certificates, attacked as issue 12 describes, against the real
//! binaries: forged registrations and heartbeats cannot redirect or add nodes, and a node's
//! certificate cannot talk to another node over QUIC, while the gateway still can.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{assert_download_matches, bounded, quic_connect, upload_ok};
use reqwest::StatusCode;
use sixfold_certs::{NodeTls, layout};
use sixfold_node::https_client::{HttpsClient, HttpsResponse};
use sixfold_tests::{ClusterOptions, TestCluster, pattern};
use sixfold_wire::registration::{HEARTBEAT_PATH, REGISTER_PATH};
use sixfold_wire::{Decoded, Request, Response, try_decode_response};

const MIB: u64 = 1 << 20;

/// `/nodes` as (name, id, shard addresses), sorted by name.
async fn node_table(c: &TestCluster) -> Vec<(String, String, serde_json::Value)> {
    let mut rows: Vec<_> = c
        .nodes_json()
        .await
        .into_iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_owned(),
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["shard_addrs"].clone(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    rows
}

/// A report as a node sends it, claiming `node_id` at `addrs`.
fn report(node_id: &str, name: &str, addrs: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "node_id": node_id,
        "name": name,
        "shard_addrs": addrs,
        "capacity": 1u64 << 40,
        "used": 0,
        "chunk_count": 0,
        "in_flight": 0,
        "software": "forged",
    }))
    .expect("json")
}

/// POSTs to the gateway's internal listener with `tls` (blocking client, off the runtime).
async fn post_internal(
    c: &TestCluster,
    tls: Arc<rustls::ClientConfig>,
    path: &'static str,
    body: Vec<u8>,
) -> Result<HttpsResponse, String> {
    let client = HttpsClient::new(
        tls,
        &c.internal_url(),
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || client.post_json(path, &body))
        .await
        .expect("blocking task")
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn forged_reports_cannot_redirect_or_add_nodes() {
    bounded("forged reports", async {
        sixfold_certs::install_crypto_provider();
        let c = TestCluster::start(ClusterOptions::default()).await;
        let p = pattern(1201);
        let size = 12 * MIB + 5;
        let id = upload_ok(&c, "identity.bin", p, size).await;
        let before = node_table(&c).await;
        assert_eq!(before.len(), 6);
        let (node0, node1) = (&before[0], &before[1]);
        assert_eq!((node0.0.as_str(), node1.0.as_str()), ("node-0", "node-1"));

        // 1. The old cluster token, on the public port: there is no registration route.
        let token = std::fs::read_to_string(c.gateway_certs_dir().join(layout::CLUSTER_TOKEN))
            .unwrap_or_else(|_| "no-token".into());
        for path in [REGISTER_PATH, HEARTBEAT_PATH] {
            let resp = c
                .http
                .post(format!("{}{path}", c.url))
                .bearer_auth(token.trim())
                .header("content-type", "application/json")
                .body(report(&node1.1, "node-1", &node0.2))
                .send()
                .await
                .expect("public port answers");
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        }

        // 2. Node-0's certificate claiming node-1's id at node-0's addresses, and a new id
        //    (a rogue node): 403, nothing changes.
        let node0_tls = NodeTls::load(&c.node_dir(0).join("certs"))
            .expect("node-0 certificates")
            .registration_config();
        for (path, claimed, name) in [
            (HEARTBEAT_PATH, node1.1.clone(), "node-1"),
            (REGISTER_PATH, node1.1.clone(), "node-1"),
            (REGISTER_PATH, uuid::Uuid::new_v4().to_string(), "rogue"),
        ] {
            let resp = post_internal(
                &c,
                Arc::clone(&node0_tls),
                path,
                report(&claimed, name, &node0.2),
            )
            .await
            .expect("the internal listener answers node-0");
            assert_eq!(resp.status, 403, "{path} as {name}");
            let err: serde_json::Value = serde_json::from_slice(&resp.body).expect("json error");
            assert_eq!(err["error"], "forbidden");
        }

        // 3. Node-0's certificate moving node-0 to node-1's addresses: accepted as a report,
        //    but the addresses are held until node-0's certificate answers there, which it
        //    never does; /nodes keeps node-0 where it is.
        let resp = post_internal(
            &c,
            Arc::clone(&node0_tls),
            HEARTBEAT_PATH,
            report(&node0.1, "node-0", &node1.2),
        )
        .await
        .expect("the internal listener answers node-0");
        assert_eq!(resp.status, 200);
        assert_eq!(node_table(&c).await, before);

        // 4. The gateway's own certificate (not a node's) is refused in the handshake.
        let certs = c.gateway_certs_dir();
        let gateway_as_node = sixfold_certs::registration_client_config(
            &sixfold_certs::read_certificates(&certs.join(layout::CA_CERT)).expect("ca"),
            sixfold_certs::read_certificates(&certs.join(layout::GATEWAY_CERT)).expect("cert"),
            sixfold_certs::read_private_key(&certs.join(layout::GATEWAY_KEY)).expect("key"),
        )
        .expect("config");
        let refused = post_internal(
            &c,
            Arc::new(gateway_as_node),
            REGISTER_PATH,
            report(&uuid::Uuid::new_v4().to_string(), "rogue", &node0.2),
        )
        .await;
        assert!(refused.is_err(), "served: {refused:?}");

        // Nothing moved and nothing joined; the file is intact.
        assert_eq!(node_table(&c).await, before);
        c.wait_nodes_up(6).await;
        assert_download_matches(&c, &id, p, size).await;
    })
    .await;
}

/// Whether a log file of the node in `dir` contains `needle`, waiting (bounded) for it to be
/// written.
async fn eventually_logged(dir: &std::path::Path, needle: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|text| text.contains(needle)));
        if found || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends one request and decodes the answer header.
async fn call(conn: &quinn::Connection, request: &Request) -> Result<Response, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(&request.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let buf = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
    match try_decode_response(&buf).map_err(|e| e.to_string())? {
        Decoded::Message(response, _) => Ok(response),
        Decoded::NeedMore(_) => Err("no whole answer".into()),
    }
}

#[tokio::test]
async fn a_node_certificate_cannot_list_or_delete_on_another_node() {
    bounded("node certificate against another node", async {
        sixfold_certs::install_crypto_provider();
        let c = TestCluster::start(ClusterOptions::default()).await;
        let p = pattern(1202);
        let size = 6 * MIB + 1;
        let id = upload_ok(&c, "victim.bin", p, size).await;
        let table = node_table(&c).await;
        let node1_addr: SocketAddr = table[1].2[0]
            .as_str()
            .expect("address")
            .parse()
            .expect("socket address");

        // node-0's certificate and key, trusting the cluster CA, as a QUIC client.
        let certs = c.node_dir(0).join("certs");
        let node0_client = sixfold_certs::client_config(
            &sixfold_certs::read_certificates(&certs.join(layout::CA_CERT)).expect("ca"),
            sixfold_certs::read_certificates(&certs.join(layout::NODE_CERT)).expect("cert"),
            sixfold_certs::read_private_key(&certs.join(layout::NODE_KEY)).expect("key"),
        )
        .expect("config");
        let attempt = tokio::time::timeout(Duration::from_secs(20), async {
            let (_endpoint, conn) = quic_connect(node1_addr, Arc::new(node0_client)).await?;
            // TLS 1.3: the client may finish before the server has refused its certificate;
            // then the first request fails instead.
            let listed = call(
                &conn,
                &Request::List {
                    after: None,
                    limit: 10,
                },
            )
            .await?;
            let deleted = call(&conn, &Request::Delete { chunk_id: [0; 16] }).await?;
            Ok::<_, String>(format!("{listed:?} / {deleted:?}"))
        })
        .await
        .expect("attempt hung");
        let why = attempt.expect_err("node-0's certificate was served by node-1");
        eprintln!("node-0's certificate against node-1: refused: {why}");
        // Refused for the certificate's role: node-1 says so in its log.
        let logged = eventually_logged(&c.node_dir(1), "wrong role").await;
        assert!(logged, "node-1 did not log the refused role");

        // The gateway's certificate still works on the same node, and the file is intact.
        let gateway = sixfold_certs::GatewayTls::load(&c.gateway_certs_dir())
            .expect("gateway certs")
            .client_config();
        let (_endpoint, conn) = quic_connect(node1_addr, gateway)
            .await
            .expect("the gateway connects");
        let listed = call(
            &conn,
            &Request::List {
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("the gateway lists");
        assert!(matches!(listed, Response::List { .. }), "{listed:?}");
        assert_download_matches(&c, &id, p, size).await;
        // Every node names the peer behind its requests: the upload's puts came from the
        // gateway's certificate.
        assert!(
            eventually_logged(&c.node_dir(1), "op=\"put\"").await,
            "no put logged"
        );
        assert!(
            eventually_logged(
                &c.node_dir(1),
                "peer_role=gateway peer_cn=Some(\"sixfold-gateway\")"
            )
            .await,
            "put lines do not name the peer"
        );
    })
    .await;
}

/// Waits until `/nodes` shows node `id` in `state`.
async fn wait_state(c: &TestCluster, id: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = c.nodes_json().await;
        if nodes.iter().any(|n| n["id"] == id && n["state"] == state) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id} never became {state}: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_node(c: &TestCluster, id: &str) -> (StatusCode, serde_json::Value) {
    // Through the cluster's client, so it carries whatever default headers (credentials) the
    // harness sets.
    let resp = c
        .http
        .delete(format!("{}/admin/nodes/{id}", c.url))
        .send()
        .await
        .expect("DELETE /admin/nodes");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[tokio::test]
async fn only_an_empty_stopped_node_can_be_removed() {
    bounded("remove nodes", async {
        let mut c = TestCluster::start(ClusterOptions {
            gateway_config: "heartbeat_interval = \"200ms\"\ndown_after = \"1s\"\n".into(),
            ..ClusterOptions::default()
        })
        .await;
        let p = pattern(1203);
        let size = 6 * MIB + 7;
        let file = upload_ok(&c, "kept.bin", p, size).await;
        // A seventh node, added after the upload: it holds nothing. The rebalancer, which
        // would give it its share of the file's parts, is paused first.
        let resp = c
            .http
            .post(format!("{}/admin/rebalance/pause", c.url))
            .send()
            .await
            .expect("pause the rebalancer");
        assert!(resp.status().is_success(), "pause: {}", resp.status());
        let empty = c.add_node();
        c.wait_nodes_up(7).await;
        let table = node_table(&c).await;
        let id_of = |name: &str| {
            table
                .iter()
                .find(|row| row.0 == name)
                .map(|row| row.1.clone())
                .expect("node listed")
        };
        let (full_id, empty_id) = (id_of("node-0"), id_of(&format!("node-{empty}")));

        // Unknown and malformed ids.
        let (status, err) = delete_node(&c, &uuid::Uuid::new_v4().to_string()).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (status, _) = delete_node(&c, "not-a-uuid").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // A node that holds parts: refused while it runs, and still after it stopped.
        let (status, err) = delete_node(&c, &full_id).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (StatusCode::CONFLICT, Some("node_not_empty"))
        );
        c.stop_node(0, Duration::from_secs(30));
        wait_state(&c, &full_id, "down").await;
        let (status, err) = delete_node(&c, &full_id).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (StatusCode::CONFLICT, Some("node_not_empty"))
        );

        // The empty node: refused while up, removed once stopped, then unknown.
        let (status, _) = delete_node(&c, &empty_id).await;
        assert_eq!(status, StatusCode::CONFLICT);
        c.stop_node(empty, Duration::from_secs(30));
        wait_state(&c, &empty_id, "down").await;
        let (status, err) = delete_node(&c, &empty_id).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{err}");
        assert!(
            c.nodes_json()
                .await
                .iter()
                .all(|n| n["id"] != empty_id.as_str()),
            "removed node still listed"
        );
        let (status, _) = delete_node(&c, &empty_id).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // node-0 back: the file is whole again.
        c.start_node(0);
        c.wait_nodes_up(6).await;
        assert_download_matches(&c, &file, p, size).await;
    })
    .await;
}

/// Arguments of a one-shard node named `checked` on `dir`, registering with `c`.
fn checked_node_args(c: &TestCluster, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--data-dir".into(),
        dir.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--gateway".into(),
        c.internal_url(),
        "--shards".into(),
        "1".into(),
        "--name".into(),
        "checked".into(),
    ]
}

/// Starts `sixfold-node` on `dir` against the cluster and waits (bounded) for it to exit;
/// returns its log.
fn node_exits_with(c: &TestCluster, dir: &std::path::Path, what: &str) -> String {
    let args = checked_node_args(c, dir);
    let mut proc = sixfold_tests::Proc::spawn(
        what,
        &sixfold_tests::bin_path("sixfold-node"),
        &args,
        dir.join(format!("{what}.log")),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while proc.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the node kept running:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proc.log_text()
}

#[tokio::test]
async fn a_node_takes_its_id_from_its_certificate_and_refuses_a_mismatch() {
    bounded("node id consistency", async {
        let c = TestCluster::start(ClusterOptions {
            nodes: 0,
            ..ClusterOptions::default()
        })
        .await;
        let dir = c.dir.path().join("checked-node");
        let certs = dir.join("certs");
        let cert_id = uuid::Uuid::new_v4();
        sixfold_tests::run_ok(
            &sixfold_tests::bin_path("sixfold-gateway"),
            &[
                "certs",
                "issue-node",
                "--dir",
                c.gateway_certs_dir().to_str().expect("utf-8"),
                "--name",
                "checked",
                "--node-id",
                &cert_id.to_string(),
                "--ip",
                "127.0.0.1",
                "--out",
                certs.to_str().expect("utf-8"),
            ],
        );

        // A data dir that belongs to another node: refused, the file left alone.
        let other = uuid::Uuid::new_v4();
        std::fs::write(dir.join("node-id"), format!("{other}\n")).expect("write node-id");
        let log = node_exits_with(&c, &dir, "mismatch");
        assert!(log.contains(&format!("holds node id {other}")), "{log}");
        assert!(log.contains(&cert_id.to_string()), "{log}");
        assert_eq!(
            std::fs::read_to_string(dir.join("node-id")).expect("node-id"),
            format!("{other}\n")
        );

        // A certificate without a node id (as an older release made): refused with the exact
        // command that re-issues it for the id in the data dir.
        let ca = sixfold_certs::ClusterCa::load(&c.gateway_certs_dir()).expect("CA");
        let roleless = ca
            .issue_server(
                &["127.0.0.1".parse().expect("ip")],
                &[],
                sixfold_certs::Validity::leaf_default(),
            )
            .expect("certificate");
        let (node_cert, node_key) = (certs.join(layout::NODE_CERT), certs.join(layout::NODE_KEY));
        let (kept_cert, kept_key) = (
            std::fs::read(&node_cert).expect("cert"),
            std::fs::read(&node_key).expect("key"),
        );
        roleless
            .write(&node_cert, &node_key, true)
            .expect("write legacy certificate");
        let log = node_exits_with(&c, &dir, "legacy");
        assert!(log.contains("names no node id"), "{log}");
        assert!(
            log.contains(&format!(
                "certs issue-node --dir <gateway certs dir> --name checked --node-id {other}"
            )),
            "{log}"
        );

        // The right certificate and no node-id file yet: the node writes the certificate's
        // id and registers under it.
        std::fs::write(&node_cert, kept_cert).expect("restore cert");
        std::fs::write(&node_key, kept_key).expect("restore key");
        std::fs::remove_file(dir.join("node-id")).expect("remove node-id");
        let args = checked_node_args(&c, &dir);
        let mut node = sixfold_tests::Proc::spawn(
            "checked",
            &sixfold_tests::bin_path("sixfold-node"),
            &args,
            dir.join("good.log"),
        );
        c.wait_nodes_up(1).await;
        assert_eq!(
            std::fs::read_to_string(dir.join("node-id"))
                .expect("node-id")
                .trim(),
            cert_id.to_string()
        );
        let nodes = c.nodes_json().await;
        assert_eq!(nodes[0]["id"], cert_id.to_string(), "{nodes:?}");
        assert_eq!(node.terminate(Duration::from_secs(30)), Some(0));
    })
    .await;
}
