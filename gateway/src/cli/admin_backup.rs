//! `sixfold-gateway admin backup --out FILE`: fetches `POST /admin/backup` and writes the
//! snapshot to FILE atomically: under a temp name in FILE's directory (mode 0600, created
//! new), synced, checked to be a whole snapshot, then renamed over FILE and the directory
//! synced. An interrupted download leaves FILE as it was.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sixfold_gateway::backup::{sync_parent, temp_path_for};
use sixfold_gateway::http::admin_backup::SNAPSHOT_TAKEN_HEADER;
use sixfold_gateway::meta::{SnapshotInfo, read_snapshot_info};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Longest wait for the next byte of the answer (the gateway writes the whole snapshot before
/// it answers, so the first byte takes longest).
const STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest error body read.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// What was written.
#[derive(Debug)]
struct Written {
    bytes: u64,
    taken_at: String,
    info: SnapshotInfo,
}

/// `admin backup --out OUT` against the gateway at `base` (`roots`: the CA of an https one).
pub fn run(
    base: &str,
    token: &str,
    roots: Option<&[Certificate<'static>]>,
    out: &Path,
) -> anyhow::Result<()> {
    let url = format!("{}/admin/backup", base.trim_end_matches('/'));
    let written = fetch(&agent(roots), &url, &format!("Bearer {token}"), out)?;
    eprintln!(
        "wrote {} ({} bytes), a snapshot taken at {} of cluster {}",
        out.display(),
        written.bytes,
        written.taken_at,
        written.info.cluster_id
    );
    Ok(())
}

/// A snapshot of a large metadata takes a while to make and to send, so the download is bounded
/// by stalls (no byte for [`STALL_TIMEOUT`]), not by one total like the other admin requests.
fn agent(roots: Option<&[Certificate<'static>]>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        // Error statuses carry the API's JSON error; read it rather than fail early.
        .http_status_as_error(false)
        .timeout_global(None)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(STALL_TIMEOUT));
    if let Some(roots) = roots {
        // Only the given CA is trusted, as for the other admin commands.
        config = config.tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .root_certs(RootCerts::new_with_certs(roots))
                .build(),
        );
    }
    config.build().into()
}

/// Downloads the snapshot at `url` into `out`.
fn fetch(agent: &ureq::Agent, url: &str, bearer: &str, out: &Path) -> anyhow::Result<Written> {
    let response = agent
        .post(url)
        .header("Authorization", bearer)
        .send_empty()
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let taken_at = header(SNAPSHOT_TAKEN_HEADER).unwrap_or_else(|| "an unknown time".into());
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let body = response.into_body();
    if !status.is_success() {
        let text = body
            .into_with_config()
            .limit(ERROR_BODY_LIMIT)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(e) => bail!(
                "POST /admin/backup: {status} {}: {}",
                e["error"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap_or("-")
            ),
            Err(_) => bail!("POST /admin/backup: {status}: {text}"),
        }
    }
    let Some(length) = length else {
        bail!("POST /admin/backup answered without a Content-Length");
    };
    let temp = temp_path_for(out);
    let written = write_temp(&temp, &mut body.into_reader(), length).and_then(|bytes| {
        let info = read_snapshot_info(&temp)
            .with_context(|| format!("the downloaded file {} is no redb database", temp.display()))?
            .with_context(|| format!("the downloaded file {} is no snapshot", temp.display()))?;
        std::fs::rename(&temp, out)
            .with_context(|| format!("cannot rename {} to {}", temp.display(), out.display()))?;
        sync_parent(out)?;
        Ok(Written {
            bytes,
            taken_at,
            info,
        })
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Copies `body` (of `length` bytes) into the new file `temp` and syncs it.
fn write_temp(temp: &Path, body: &mut impl io::Read, length: u64) -> anyhow::Result<u64> {
    // A temp file of an earlier interrupted run with our pid is stale.
    let _ = std::fs::remove_file(temp);
    let mut file: File = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let copied = io::copy(body, &mut file).context("downloading the snapshot")?;
    if copied != length {
        bail!("the snapshot download ended after {copied} of {length} bytes");
    }
    file.flush()
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot sync {}", temp.display()))?;
    Ok(copied)
}
