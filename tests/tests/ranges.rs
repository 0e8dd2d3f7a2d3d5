//! Single byte ranges: first byte, last byte, suffix, open end, across part boundaries; HEAD.

mod common;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_return_exactly_the_asked_bytes() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    let size = 12 * MIB + 7; // six parts of 2 MiB + 2 bytes (the last one shorter)
    let p = pattern(9);
    let id = upload_ok(&c, "ranges.bin", p, size).await;
    let part = size.div_ceil(6);

    let cases: Vec<(String, u64, u64)> = vec![
        ("bytes=0-0".into(), 0, 0),
        (
            format!("bytes={}-{}", size - 1, size - 1),
            size - 1,
            size - 1,
        ),
        ("bytes=-100".into(), size - 100, size - 1),
        (format!("bytes={}-", size - 5), size - 5, size - 1),
        (
            format!("bytes={}-{}", part - 10, part + 10),
            part - 10,
            part + 10,
        ),
        (
            format!("bytes={}-{}", part - 1, 3 * part),
            part - 1,
            3 * part,
        ),
        (format!("bytes=5-{}", size + 1000), 5, size - 1),
        (
            format!("bytes={}-{}", 2 * part, 2 * part),
            2 * part,
            2 * part,
        ),
    ];
    for (range, start, end) in cases {
        let (status, headers, body) = download(&c, &id, Some(&range)).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            headers["content-range"].to_str().unwrap(),
            format!("bytes {start}-{end}/{size}"),
            "{range}"
        );
        assert_eq!(body.len() as u64, end - start + 1, "{range}");
        assert_eq!(p.first_mismatch(start, &body), None, "{range}");
    }

    let r = c
        .http
        .head(format!("{}/files/{id}", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert!(r.headers().contains_key("etag"));
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("ranges.bin")
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // The alias serves the same bytes.
    let r = c
        .http
        .get(format!("{}/download/{id}", c.url))
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(p.first_mismatch(0, &r.bytes().await.unwrap()), None);
}
