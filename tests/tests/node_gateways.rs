//! A node given several gateways (`--gateway A,B`, issue 16): with the first one dead it
//! moves on to the next, registers there and comes up, against the real binaries.

use std::time::{Duration, Instant};

use sixfold_tests::{ClusterOptions, TestCluster, free_tcp_port};

/// Longest wait for the node to show as up: covers a cold start of a debug build on a busy
/// machine.
const UP_WAIT: Duration = Duration::from_secs(60);

/// The state `/nodes` shows for the node named `name`, if it is listed.
async fn node_state(c: &TestCluster, name: &str) -> Option<String> {
    c.nodes_json()
        .await
        .into_iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["state"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_first_gateway_is_dead_registers_with_the_next() {
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 1,
        ..ClusterOptions::default()
    })
    .await;
    // A port nothing listens on: connections to it are refused.
    let dead = format!("https://127.0.0.1:{}", free_tcp_port());
    let i = c.add_node_with_gateways(&[dead.clone(), c.internal_url()]);
    let name = format!("node-{i}");

    let deadline = Instant::now() + UP_WAIT;
    loop {
        if node_state(&c, &name).await.as_deref() == Some("up") {
            break;
        }
        assert!(c.node_running(i), "{name} exited");
        assert!(
            Instant::now() < deadline,
            "{name} did not come up through its second gateway; /nodes: {:?}",
            c.nodes_json().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let log = c.nodes[i].as_ref().expect("node runs").log_text();
    assert!(
        log.contains("registering with the next one") && log.contains(&dead),
        "the move away from {dead} is not logged:\n{log}"
    );
    // The node stays with the gateway that answered: still up at its next heartbeats, and
    // its stop is clean, the final draining heartbeat going to that gateway.
    assert_eq!(node_state(&c, &name).await.as_deref(), Some("up"));
    assert_eq!(c.stop_node(i, Duration::from_secs(30)), Some(0));
    let log = node_logs(&c, i);
    assert!(
        log.contains("sent the final draining heartbeat"),
        "no final draining heartbeat:\n{log}"
    );
    c.stop();
}

/// Every log file of node `i` (one per start), concatenated.
fn node_logs(c: &TestCluster, i: usize) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(c.node_dir(i)).expect("node dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}
