//! The S3 listener against real clients and the real binaries: aws-cli (cp up and down with
//! multipart, ls, sync, rm, presign + curl, s3api errors), boto3 (tests/s3/boto3_checks.py:
//! multipart transfers, ranged and conditional gets, 1,100-key pagination, copies, error codes,
//! a skewed clock, hand-built aws-chunked bodies), rclone (copy, check, lsjson, delete) and
//! s3cmd (put, get, put --continue-put). Every round trip compares bytes by SHA-256.
//!
//! A client that is not installed is skipped with a printed reason, unless
//! `SIXFOLD_REQUIRE_S3_CLIENTS` is set (`.ci/run` sets it and installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sixfold_tests::{ClusterOptions, TestCluster, free_tcp_port};

const MIB: usize = 1 << 20;

struct S3 {
    cluster: TestCluster,
    endpoint: String,
    key_id: String,
    secret: String,
    work: PathBuf,
}

/// Deterministic bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn digest(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

fn file_digest(path: &Path) -> u128 {
    digest(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SIXFOLD_REQUIRE_S3_CLIENTS").is_none(),
            "{program} is required (SIXFOLD_REQUIRE_S3_CLIENTS) but not installed"
        );
        println!("skipped: {program} is not installed");
    }
    found
}

fn have_boto3() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("SIXFOLD_REQUIRE_S3_CLIENTS").is_none(),
            "boto3 is required (SIXFOLD_REQUIRE_S3_CLIENTS) but not installed"
        );
        println!("skipped: boto3 is not installed");
    }
    ok
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    out
}

impl S3 {
    async fn start() -> S3 {
        let port = free_tcp_port();
        let mut cluster = TestCluster::start(ClusterOptions {
            gateway_config: format!("s3_listen = \"127.0.0.1:{port}\"\n"),
            ..ClusterOptions::default()
        })
        .await;
        let token = cluster.admin_token().await;
        let (key_id, secret) = token.split_once('.').expect("token is <id>.<secret>");
        let work = cluster.dir.path().join("s3-work");
        std::fs::create_dir_all(&work).expect("work dir");
        // aws-cli's own settings: multipart above 5 MiB, in 8 MiB parts, 10 at once (the
        // issue's 100 MiB transfer).
        std::fs::write(
            work.join("aws-config"),
            "[default]\nregion = us-east-1\ns3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 8MB\n  max_concurrent_requests = 10\n",
        )
        .expect("aws config");
        S3 {
            cluster,
            endpoint: format!("http://127.0.0.1:{port}"),
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            work,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&p, bytes).expect("write");
        p
    }

    fn aws_with(&self, secret: &str, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
        self.aws_as(&self.key_id, secret, extra_env, args)
    }

    fn aws_as(
        &self,
        key_id: &str,
        secret: &str,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        let mut cmd = Command::new("aws");
        cmd.arg("--endpoint-url")
            .arg(&self.endpoint)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("no-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "2")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_CA_BUNDLE");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("run aws")
    }

    fn aws(&self, args: &[&str]) -> Output {
        self.aws_with(&self.secret, &[], args)
    }
}

