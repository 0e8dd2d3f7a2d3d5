//! `sixfold-bench` against a real cluster: concurrent round trips, every byte verified, no error.

use sixfold_tests::{ClusterOptions, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_round_trips_through_a_real_cluster_without_errors() {
    let mut c = TestCluster::start(ClusterOptions::default()).await;
    let mut config = sixfold_bench::Config::new(c.url.clone());
    config.token = Some(c.admin_token().await);
    config.size = 24 << 20;
    config.files = 4;
    config.concurrency = 2;
    config.progress = false;
    config.seed = Some(7);
    let report = sixfold_bench::run(&config).await.expect("bench run starts");
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert_eq!(report.verified_bytes, 4 * (24 << 20));
    assert_eq!(report.upload.bytes, 4 * (24 << 20));
    assert_eq!(report.download.bytes, 4 * (24 << 20));

    // Without a token every upload is refused (401), and the report says so.
    config.token = None;
    config.files = 1;
    config.size = 1000;
    let report = sixfold_bench::run(&config).await.expect("bench run starts");
    assert!(report.error_count >= 1, "anonymous uploads were refused");
    let text = format!("{:?}", report.errors);
    assert!(text.contains("401"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_through_a_real_cluster_has_no_error_and_leaves_no_file() {
    let mut c = TestCluster::start(ClusterOptions::default()).await;
    let mut config = sixfold_bench::SoakConfig::new(c.url.clone());
    config.token = Some(c.admin_token().await);
    config.duration = std::time::Duration::from_secs(4);
    config.concurrency = 4;
    // Small files, some of them shorter than six parts' worth of anything.
    config.sizes = sixfold_bench::soak::sizes::SizeDist::parse("1KiB..1MiB").expect("sizes");
    config.seed = Some(11);
    config.request_timeout = std::time::Duration::from_secs(60);
    config.pids = std::iter::once(&c.gateway)
        .chain(c.nodes.iter())
        .filter_map(|p| p.as_ref().and_then(|p| p.pid()))
        .collect();
    config.sample_interval = std::time::Duration::from_millis(50);
    let r = sixfold_bench::soak(&config).await.expect("soak starts");
    assert_eq!(r.error_count, 0, "{:?} {:?}", r.errors_by_kind, r.errors);
    let o = &r.ops;
    assert!(o.read.ok > 0 && o.write.ok > 0 && o.delete.ok > 0, "{o:?}");
    assert_eq!(
        r.verified_bytes, o.read.bytes,
        "every byte read was verified"
    );
    assert!(r.verified_bytes > 0);
    assert_eq!(r.cleanup.deleted, r.cleanup.files);
    let p = r.processes.as_ref().expect("process report");
    assert_eq!(p.processes.len(), 7, "the gateway and six nodes");
    assert!(
        p.processes
            .iter()
            .all(|s| s.rss_peak_mib > 0.0 && !s.exited)
    );

    // The cleanup left nothing behind: the cluster lists no file.
    let list: serde_json::Value = c
        .http
        .get(format!("{}/files?limit=1000", c.url))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /files")
        .json()
        .await
        .expect("file list json");
    assert_eq!(list["files"].as_array().map(Vec::len), Some(0), "{list}");
}
