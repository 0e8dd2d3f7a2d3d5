//! Files of every interesting size go up and come back byte for byte, cut into parts as the
//! splitting rule says, each part on a different node.

mod common;

use common::*;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_around_every_boundary_round_trip_with_the_right_layout() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let sizes = [
        0,
        1,
        MIB - 1,
        MIB,
        MIB + 1,
        6 * MIB - 1,
        6 * MIB,
        6 * MIB + 1,
        37 * MIB + 5,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let p = pattern(1000 + i as u64);
        let id = upload_ok(&c, &format!("f{size}.bin"), p, size).await;
        assert_download_matches(&c, &id, p, size).await;

        let m = meta(&c, &id).await;
        let parts = m["parts"].as_array().expect("parts");
        let lens: Vec<u64> = parts
            .iter()
            .map(|p| p["length"].as_u64().expect("length"))
            .collect();
        assert_eq!(
            lens,
            expected_parts(size),
            "part lengths of a {size}-byte file"
        );
        let mut offset = 0;
        for (k, part) in parts.iter().enumerate() {
            assert_eq!(part["index"], k);
            assert_eq!(part["offset"], offset);
            offset += part["length"].as_u64().unwrap();
            let crc = crc32c::crc32c(&p.bytes(
                part["offset"].as_u64().unwrap(),
                part["length"].as_u64().unwrap() as usize,
            ));
            assert_eq!(part["crc32c"], crc, "part {k} crc32c");
        }
        let nodes: HashSet<&str> = parts
            .iter()
            .map(|p| p["node_id"].as_str().expect("node id"))
            .collect();
        assert_eq!(nodes.len(), parts.len(), "every part on a different node");
        assert_eq!(m["size"], size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_round_trips() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let p = pattern(77);
    let size = 100 * MIB + 12_345;
    let id = upload_ok(&c, "big.bin", p, size).await;
    assert_download_matches(&c, &id, p, size).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_file_round_trips_and_ranges_at_its_part_boundaries_match() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let p = pattern(78);
    let size = 300 * MIB + 1;
    let id = upload_ok(&c, "bigger.bin", p, size).await;
    assert_download_matches(&c, &id, p, size).await;
    let part = size.div_ceil(6);
    for k in 1..6u64 {
        let (start, end) = (k * part - 3, k * part + 2);
        let (status, _, body) = download(&c, &id, Some(&format!("bytes={start}-{end}"))).await;
        assert_eq!(status, reqwest::StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            p.first_mismatch(start, &body),
            None,
            "range across boundary {k}"
        );
    }
}
