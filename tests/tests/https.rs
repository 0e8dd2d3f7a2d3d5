//! The public API over HTTPS: `serve` with `--tls-cert/--tls-key` (a server certificate from
//! the cluster CA), driven with curl as a user would: `curl --cacert`, HTTP/1.1 and HTTP/2
//! (ALPN), upload, download, same sha256.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::bounded;
use sixfold_certs::{ClusterCa, Validity, layout};
use sixfold_tests::{ClusterOptions, Proc, TestCluster, bin_path};

/// Runs curl with `args` and returns (exit success, stdout).
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

/// Restarts the cluster's gateway as `serve` over HTTPS, same ports and data dir; returns the
/// HTTPS base URL and the CA path.
fn restart_gateway_with_tls(c: &mut TestCluster) -> (String, PathBuf) {
    let certs = c.gateway_certs_dir();
    let ca = ClusterCa::load(&certs).expect("cluster CA");
    let issued = ca
        .issue_server(
            &["127.0.0.1".parse().expect("ip")],
            &["localhost".to_owned()],
            Validity::leaf_default(),
        )
        .expect("server certificate");
    let (cert, key) = (certs.join("https.pem"), certs.join("https-key.pem"));
    issued.write(&cert, &key, true).expect("write certificate");
    if let Some(mut old) = c.gateway.take() {
        old.kill9();
    }
    let gw_dir = c.gateway_dir();
    let args: Vec<String> = vec![
        "serve".into(),
        "--data-dir".into(),
        gw_dir.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", c.port),
        "--internal-listen".into(),
        format!("127.0.0.1:{}", c.internal_port),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ];
    let log = gw_dir.join("gateway-https.log");
    c.gateway = Some(Proc::spawn(
        "gateway-https",
        &bin_path("sixfold-gateway"),
        &args,
        log,
    ));
    (
        format!("https://127.0.0.1:{}", c.port),
        certs.join(layout::CA_CERT),
    )
}

/// Waits until `GET /health` over HTTPS answers 200 (the nodes registered again).
fn wait_healthy(base: &str, ca: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = curl(&[
            "--cacert",
            ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}/health"),
        ]);
        if ok && out.trim() == "200" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gateway not healthy over HTTPS: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn https_round_trip_with_curl_over_http1_and_http2() {
    bounded("https round trip", async {
        let mut c = TestCluster::start(ClusterOptions::default()).await;
        let token = c.admin_token().await;
        let (base, ca) = restart_gateway_with_tls(&mut c);
        let ca = ca.display().to_string();
        let auth = format!("Authorization: Bearer {token}");
        let dir = c.dir.path().to_path_buf();
        let token_file = c.gateway_dir().join("admin.token");
        let result = tokio::task::spawn_blocking(move || {
            wait_healthy(&base, &ca);
            // The admin CLI speaks HTTPS too, trusting only the CA it is given.
            let admin = |extra: &[&str]| {
                let mut args = vec!["admin", "--gateway", &base, "--token-file"];
                let token_file = token_file.to_str().expect("utf-8");
                args.push(token_file);
                args.extend_from_slice(extra);
                args.extend_from_slice(&["keys", "list"]);
                let out = Command::new(sixfold_tests::bin_path("sixfold-gateway"))
                    .args(&args)
                    // No ./sixfold-data here: the dev CA default does not apply.
                    .current_dir(&dir)
                    .output()
                    .expect("run admin");
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr),
                )
            };
            let (ok, out) = admin(&["--cacert", &ca]);
            assert!(ok && out.contains("bootstrap-admin"), "{out}");
            let (ok, out) = admin(&[]);
            assert!(!ok && out.contains("--cacert"), "{out}");
            // 7 MiB + 3 of varied bytes: six parts, the last one short.
            let input = dir.join("upload.bin");
            let data: Vec<u8> = (0..(7u32 << 20) + 3)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            std::fs::write(&input, &data).expect("write input");

            for (version, flag, expect) in [("1.1", "--http1.1", "1.1"), ("2", "--http2", "2")] {
                let (ok, out) = curl(&[
                    flag,
                    "--cacert",
                    &ca,
                    "-X",
                    "POST",
                    "--data-binary",
                    &format!("@{}", input.display()),
                    "-H",
                    &auth,
                    "-H",
                    "X-File-Name: over-https.bin",
                    "-H",
                    "Content-Type: application/octet-stream",
                    &format!("{base}/files"),
                ]);
                assert!(ok, "upload over HTTP/{version}: {out}");
                let json: serde_json::Value =
                    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
                let id = json["id"].as_str().expect("id").to_owned();
                assert_eq!(json["size"], data.len(), "{json}");

                let output = dir.join(format!("download-{version}.bin"));
                let (ok, out) = curl(&[
                    flag,
                    "--cacert",
                    &ca,
                    "-H",
                    &auth,
                    "-o",
                    output.to_str().expect("utf-8"),
                    "-w",
                    "%{http_code} %{http_version}",
                    &format!("{base}/files/{id}"),
                ]);
                assert!(ok, "download over HTTP/{version}: {out}");
                assert_eq!(out.trim(), format!("200 {expect}"), "status and protocol");
                assert_eq!(
                    sha256(&output),
                    sha256(&input),
                    "HTTP/{version} bytes differ"
                );
            }

            // Only our CA makes the certificate trusted; plain HTTP gets no API.
            let (ok, _) = curl(&["-o", "/dev/null", &format!("{base}/health")]);
            assert!(!ok, "the certificate verified without --cacert");
            let plain = base.replace("https://", "http://");
            let (ok, out) = curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{plain}/health"),
            ]);
            assert!(
                !ok || out.trim() != "200",
                "plain HTTP served on the HTTPS port: {out}"
            );
            // The nodes' registration routes are not on the public port.
            let (ok, out) = curl(&[
                "--cacert",
                &ca,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                &format!("{base}/internal/nodes/heartbeat"),
            ]);
            assert!(ok, "{out}");
            assert_eq!(out.trim(), "404");
        })
        .await;
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    })
    .await;
}