#[tokio::test]
async fn aws_cli_round_trips_and_errors() {
    if !have("aws") || !have("curl") {
        return;
    }
    let s = S3::start().await;
    check(s.aws(&["s3", "mb", "s3://cli"]), "mb");
    let ls = check(s.aws(&["s3", "ls"]), "ls buckets");
    assert!(String::from_utf8_lossy(&ls.stdout).contains("cli"));

    // Small (one PUT) and 100 MiB (thirteen 8 MiB parts, ten at once), in both checksum modes.
    let small = data(700_000, 1);
    let big = data(100 * MIB + 4321, 2);
    let small_path = s.write("up/small.bin", &small);
    let big_path = s.write("up/big.bin", &big);
    for mode in ["when_supported", "when_required"] {
        let env = [
            ("AWS_REQUEST_CHECKSUM_CALCULATION", mode),
            ("AWS_RESPONSE_CHECKSUM_VALIDATION", mode),
        ];
        for (path, len) in [(&small_path, small.len()), (&big_path, big.len())] {
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            let url = format!("s3://cli/{mode}/{name}");
            let p = path.to_str().expect("utf-8");
            check(s.aws_with(&s.secret, &env, &["s3", "cp", p, &url]), "cp up");
            let down = s.path(&format!("down/{mode}/{name}"));
            let d = down.to_str().expect("utf-8");
            check(
                s.aws_with(&s.secret, &env, &["s3", "cp", &url, d]),
                "cp down",
            );
            assert_eq!(file_digest(&down), file_digest(path), "{url}");
            assert_eq!(std::fs::metadata(&down).expect("meta").len() as usize, len);
        }
    }
    let head = check(
        s.aws(&[
            "s3api",
            "head-object",
            "--bucket",
            "cli",
            "--key",
            "when_required/big.bin",
        ]),
        "head-object",
    );
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).expect("json");
    assert_eq!(head["ContentLength"], big.len());
    assert!(
        head["ETag"].as_str().is_some_and(|e| e.ends_with("-13\"")),
        "{head}"
    );

    // A ranged get-object across a part boundary.
    let ranged = s.path("ranged.bin");
    check(
        s.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            "cli",
            "--key",
            "when_supported/big.bin",
            "--range",
            "bytes=8388000-8389000",
            ranged.to_str().expect("utf-8"),
        ]),
        "ranged get-object",
    );
    assert_eq!(
        std::fs::read(&ranged).expect("read"),
        &big[8_388_000..=8_389_000]
    );

    // sync of a folder, then ls and rm.
    for i in 0..5 {
        s.write(
            &format!("tree/d{}/f{i}.txt", i % 2),
            &data(1000 + i, 10 + i as u64),
        );
    }
    let tree = s.path("tree");
    check(
        s.aws(&["s3", "sync", tree.to_str().expect("utf-8"), "s3://cli/tree"]),
        "sync up",
    );
    let back = s.path("tree-back");
    check(
        s.aws(&["s3", "sync", "s3://cli/tree", back.to_str().expect("utf-8")]),
        "sync down",
    );
    for i in 0..5 {
        let rel = format!("d{}/f{i}.txt", i % 2);
        assert_eq!(
            file_digest(&tree.join(&rel)),
            file_digest(&back.join(&rel)),
            "{rel}"
        );
    }
    let listing = check(s.aws(&["s3", "ls", "--recursive", "s3://cli/tree/"]), "ls");
    assert_eq!(String::from_utf8_lossy(&listing.stdout).lines().count(), 5);
    check(s.aws(&["s3", "rm", "--recursive", "s3://cli/tree"]), "rm");
    let listing = s.aws(&["s3", "ls", "s3://cli/tree/"]);
    assert!(listing.stdout.is_empty(), "{}", text(&listing));

    // presign, then a plain curl GET.
    let presigned = check(
        s.aws(&["s3", "presign", "s3://cli/when_supported/small.bin"]),
        "presign",
    );
    let url = String::from_utf8_lossy(&presigned.stdout).trim().to_owned();
    let fetched = s.path("presigned.bin");
    let curl = Command::new("curl")
        .args(["-sSf", "-o", fetched.to_str().expect("utf-8"), &url])
        .output()
        .expect("curl");
    check(curl, "curl presigned");
    assert_eq!(file_digest(&fetched), digest(&small));
    let tampered = url.replace("small.bin", "big.bin");
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &tampered])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "403");

    // A multipart object is a sixfold file of its own: S3 names its id (the upload's), and the
    // native API serves it whole and by ranges across segments, shows its segments, deletes it.
    let presigned = check(
        s.aws(&["s3", "presign", "s3://cli/when_required/big.bin"]),
        "presign big",
    );
    let url = String::from_utf8_lossy(&presigned.stdout).trim().to_owned();
    let curl = Command::new("curl")
        .args(["-sSf", "-o", "/dev/null", "-D", "-", &url])
        .output()
        .expect("curl");
    let headers = text(&check(curl, "curl presigned big"));
    let file_id = headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-sixfold-file-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no x-sixfold-file-id in {headers}"));
    let native = format!("{}/files/{file_id}", s.cluster.url);
    let whole = s.cluster.http.get(&native).send().await.expect("get");
    assert_eq!(whole.status(), 200);
    assert_eq!(digest(&whole.bytes().await.expect("body")), digest(&big));
    let ranged = s
        .cluster
        .http
        .get(&native)
        .header("Range", "bytes=8388000-8389000")
        .send()
        .await
        .expect("ranged get");
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.bytes().await.expect("body").as_ref(),
        &big[8_388_000..=8_389_000]
    );
    let meta: serde_json::Value = s
        .cluster
        .http
        .get(format!("{native}/meta"))
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("meta json");
    assert_eq!(meta["size"], big.len(), "{meta}");
    assert_eq!(meta["object"]["key"], "when_required/big.bin", "{meta}");
    let segments = meta["object"]["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 13, "{meta}");
    assert_eq!(segments[1]["offset"], 8 * MIB, "{meta}");
    let deleted = s.cluster.http.delete(&native).send().await.expect("delete");
    assert_eq!(deleted.status(), 204);
    let gone = s.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli",
        "--key",
        "when_required/big.bin",
    ]);
    assert!(
        !gone.status.success(),
        "the object outlived its file: {}",
        text(&gone)
    );
    let again = s.cluster.http.get(&native).send().await.expect("get");
    assert_eq!(again.status(), 404);
    for segment in segments {
        let id = segment["file_id"].as_str().expect("segment id");
        let resp = s
            .cluster
            .http
            .get(format!("{}/files/{id}", s.cluster.url))
            .send()
            .await
            .expect("segment get");
        assert_eq!(resp.status(), 404, "segment {id} outlived its object");
    }

    // A killed upload leaves an upload that ListMultipartUploads shows and Abort removes.
    let created = check(
        s.aws(&[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "cli",
            "--key",
            "interrupted.bin",
        ]),
        "create-multipart-upload",
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    let upload_id = created["UploadId"].as_str().expect("id").to_owned();
    check(
        s.aws(&[
            "s3api",
            "upload-part",
            "--bucket",
            "cli",
            "--key",
            "interrupted.bin",
            "--part-number",
            "1",
            "--upload-id",
            &upload_id,
            "--body",
            small_path.to_str().expect("utf-8"),
        ]),
        "upload-part",
    );
    let uploads = check(
        s.aws(&["s3api", "list-multipart-uploads", "--bucket", "cli"]),
        "list-multipart-uploads",
    );
    assert!(String::from_utf8_lossy(&uploads.stdout).contains(&upload_id));
    check(
        s.aws(&[
            "s3api",
            "abort-multipart-upload",
            "--bucket",
            "cli",
            "--key",
            "interrupted.bin",
            "--upload-id",
            &upload_id,
        ]),
        "abort",
    );
    let uploads = check(
        s.aws(&["s3api", "list-multipart-uploads", "--bucket", "cli"]),
        "list-multipart-uploads",
    );
    assert!(!String::from_utf8_lossy(&uploads.stdout).contains(&upload_id));

    // Errors by code.
    let missing = s.aws(&[
        "s3api",
        "get-object",
        "--bucket",
        "cli",
        "--key",
        "nope",
        "/dev/null",
    ]);
    assert!(text(&missing).contains("NoSuchKey"), "{}", text(&missing));
    let missing = s.aws(&["s3api", "list-objects-v2", "--bucket", "nope-bucket"]);
    assert!(
        text(&missing).contains("NoSuchBucket"),
        "{}",
        text(&missing)
    );
    let wrong = s.aws_with(&"x".repeat(40), &[], &["s3api", "list-buckets"]);
    assert!(
        text(&wrong).contains("SignatureDoesNotMatch"),
        "{}",
        text(&wrong)
    );
    let unimplemented = s.aws(&["s3api", "get-bucket-tagging", "--bucket", "cli"]);
    assert!(
        text(&unimplemented).contains("NotImplemented"),
        "{}",
        text(&unimplemented)
    );

    // Scopes apply: a read key lists and gets, and may not put; a revoked key is unknown.
    let created: serde_json::Value = s
        .cluster
        .http
        .post(format!("{}/admin/keys", s.cluster.url))
        .json(&serde_json::json!({"name": "s3-reader", "scope": "read"}))
        .send()
        .await
        .expect("POST /admin/keys")
        .json()
        .await
        .expect("json");
    let token = created["token"].as_str().expect("token");
    let (reader_id, reader_secret) = token.split_once('.').expect("<id>.<secret>");
    check(
        s.aws_as(
            reader_id,
            reader_secret,
            &[],
            &["s3", "ls", "s3://cli/when_required/"],
        ),
        "read key lists",
    );
    let denied = s.aws_as(
        reader_id,
        reader_secret,
        &[],
        &[
            "s3",
            "cp",
            small_path.to_str().expect("utf-8"),
            "s3://cli/by-reader",
        ],
    );
    assert!(text(&denied).contains("AccessDenied"), "{}", text(&denied));

    // The objects are sixfold files: the native API lists them.
    let files: serde_json::Value = s
        .cluster
        .http
        .get(format!("{}/files?limit=1000", s.cluster.url))
        .send()
        .await
        .expect("GET /files")
        .json()
        .await
        .expect("json");
    assert!(files.to_string().contains("small.bin"), "{files}");
    // Multipart segments are files too, but not listed there.
    assert!(!files.to_string().contains(".s3-multipart/"), "{files}");
}

