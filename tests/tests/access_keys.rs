//! Access keys against the real binaries: without credentials nothing but `/health` (and
//! `/metrics`) answers; each scope can do what it should and gets 403 beyond; a revoked key and
//! its presigned URLs stop working; presigned URLs serve one file until they expire; the
//! `admin` CLI manages keys of a running gateway; the secrets' files are mode 0600.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sixfold_tests::cluster::authorized_client;
use sixfold_tests::{ClusterOptions, TestCluster, bin_path, pattern};

/// A client without credentials.
fn anonymous() -> reqwest::Client {
    reqwest::Client::new()
}

async fn status_of(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.header("X-File-Name", "probe.bin").body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

/// Asserts a JSON error with this status and code.
fn assert_refused(
    (status, headers, body): &(StatusCode, reqwest::header::HeaderMap, Vec<u8>),
    expected: StatusCode,
    what: &str,
) -> Value {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    assert_eq!(*status, expected, "{what}: {json}");
    let code = if expected == StatusCode::UNAUTHORIZED {
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"sixfold\""),
            "{what}"
        );
        "unauthorized"
    } else {
        "forbidden"
    };
    assert_eq!(json["error"], code, "{what}: {json}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    json
}

/// Creates a key through the admin API; returns (id, token).
async fn create_key(c: &TestCluster, name: &str, scope: &str) -> (String, String) {
    let r = c
        .http
        .post(format!("{}/admin/keys", c.url))
        .json(&json!({"name": name, "scope": scope}))
        .send()
        .await
        .expect("create key");
    assert_eq!(r.status(), StatusCode::CREATED);
    let json: Value = r.json().await.expect("json");
    assert_eq!(json["name"], name, "{json}");
    assert_eq!(json["scope"], scope, "{json}");
    assert!(json["created"].as_str().is_some(), "{json}");
    let id = json["id"].as_str().expect("id").to_owned();
    let token = json["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with(&format!("{id}.")), "{json}");
    (id, token)
}

async fn presign(http: &reqwest::Client, c: &TestCluster, id: &str, expires_in: &str) -> Value {
    let r = http
        .post(format!("{}/files/{id}/presign", c.url))
        .json(&json!({ "expires_in": expires_in }))
        .send()
        .await
        .expect("presign");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_revocation_and_presigned_urls() {
    let mut c = TestCluster::start(ClusterOptions::default()).await;
    let p = pattern(1212);
    let size = 3 * MIB + 17;
    let file = upload_ok(&c, "secret.bin", p, size).await;
    let other = upload_ok(&c, "other.bin", pattern(1313), 1000).await;
    let base = c.url.clone();
    let url = |path: &str| format!("{base}{path}");

    // The first admin key's token file, and the metadata holding the secrets, are private.
    assert_eq!(mode(&c.gateway_dir().join("admin.token")), 0o600);
    assert_eq!(mode(&c.gateway_dir().join("meta.redb")), 0o600);
    let admin_token = c.admin_token().await;

    // No credentials: 401 on everything but /health and /metrics.
    let none = anonymous();
    for (method, path, body) in [
        (Method::GET, "/files".to_owned(), None),
        (Method::GET, format!("/files/{file}"), None),
        (Method::HEAD, format!("/files/{file}"), None),
        (Method::GET, format!("/files/{file}/meta"), None),
        (Method::GET, format!("/download/{file}"), None),
        (Method::POST, "/files".to_owned(), Some(vec![1u8; 1000])),
        (Method::DELETE, format!("/files/{file}"), None),
        (Method::GET, "/nodes".to_owned(), None),
        (Method::GET, "/admin/keys".to_owned(), None),
        (Method::GET, "/no/such/route".to_owned(), None),
    ] {
        let what = format!("anonymous {method} {path}");
        let got = status_of(&none, method.clone(), &url(&path), body).await;
        if method == Method::HEAD {
            assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{what}");
        } else {
            assert_refused(&got, StatusCode::UNAUTHORIZED, &what);
        }
    }
    assert_eq!(
        status_of(&none, Method::GET, &url("/health"), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&none, Method::GET, &url("/metrics"), None)
            .await
            .0,
        StatusCode::OK
    );
    // A wrong secret for a real key id, and garbage, are 401 too.
    let (key_id, _) = admin_token.split_once('.').expect("token");
    for bad in [
        format!("{key_id}.{}", "x".repeat(40)),
        "nonsense".to_owned(),
        format!("{}.{}", "SF".repeat(10), "y".repeat(40)),
    ] {
        let got = status_of(&authorized_client(&bad), Method::GET, &url("/files"), None).await;
        assert_refused(&got, StatusCode::UNAUTHORIZED, &format!("token {bad}"));
    }
    assert_eq!(
        p.first_mismatch(0, &download(&c, &file, None).await.2),
        None,
        "nothing deleted"
    );

    // A read key: list, download, HEAD, meta; not upload, delete or admin.
    let (read_id, read_token) = create_key(&c, "reader", "read").await;
    let reader = authorized_client(&read_token);
    let (status, _, body) = status_of(&reader, Method::GET, &url("/files"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains(&file));
    let (status, _, body) =
        status_of(&reader, Method::GET, &url(&format!("/files/{file}")), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p.first_mismatch(0, &body), None);
    assert_eq!(body.len() as u64, size);
    let (status, headers, _) =
        status_of(&reader, Method::HEAD, &url(&format!("/files/{file}")), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], size.to_string().as_str());
    let meta = status_of(
        &reader,
        Method::GET,
        &url(&format!("/files/{file}/meta")),
        None,
    )
    .await;
    assert_eq!(meta.0, StatusCode::OK);
    for (method, path, body) in [
        (Method::POST, "/files".to_owned(), Some(vec![2u8; 1000])),
        (Method::DELETE, format!("/files/{file}"), None),
        (Method::GET, "/admin/keys".to_owned(), None),
        (Method::POST, "/admin/keys".to_owned(), None),
    ] {
        let what = format!("read key {method} {path}");
        assert_refused(
            &status_of(&reader, method, &url(&path), body).await,
            StatusCode::FORBIDDEN,
            &what,
        );
    }

    // A write key: upload and delete; not admin.
    let (_, write_token) = create_key(&c, "writer", "write").await;
    let writer = authorized_client(&write_token);
    let (status, _, body) =
        status_of(&writer, Method::POST, &url("/files"), Some(vec![3u8; 5000])).await;
    assert_eq!(status, StatusCode::CREATED);
    let written: Value = serde_json::from_slice(&body).expect("json");
    let written = written["id"].as_str().expect("id").to_owned();
    let deleted = status_of(
        &writer,
        Method::DELETE,
        &url(&format!("/files/{written}")),
        None,
    )
    .await;
    assert_eq!(deleted.0, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::POST] {
        let what = format!("write key {method} /admin/keys");
        assert_refused(
            &status_of(&writer, method, &url("/admin/keys"), None).await,
            StatusCode::FORBIDDEN,
            &what,
        );
    }
    let what = "write key DELETE /admin/keys/{id}";
    let path = format!("/admin/keys/{read_id}");
    assert_refused(
        &status_of(&writer, Method::DELETE, &url(&path), None).await,
        StatusCode::FORBIDDEN,
        what,
    );

    // Presigned by the read key: GET and HEAD of that one file, without any header.
    let signed = presign(&reader, &c, &file, "1h").await;
    let signed_url = signed["url"].as_str().expect("url").to_owned();
    assert!(
        signed_url.starts_with(&format!("/files/{file}?X-Sixfold-Key={read_id}&")),
        "{signed}"
    );
    assert!(
        signed["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{signed}"
    );
    let (status, _, body) = status_of(&none, Method::GET, &url(&signed_url), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p.first_mismatch(0, &body), None);
    assert_eq!(body.len() as u64, size);
    let (status, headers, body) = status_of(&none, Method::HEAD, &url(&signed_url), None).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(headers["content-length"], size.to_string().as_str());
    // Another file with the same signature; another method; a changed expiry.
    let moved = signed_url.replace(&file, &other);
    assert_refused(
        &status_of(&none, Method::GET, &url(&moved), None).await,
        StatusCode::UNAUTHORIZED,
        "other file",
    );
    let got = status_of(&none, Method::DELETE, &url(&signed_url), None).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "presigned DELETE");
    let expires = signed_url
        .split("X-Sixfold-Expires=")
        .nth(1)
        .expect("expires");
    let expires: u64 = expires
        .split('&')
        .next()
        .expect("expires")
        .parse()
        .expect("unix");
    let stretched = signed_url.replace(
        &format!("Expires={expires}"),
        &format!("Expires={}", expires + 1000),
    );
    assert_refused(
        &status_of(&none, Method::GET, &url(&stretched), None).await,
        StatusCode::UNAUTHORIZED,
        "stretched expiry",
    );
    assert_eq!(
        file_bytes(&c, &other).await,
        1000,
        "the other file is still there"
    );
    // Longer than 7 days, or nonsense: 400; an unknown file: 404.
    for bad in ["8d", "soon", "0s"] {
        let r = reader
            .post(url(&format!("/files/{file}/presign")))
            .json(&json!({ "expires_in": bad }))
            .send()
            .await
            .expect("presign");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let ghost = uuid::Uuid::new_v4();
    let r = reader
        .post(url(&format!("/files/{ghost}/presign")))
        .send()
        .await
        .expect("presign");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Expiry: a URL valid for 1 s works at first and, waited for, gets 401 saying so.
    let short = presign(&reader, &c, &file, "1s").await;
    let short_url = url(short["url"].as_str().expect("url"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let expired = loop {
        let got = status_of(&none, Method::GET, &short_url, None).await;
        if got.0 == StatusCode::UNAUTHORIZED {
            break got;
        }
        assert_eq!(got.0, StatusCode::OK, "valid until it expires");
        assert!(Instant::now() < deadline, "the 1 s URL never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let json = assert_refused(&expired, StatusCode::UNAUTHORIZED, "expired URL");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{json}"
    );

    // Revoking the read key: its token and its URLs get 401 at once.
    let r = c
        .http
        .delete(url(&format!("/admin/keys/{read_id}")))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_refused(
        &status_of(&reader, Method::GET, &url("/files"), None).await,
        StatusCode::UNAUTHORIZED,
        "revoked key",
    );
    assert_refused(
        &status_of(&none, Method::GET, &url(&signed_url), None).await,
        StatusCode::UNAUTHORIZED,
        "revoked key's URL",
    );
    let unknown = c
        .http
        .delete(url("/admin/keys/SFZZZZZZZZZZZZZZZZZZ"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The listing shows every key, the revoked one marked, and no secret.
    let listing = c.http.get(url("/admin/keys")).send().await.expect("list");
    assert_eq!(listing.status(), StatusCode::OK);
    let text = listing.text().await.expect("text");
    for token in [&admin_token, &read_token, &write_token] {
        let secret = token.split_once('.').expect("token").1;
        assert!(!text.contains(secret), "a secret is listed: {text}");
    }
    let listing: Value = serde_json::from_str(&text).expect("json");
    let keys = listing["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3, "{listing}");
    let revoked = keys
        .iter()
        .find(|k| k["id"] == read_id.as_str())
        .expect("read key listed");
    assert_eq!(revoked["revoked"], true, "{listing}");
    assert!(
        keys.iter()
            .any(|k| k["name"] == "bootstrap-admin" && k["scope"] == "admin")
    );

    // 401s and 403s are counted.
    let text = status_of(&none, Method::GET, &url("/metrics"), None)
        .await
        .2;
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        metric(&text, "sixfold_errors_total{kind=\"unauthorized\"}") >= 15,
        "{text}"
    );
    assert!(
        metric(&text, "sixfold_errors_total{kind=\"forbidden\"}") >= 7,
        "{text}"
    );

    // A restart keeps the keys (and does not make a second first key).
    if let Some(mut gateway) = c.gateway.take() {
        gateway.kill9();
    }
    c.start_gateway();
    c.wait_nodes_up(6).await;
    let r = c.http.get(url("/admin/keys")).send().await.expect("list");
    assert_eq!(
        r.json::<Value>().await.expect("json")["keys"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_refused(
        &status_of(&reader, Method::GET, &url("/files"), None).await,
        StatusCode::UNAUTHORIZED,
        "still revoked",
    );
    assert_eq!(
        status_of(&writer, Method::GET, &url("/files"), None)
            .await
            .0,
        StatusCode::OK
    );
}

async fn file_bytes(c: &TestCluster, id: &str) -> usize {
    let (status, _, body) = download(c, id, None).await;
    assert_eq!(status, StatusCode::OK);
    body.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_read_and_protected_metrics() {
    let c = TestCluster::start(ClusterOptions {
        nodes: 1,
        gateway_config: "anonymous = \"read\"\nprotect_metrics = true\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    let url = |path: &str| format!("{}{path}", c.url);
    let p = pattern(77);
    let id = upload_ok(&c, "public.txt", p, 4000).await;
    let none = anonymous();

    // Reading needs no credentials now; writing and administering still do.
    let (status, _, body) =
        status_of(&none, Method::GET, &url(&format!("/files/{id}")), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p.first_mismatch(0, &body), None);
    assert_eq!(
        status_of(&none, Method::GET, &url("/files"), None).await.0,
        StatusCode::OK
    );
    let got = status_of(&none, Method::POST, &url("/files"), Some(vec![1u8; 100])).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "anonymous upload");
    let got = status_of(&none, Method::DELETE, &url(&format!("/files/{id}")), None).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "anonymous delete");
    let got = status_of(&none, Method::GET, &url("/admin/keys"), None).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "anonymous admin");
    // Anonymous requests have no key to sign with.
    let got = status_of(
        &none,
        Method::POST,
        &url(&format!("/files/{id}/presign")),
        None,
    )
    .await;
    assert_refused(&got, StatusCode::FORBIDDEN, "anonymous presign");
    // Bad credentials are refused even where anonymous access would do.
    let bad = authorized_client(&format!("{}.{}", "SF".repeat(10), "y".repeat(40)));
    assert_refused(
        &status_of(&bad, Method::GET, &url("/files"), None).await,
        StatusCode::UNAUTHORIZED,
        "bad token",
    );

    // protect_metrics: /metrics needs the read scope, which anonymous has here...
    assert_eq!(
        status_of(&none, Method::GET, &url("/metrics"), None)
            .await
            .0,
        StatusCode::OK
    );
    // One node: /health says 503, but it says it to anyone.
    let health = status_of(&none, Method::GET, &url("/health"), None).await;
    assert_ne!(health.0, StatusCode::UNAUTHORIZED, "/health stays open");
    drop(c);

    // ...and without anonymous access it is closed to the anonymous.
    let c = TestCluster::start(ClusterOptions {
        nodes: 1,
        gateway_config: "protect_metrics = true\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    let got = status_of(&none, Method::GET, &format!("{}/metrics", c.url), None).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "protected metrics");
    let r = c
        .http
        .get(format!("{}/metrics", c.url))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("text");
    assert!(
        metric(&text, "sixfold_errors_total{kind=\"unauthorized\"}") >= 1,
        "{text}"
    );
    let health = status_of(&none, Method::GET, &format!("{}/health", c.url), None).await;
    assert_ne!(health.0, StatusCode::UNAUTHORIZED, "/health stays open");
}

/// Runs `sixfold-gateway admin ...`; returns (success, stdout, stderr).
fn admin_cli<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env_token: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = Command::new(bin_path("sixfold-gateway"));
    cmd.arg("admin").args(args).env_remove("SIXFOLD_TOKEN");
    // Run where no ./sixfold-data exists, so only what the test passes is used.
    cmd.current_dir(std::env::temp_dir());
    if let Some(token) = env_token {
        cmd.env("SIXFOLD_TOKEN", token);
    }
    let out = cmd.output().expect("run sixfold-gateway admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_creates_lists_and_revokes_keys() {
    let mut c = TestCluster::start(ClusterOptions {
        nodes: 1,
        ..ClusterOptions::default()
    })
    .await;
    let token_file = c.gateway_dir().join("admin.token");
    let token_file = token_file.to_str().expect("utf-8");
    let gateway = c.url.clone();
    let with = |rest: &[&str]| -> Vec<String> {
        let mut args = vec!["--gateway", gateway.as_str(), "--token-file", token_file];
        args.extend_from_slice(rest);
        args.into_iter().map(str::to_owned).collect()
    };

    let (ok, stdout, stderr) = admin_cli(
        &with(&["keys", "create", "--scope", "read", "--name", "cli reader"]),
        None,
    );
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_owned();
    let (id, _) = token.split_once('.').expect("a token on stdout");
    assert!(stderr.contains(id), "{stderr}");
    // The new token works, with the read scope.
    let reader = authorized_client(&token);
    assert_eq!(
        reader
            .get(format!("{gateway}/files"))
            .send()
            .await
            .expect("list")
            .status(),
        StatusCode::OK
    );
    let r = reader
        .post(format!("{gateway}/files"))
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // list, with the token from the environment this time.
    let admin_token = c.admin_token().await;
    let (ok, stdout, stderr) =
        admin_cli(&["--gateway", &gateway, "keys", "list"], Some(&admin_token));
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(id) && stdout.contains("cli reader") && stdout.contains("bootstrap-admin"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(token.split_once('.').expect("token").1),
        "no secret listed"
    );

    let (ok, _, stderr) = admin_cli(&with(&["keys", "revoke", id]), None);
    assert!(ok, "{stderr}");
    let r = reader
        .get(format!("{gateway}/files"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (ok, stdout, _) = admin_cli(&with(&["keys", "list"]), None);
    assert!(ok);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(id))
        .expect("revoked key listed");
    assert!(
        line.contains('Z') && !line.contains(" - "),
        "revocation time shown: {line}"
    );

    // Failures say why and exit non-zero: an unknown key, a key that is not admin, no token.
    let (ok, _, stderr) = admin_cli(&with(&["keys", "revoke", "SFZZZZZZZZZZZZZZZZZZ"]), None);
    assert!(!ok && stderr.contains("404"), "{stderr}");
    let (ok, _, stderr) = admin_cli(&["--gateway", &gateway, "keys", "list"], Some(&token));
    assert!(!ok && stderr.contains("401"), "{stderr}");
    let (ok, _, stderr) = admin_cli(&["--gateway", &gateway, "keys", "list"], None);
    assert!(!ok && stderr.contains("--token-file"), "{stderr}");
    let (ok, _, stderr) = admin_cli(
        &with(&["keys", "create", "--scope", "read", "--name", ""]),
        None,
    );
    assert!(!ok && stderr.contains("400"), "{stderr}");
}
