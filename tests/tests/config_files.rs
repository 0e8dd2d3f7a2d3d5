//! `--config FILE` of both binaries as an operator meets it: a mistake in the file stops the
//! process with a message naming the key, and the shipped example files are accepted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sixfold_tests::bin_path;

/// The workspace's `systemd/` directory.
fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("systemd")
}

/// Runs a binary to completion (every case here fails at start, before serving anything).
fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn toml_path(p: &Path) -> String {
    // A quoted TOML basic string; temp paths hold no quotes, backslashes or control chars.
    format!("{:?}", p.to_str().expect("utf-8 path"))
}

/// Starts `sixfold-gateway serve --config <text>` and returns its output.
fn gateway_with(dir: &Path, text: &str) -> Output {
    let config = write_config(dir, "gateway.toml", text);
    run(
        &bin_path("sixfold-gateway"),
        &["serve", "--config", config.to_str().expect("utf-8")],
    )
}

/// Starts `sixfold-node --config <text>` and returns its output.
fn node_with(dir: &Path, text: &str) -> Output {
    let config = write_config(dir, "node.toml", text);
    run(
        &bin_path("sixfold-node"),
        &["--config", config.to_str().expect("utf-8")],
    )
}

fn assert_refused_naming(out: &Output, key: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "accepted; stderr:\n{err}");
    assert!(err.contains(key), "error does not name `{key}`:\n{err}");
}

fn node_base(dir: &Path) -> String {
    format!(
        "data_dir = {}\nlisten = \"127.0.0.1:0\"\ngateway = \"https://127.0.0.1:9\"\n",
        toml_path(&dir.join("node"))
    )
}

#[test]
fn gateway_refuses_an_unknown_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "data_dir = {}\nmax_filesize = \"1GiB\"\n",
        toml_path(&dir.path().join("gw"))
    );
    let out = gateway_with(dir.path(), &text);
    assert_refused_naming(&out, "max_filesize");
}

#[test]
fn gateway_refuses_an_invalid_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "data_dir = {}\nmax_file_size = \"lots\"\n",
        toml_path(&dir.path().join("gw"))
    );
    let out = gateway_with(dir.path(), &text);
    assert_refused_naming(&out, "max_file_size");

    // A well-formed value outside its limits is refused too.
    let text = format!(
        "data_dir = {}\npart_count = 0\n",
        toml_path(&dir.path().join("gw"))
    );
    let out = gateway_with(dir.path(), &text);
    assert_refused_naming(&out, "part_count");

    // A runtime without threads would serve nothing.
    let text = format!(
        "data_dir = {}\nworker_threads = 0\n",
        toml_path(&dir.path().join("gw"))
    );
    let out = gateway_with(dir.path(), &text);
    assert_refused_naming(&out, "worker_threads");
}

#[test]
fn node_refuses_an_unknown_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{}shard_count = 2\n", node_base(dir.path()));
    let out = node_with(dir.path(), &text);
    assert_refused_naming(&out, "shard_count");
}

#[test]
fn node_refuses_an_invalid_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = node_with(
        dir.path(),
        &format!("{}shards = 0\n", node_base(dir.path())),
    );
    assert_refused_naming(&out, "shards");

    let out = node_with(
        dir.path(),
        &format!("{}capacity = \"plenty\"\n", node_base(dir.path())),
    );
    assert_refused_naming(&out, "capacity");
}

/// The example file is a valid gateway config: with the data dir pointed at a temp dir (a flag
/// wins over the file), the gateway gets past the config and stops at the missing certificates.
#[test]
fn gateway_example_config_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = systemd_dir().join("gateway.example.toml");
    let data = dir.path().join("gw");
    let out = run(
        &bin_path("sixfold-gateway"),
        &[
            "serve",
            "--config",
            example.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "started without certificates:\n{err}"
    );
    assert!(
        err.contains("no cluster certificates") && err.contains("certs init"),
        "failed for another reason than the missing certificates:\n{err}"
    );
    assert!(!err.contains("config"), "config error:\n{err}");
}

/// The example file is a valid node config: the node gets past the config and stops at the
/// missing certificates.
#[test]
fn node_example_config_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = systemd_dir().join("node.example.toml");
    let data = dir.path().join("node");
    let out = run(
        &bin_path("sixfold-node"),
        &[
            "--config",
            example.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
    );
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "started without certificates:\n{err}"
    );
    assert!(
        err.contains("TLS files") && err.contains("certs issue-node"),
        "failed for another reason than the missing certificates:\n{err}"
    );
    assert!(!err.contains("config"), "config error:\n{err}");
}