#[tokio::test]
async fn boto3_transfers_listing_and_errors() {
    if !have_boto3() {
        return;
    }
    let s = S3::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("s3/boto3_checks.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&s.endpoint, &s.key_id, &s.secret])
        .arg(&s.work)
        .env("AWS_CONFIG_FILE", s.path("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.path("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("run python3");
    let report = text(&out);
    println!("{report}");
    assert!(out.status.success(), "boto3 checks failed: {report}");
    assert!(report.contains("boto3 checks passed"));
}

#[tokio::test]
async fn rclone_and_s3cmd_round_trips() {
    let (rclone, s3cmd) = (have("rclone"), have("s3cmd"));
    if !rclone && !s3cmd {
        return;
    }
    let s = S3::start().await;
    if rclone {
        let rclone = |args: &[&str]| {
            Command::new("rclone")
                .arg("-q")
                .args(args)
                .env("RCLONE_CONFIG", s.path("rclone.conf"))
                .env("RCLONE_CONFIG_SF_TYPE", "s3")
                .env("RCLONE_CONFIG_SF_PROVIDER", "Other")
                .env("RCLONE_CONFIG_SF_ACCESS_KEY_ID", &s.key_id)
                .env("RCLONE_CONFIG_SF_SECRET_ACCESS_KEY", &s.secret)
                .env("RCLONE_CONFIG_SF_ENDPOINT", &s.endpoint)
                .env("RCLONE_CONFIG_SF_REGION", "us-east-1")
                .env("RCLONE_CONFIG_SF_FORCE_PATH_STYLE", "true")
                .env("RCLONE_S3_UPLOAD_CUTOFF", "5Mi")
                .env("RCLONE_S3_CHUNK_SIZE", "5Mi")
                .env_remove("AWS_CA_BUNDLE")
                .output()
                .expect("run rclone")
        };
        for (i, len) in [10_000usize, 3 * MIB, 12 * MIB + 5].into_iter().enumerate() {
            s.write(&format!("rc/f{i}.bin"), &data(len, 100 + i as u64));
        }
        let dir = s.path("rc");
        let dir = dir.to_str().expect("utf-8");
        check(rclone(&["mkdir", "sf:rclone"]), "rclone mkdir");
        check(rclone(&["copy", dir, "sf:rclone/rc"]), "rclone copy");
        // check compares sizes and MD5s (the ETags of single-part objects).
        check(rclone(&["check", dir, "sf:rclone/rc"]), "rclone check");
        let listed = check(rclone(&["lsjson", "sf:rclone/rc"]), "rclone lsjson");
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
        assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
        let back = s.path("rc-back");
        check(
            rclone(&["copy", "sf:rclone/rc", back.to_str().expect("utf-8")]),
            "rclone copy down",
        );
        for i in 0..3 {
            let name = format!("f{i}.bin");
            assert_eq!(
                file_digest(&s.path("rc").join(&name)),
                file_digest(&back.join(&name))
            );
        }
        check(rclone(&["delete", "sf:rclone/rc"]), "rclone delete");
        let listed = check(rclone(&["lsjson", "sf:rclone/rc"]), "rclone lsjson");
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
        assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    }
    if s3cmd {
        let host = s.endpoint.trim_start_matches("http://").to_owned();
        let config = s.write(
            "s3cmd.cfg",
            format!(
                "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {host}\nhost_bucket = {host}\n\
                 use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n\
                 multipart_chunk_size_mb = 5\ncheck_ssl_certificate = False\n",
                s.key_id, s.secret
            )
            .as_bytes(),
        );
        let s3cmd = |args: &[&str]| {
            Command::new("s3cmd")
                .arg("-c")
                .arg(&config)
                .args(args)
                .output()
                .expect("run s3cmd")
        };
        check(s3cmd(&["mb", "s3://s3cmd"]), "s3cmd mb");
        let big = data(12 * MIB + 77, 7);
        let src = s.write("s3cmd-src.bin", &big);
        let src = src.to_str().expect("utf-8");
        check(s3cmd(&["put", src, "s3://s3cmd/a.bin"]), "s3cmd put");
        let dst = s.path("s3cmd-dst.bin");
        check(
            s3cmd(&["get", "s3://s3cmd/a.bin", dst.to_str().expect("utf-8")]),
            "s3cmd get",
        );
        assert_eq!(file_digest(&dst), digest(&big));

        // An interrupted put: an upload of the same key with its first part stored (what a
        // killed `s3cmd put` leaves). --continue-put finds it (ListMultipartUploads), skips the
        // part it has (ListParts, MD5) and completes.
        let created = check(
            s.aws(&[
                "s3api",
                "create-multipart-upload",
                "--bucket",
                "s3cmd",
                "--key",
                "resumed.bin",
            ]),
            "create-multipart-upload",
        );
        let created: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
        let upload_id = created["UploadId"].as_str().expect("id").to_owned();
        let first = s.write("s3cmd-first-part.bin", &big[..5 * MIB]);
        check(
            s.aws(&[
                "s3api",
                "upload-part",
                "--bucket",
                "s3cmd",
                "--key",
                "resumed.bin",
                "--part-number",
                "1",
                "--upload-id",
                &upload_id,
                "--body",
                first.to_str().expect("utf-8"),
            ]),
            "upload-part",
        );
        let resumed = check(
            s3cmd(&["put", "--continue-put", src, "s3://s3cmd/resumed.bin"]),
            "s3cmd put --continue-put",
        );
        let dst = s.path("s3cmd-resumed.bin");
        check(
            s3cmd(&[
                "get",
                "s3://s3cmd/resumed.bin",
                dst.to_str().expect("utf-8"),
            ]),
            "s3cmd get resumed",
        );
        assert_eq!(file_digest(&dst), digest(&big), "{}", text(&resumed));
        check(s3cmd(&["del", "s3://s3cmd/a.bin"]), "s3cmd del");
    }
}
