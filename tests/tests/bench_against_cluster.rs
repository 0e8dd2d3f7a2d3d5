//! `sixfold-bench` against a real cluster: concurrent round trips, every byte verified, no error.

use sixfold_tests::{ClusterOptions, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_round_trips_through_a_real_cluster_without_errors() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let mut config = sixfold_bench::Config::new(c.url.clone());
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
}
