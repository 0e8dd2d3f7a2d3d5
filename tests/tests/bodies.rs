//! Upload bodies of every kind (raw with a length, chunked without one, multipart) and names that
//! are hard to put in a header all come back as they went in.

mod common;

use common::*;
use reqwest::StatusCode;
use sixfold_tests::{ClusterOptions, TestCluster, pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_multipart_bodies_round_trip() {
    let c = TestCluster::start(ClusterOptions::default()).await;

    for (i, size) in [0u64, 1, 6 * MIB + 3, 21 * MIB].into_iter().enumerate() {
        // Chunked: no Content-Length.
        let p = pattern(500 + i as u64);
        let r = c
            .http
            .post(format!("{}/files?name=chunked-{size}.bin", c.url))
            .body(reqwest::Body::wrap_stream(p.stream(size, 100_000)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["size"], size);
        assert_eq!(json["name"], format!("chunked-{size}.bin"));
        assert_download_matches(&c, json["id"].as_str().unwrap(), p, size).await;

        // Multipart with one file field.
        let p = pattern(600 + i as u64);
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(p.stream(size, 100_000)),
            size,
        )
        .file_name(format!("form-{size}.dat"))
        .mime_str("application/x-test")
        .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = c
            .http
            .post(format!("{}/upload", c.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["size"], size, "{json}");
        assert_eq!(json["name"], format!("form-{size}.dat"));
        let id = json["id"].as_str().unwrap();
        assert_download_matches(&c, id, p, size).await;
        let r = c
            .http
            .head(format!("{}/files/{id}", c.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "application/x-test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_kept_and_served_safely() {
    let c = TestCluster::start(ClusterOptions::default()).await;
    for name in [
        "quote\"and\\back.txt",
        "naïve résumé ✓.pdf",
        "../../etc/passwd",
        "a\r\nSet-Cookie: x=1",
    ] {
        let r = c
            .http
            .post(format!("{}/files", c.url))
            .query(&[("name", name)])
            .body(vec![7u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{name:?}");
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["name"], name, "the stored name is the given one");
        let id = json["id"].as_str().unwrap();
        let r = c
            .http
            .get(format!("{}/files/{id}", c.url))
            .send()
            .await
            .unwrap();
        let cd = r.headers()["content-disposition"]
            .to_str()
            .expect("header is visible ASCII")
            .to_string();
        assert!(cd.starts_with("attachment"), "{cd}");
        assert!(
            !cd.contains('/') || cd.contains("%2F"),
            "no path separator in a served name: {cd}"
        );
        assert!(!r.headers().contains_key("set-cookie"));
        assert_eq!(r.bytes().await.unwrap().as_ref(), &[7u8; 10]);
    }
}

/// Files named `*.chunk` anywhere under `dir`.
fn chunk_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                chunk_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "chunk"))
            }
        })
        .sum()
}

/// A multipart upload with a Content-Length (reqwest's form with parts of known length, a text
/// field before and after the file) streams through: while the client holds back the second
/// half of the file, chunks are already on the nodes and nothing is spooled, although the
/// gateway may keep only 1 MiB of a spooled body in memory. The stored file is the file alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_with_a_length_streams_through_to_the_nodes() {
    let c = TestCluster::start(ClusterOptions {
        gateway_config: "spool_memory_bytes = \"1MiB\"\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    let size = 24 * MIB;
    let half = size / 2;
    let p = pattern(900);
    let (resume, resumed) = tokio::sync::oneshot::channel::<()>();
    // The file's bytes, pausing at half way until the test says so (or a minute passed).
    let file =
        futures_util::stream::unfold((0u64, Some(resumed)), move |(pos, mut wait)| async move {
            if pos >= size {
                return None;
            }
            if pos == half
                && let Some(rx) = wait.take()
            {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), rx).await;
            }
            let n = (256 * 1024).min(size - pos);
            let frame = bytes::Bytes::from(p.bytes(pos, n as usize));
            Some((Ok::<_, std::io::Error>(frame), (pos + n, wait)))
        });
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(file), size)
        .file_name("streamed-form.bin")
        .mime_str("application/x-test")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("before", "a field before the file")
        .part("file", part)
        .text("after", "and one after it");
    let request = c
        .http
        .post(format!("{}/files", c.url))
        .multipart(form)
        .send();
    let upload = tokio::spawn(request);

    let nodes: Vec<_> = (0..6).map(|i| c.node_dir(i)).collect();
    let spool = c.gateway_dir().join("spool");
    let mut seen = 0;
    for _ in 0..600 {
        seen = nodes.iter().map(|d| chunk_files(d)).sum::<usize>();
        if seen > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen > 0, "parts reach the nodes before the body ends");
    let spooled = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(spooled, 0, "nothing is spooled for a form with a length");
    let _ = resume.send(());

    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["size"], size, "{json}");
    assert_eq!(json["name"], "streamed-form.bin");
    assert_eq!(json["parts"], 6);
    let expected = format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(&p.bytes(0, size as usize))
    );
    assert_eq!(json["checksum"], expected.as_str());
    let id = json["id"].as_str().unwrap();
    assert_download_matches(&c, id, p, size).await;

    // Meta: the parts describe the file alone and tile it; only the last one stores more
    // (the closing boundary and the field after the file).
    let m = meta(&c, id).await;
    assert_eq!(m["size"], size);
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 6);
    let mut offset = 0;
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["offset"], offset, "{m}");
        let len = part["length"].as_u64().unwrap();
        offset += len;
        if i < 5 {
            assert!(part.get("stored_length").is_none(), "{m}");
        } else {
            let stored = part["stored_length"].as_u64().unwrap();
            assert!(stored > len && stored - len < 1024, "{m}");
        }
    }
    assert_eq!(offset, size);

    // Ranges across the last part's start and up to the file's last byte.
    let last = parts[5]["offset"].as_u64().unwrap();
    for (from, to) in [
        (last - 10, last + 10),
        (last - 1, size - 1),
        (size - 5, size - 1),
    ] {
        let (status, _, body) = download(&c, id, Some(&format!("bytes={from}-{to}"))).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body.len() as u64, to - from + 1);
        assert_eq!(p.first_mismatch(from, &body), None, "{from}-{to}");
    }
    // Past the file's end is unsatisfiable even though the last chunk holds more bytes.
    let (status, _, _) = download(&c, id, Some(&format!("bytes={size}-"))).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
}
