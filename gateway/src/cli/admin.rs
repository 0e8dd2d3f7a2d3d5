//! `sixfold-gateway admin ...`: the operator's client of a running gateway's `/admin/*` API.
//!
//! It talks HTTP to the gateway (`--gateway URL`) with an admin token: `--token-file F`, else
//! `SIXFOLD_TOKEN`, else `./sixfold-data/admin.token` (where `dev` leaves its first admin key).
//! The HTTP client is ureq: blocking and small, which is all a command making one request needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;
use sixfold_gateway::auth::Scope;
use sixfold_gateway::http::admin_keys::{CreatedKey, KeyList};
use sixfold_gateway::http::admin_scrub::{ScrubStarted, ScrubStatus};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";
const DEFAULT_TOKEN_FILE: &str = "sixfold-data/admin.token";
const TOKEN_ENV: &str = "SIXFOLD_TOKEN";
/// Bound on each request, so a gateway that accepts and never answers does not hang the CLI.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `sixfold-gateway admin` flags.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The gateway's URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_GATEWAY, global = true)]
    pub gateway: String,
    /// File holding an admin token [default: ./sixfold-data/admin.token if it exists; the
    /// SIXFOLD_TOKEN environment variable is used before that default].
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that an `https://` gateway's certificate must chain to, such as
    /// the cluster CA that `dev --tls` prints [default: ./sixfold-data/gateway/certs/ca.pem if
    /// it exists].
    #[arg(long, value_name = "FILE", global = true)]
    pub cacert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Manage access keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// See the nodes and set their state.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Move parts between nodes: start, follow, pause, resume, change the limits.
    #[command(subcommand)]
    Rebalance(RebalanceCommand),
    /// Write a consistent snapshot of the gateway's metadata to FILE (mode 0600: it holds
    /// every access key's secret), taken while the gateway serves. Restore: see docs/deploy.md.
    Backup {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Rebuild the metadata from the nodes (after the metadata was lost, or restored from an
    /// older backup): waits, printing progress, and prints the report as JSON.
    Recover {
        /// Start the rebuild and return at once (follow it with `GET /admin/recover`).
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the rebuild goes on in the gateway).
        #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Copy the redb metadata of a stopped gateway (its data dir, holding meta.redb) into an
    /// empty PostgreSQL database, then check that every table's count and checksum agree, and
    /// print them. Talks to no gateway: run it while the gateway is stopped.
    MigrateMetadata {
        /// The gateway's data dir.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database, `postgres://user@host:port/db`.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// The nodes' background scrub.
    #[command(subcommand)]
    Scrub(ScrubCommand),
    /// Files marked damaged (a part found corrupt or unreadable), as JSON.
    Damaged,
}

#[derive(Debug, clap::Subcommand)]
pub enum ScrubCommand {
    /// Every serving node starts a scrub pass now (in its next heartbeat answer).
    Start,
    /// Each node's current or last pass: chunks and bytes verified of total, start, end,
    /// damaged chunks found; and its counters.
    Status {
        /// Print the gateway's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// Every node with its state.
    List,
    /// No new parts; its parts are to be moved off. Kept over restarts.
    Drain {
        #[arg(value_name = "NODE_ID")]
        id: String,
    },
    /// Serves reads, gets no new parts. Kept over restarts.
    ReadOnly {
        #[arg(value_name = "NODE_ID")]
        id: String,
    },
    /// Back to taking new parts (clears drain and read-only).
    Up {
        #[arg(value_name = "NODE_ID")]
        id: String,
    },
    /// Forget a node for good: only a stopped node that holds nothing.
    Remove {
        #[arg(value_name = "NODE_ID")]
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RebalanceCommand {
    /// Ask for a run: it moves parts towards their winners when the fill spread exceeds the
    /// threshold (or with --force), else only off draining nodes.
    Start {
        /// Move parts towards their winners whatever the fill spread.
        #[arg(long)]
        force: bool,
    },
    /// The job's figures; with --watch, a progress line until it is idle.
    Status {
        #[arg(long)]
        watch: bool,
    },
    /// No new move starts (running ones finish).
    Pause,
    /// Moves start again.
    Resume,
    /// Change the rate and/or the concurrency per node, now.
    Limits {
        /// Bytes per second over all moves (like 10MiB), 0 = unlimited.
        #[arg(long, value_name = "BYTES")]
        rate: Option<String>,
        /// Moves at once per node.
        #[arg(long, value_name = "N")]
        concurrency: Option<u32>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; its token is printed on stdout, once (the gateway cannot show it again).
    Create {
        #[arg(long, value_enum)]
        scope: Scope,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// List every key (no secrets), revoked ones included.
    List,
    /// Revoke a key: its token and every URL presigned with it stop working at once.
    Revoke {
        #[arg(value_name = "KEY_ID")]
        id: String,
    },
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::MigrateMetadata { from, to } = &args.command {
        return migrate_metadata(from, to);
    }
    let token = resolve_token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
    sixfold_certs::install_crypto_provider();
    let roots = if args.gateway.starts_with("https://") {
        Some(load_roots(args.cacert.as_deref())?)
    } else {
        None
    };
    if let AdminCommand::Backup { out } = &args.command {
        return super::admin_backup::run(&args.gateway, &token, roots.as_deref(), out);
    }
    let client = Client::new(&args.gateway, &token, roots);
    match args.command {
        AdminCommand::Keys(KeysCommand::Create { scope, name }) => {
            let created: CreatedKey = client.send_json(
                "POST",
                "/admin/keys",
                &json!({"name": name, "scope": scope}),
            )?;
            eprintln!(
                "created access key {} ({:?}, scope {}); its token, shown this once:",
                created.key.id, created.key.name, created.key.scope
            );
            println!("{}", created.token);
        }
        AdminCommand::Keys(KeysCommand::List) => {
            let list: KeyList = client.send_json("GET", "/admin/keys", &())?;
            println!(
                "{:<20}  {:<6}  {:<24}  {:<24}  NAME",
                "ID", "SCOPE", "CREATED", "REVOKED"
            );
            for key in list.keys {
                println!(
                    "{:<20}  {:<6}  {:<24}  {:<24}  {}",
                    key.id,
                    key.scope,
                    key.created,
                    key.revoked_at.as_deref().unwrap_or("-"),
                    key.name
                );
            }
        }
        AdminCommand::Keys(KeysCommand::Revoke { id }) => {
            client.send_empty("DELETE", &format!("/admin/keys/{id}"))?;
            eprintln!("revoked access key {id}");
        }
        AdminCommand::Nodes(NodesCommand::List) => {
            let nodes: Vec<serde_json::Value> = client.send_json("GET", "/nodes", &())?;
            println!(
                "{:<36}  {:<10}  {:<10}  {:>10}  NAME",
                "ID", "STATE", "SET", "CHUNKS"
            );
            for n in nodes {
                println!(
                    "{:<36}  {:<10}  {:<10}  {:>10}  {}",
                    n["id"].as_str().unwrap_or("?"),
                    n["state"].as_str().unwrap_or("?"),
                    n["operator_state"].as_str().unwrap_or("-"),
                    n["chunk_count"],
                    n["name"].as_str().unwrap_or("")
                );
            }
        }
        AdminCommand::Nodes(NodesCommand::Drain { id }) => {
            set_node_state(&client, &id, "draining")?
        }
        AdminCommand::Nodes(NodesCommand::ReadOnly { id }) => {
            set_node_state(&client, &id, "read_only")?
        }
        AdminCommand::Nodes(NodesCommand::Up { id }) => set_node_state(&client, &id, "up")?,
        AdminCommand::Nodes(NodesCommand::Remove { id }) => {
            client.send_empty("DELETE", &format!("/admin/nodes/{id}"))?;
            eprintln!("removed node {id}");
        }
        AdminCommand::Backup { .. } => {} // handled above: it streams a file, not JSON
        AdminCommand::MigrateMetadata { .. } => {} // handled above: offline, no gateway
        AdminCommand::Recover { no_wait, timeout } => recover(&client, no_wait, timeout)?,
        AdminCommand::Scrub(ScrubCommand::Start) => {
            let started: ScrubStarted = client.send_json("POST", "/admin/scrub", &json!({}))?;
            eprintln!(
                "scrub pass requested on {} node(s); follow it with `admin scrub status`",
                started.requested.len()
            );
        }
        AdminCommand::Scrub(ScrubCommand::Status { json }) => {
            let status: serde_json::Value = client.send_json("GET", "/admin/scrub", &())?;
            if json {
                println!("{status:#}");
            } else {
                let status: ScrubStatus = serde_json::from_value(status)
                    .context("unexpected answer to GET /admin/scrub")?;
                print_scrub_status(&status);
            }
        }
        AdminCommand::Damaged => {
            let list: serde_json::Value = client.send_json("GET", "/admin/damaged", &())?;
            println!("{list:#}");
        }
        AdminCommand::Rebalance(command) => rebalance(&client, command)?,
    }
    Ok(())
}

/// How often `admin rebalance status --watch` asks for progress.
const REBALANCE_POLL: Duration = Duration::from_millis(500);

fn rebalance(client: &Client, command: RebalanceCommand) -> anyhow::Result<()> {
    use super::admin_rebalance::{progress_line, status_text};
    use std::io::{IsTerminal, Write};
    let status: serde_json::Value = match command {
        RebalanceCommand::Start { force } => {
            let s = client.send_json("POST", "/admin/rebalance", &json!({ "force": force }))?;
            eprintln!("rebalance asked for");
            s
        }
        RebalanceCommand::Pause => {
            client.send_json("POST", "/admin/rebalance/pause", &json!({}))?
        }
        RebalanceCommand::Resume => {
            client.send_json("POST", "/admin/rebalance/resume", &json!({}))?
        }
        RebalanceCommand::Limits { rate, concurrency } => {
            let mut body = serde_json::Map::new();
            if let Some(rate) = rate {
                body.insert("rate".into(), json!(rate));
            }
            if let Some(c) = concurrency {
                body.insert("concurrency".into(), json!(c));
            }
            if body.is_empty() {
                bail!("give --rate, --concurrency or both");
            }
            client.send_json("PATCH", "/admin/rebalance", &body)?
        }
        RebalanceCommand::Status { watch: false } => {
            client.send_json("GET", "/admin/rebalance", &())?
        }
        RebalanceCommand::Status { watch: true } => {
            let terminal = std::io::stderr().is_terminal();
            let mut last = String::new();
            loop {
                let s: serde_json::Value = client.send_json("GET", "/admin/rebalance", &())?;
                let line = progress_line(&s, 30);
                if terminal {
                    eprint!("\r{line}\x1b[K");
                    let _ = std::io::stderr().flush();
                } else if line != last {
                    eprintln!("{line}");
                }
                last = line;
                if s["state"] == "idle" {
                    if terminal {
                        eprintln!();
                    }
                    break s;
                }
                std::thread::sleep(REBALANCE_POLL);
            }
        }
    };
    print!("{}", status_text(&status));
    Ok(())
}

fn set_node_state(client: &Client, id: &str, state: &str) -> anyhow::Result<()> {
    let node: serde_json::Value = client.send_json(
        "PATCH",
        &format!("/admin/nodes/{id}"),
        &json!({ "state": state }),
    )?;
    eprintln!(
        "node {id} is now {}",
        node["state"].as_str().unwrap_or(state)
    );
    Ok(())
}

fn print_scrub_status(status: &ScrubStatus) {
    println!(
        "{:<36}  {:<9}  {:<8}  {:>15}  {:>21}  {:>5}  {:>10}  {:>9}  STARTED / ENDED",
        "NODE", "STATE", "PASS", "CHUNKS", "BYTES", "FOUND", "MISMATCHES", "IO_ERRORS"
    );
    for n in &status.nodes {
        let (pass, chunks, bytes, found, when) = match &n.pass {
            Some(p) => (
                if p.running { "running" } else { "done" },
                format!("{}/{}", p.chunks_done, p.chunks_total),
                format!("{}/{}", p.bytes_done, p.bytes_total),
                p.found.to_string(),
                format!("{} / {}", p.started, p.ended.as_deref().unwrap_or("-")),
            ),
            None if !n.reports => ("unknown", "-".into(), "-".into(), "-".into(), "-".into()),
            None if n.rate == 0 => ("off", "-".into(), "-".into(), "-".into(), "-".into()),
            None => ("none yet", "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let pass = if n.requested { "requested" } else { pass };
        println!(
            "{:<36}  {:<9}  {:<8}  {:>15}  {:>21}  {:>5}  {:>10}  {:>9}  {}",
            n.node_id,
            n.state,
            pass,
            chunks,
            bytes,
            found,
            n.checksum_mismatches,
            n.io_errors,
            when
        );
    }
}

/// How often `admin recover` asks for progress.
const RECOVER_POLL: Duration = Duration::from_millis(500);

fn recover(client: &Client, no_wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let started: serde_json::Value = client.send_json("POST", "/admin/recover", &json!({}))?;
    eprintln!("rebuild of the metadata from the nodes started");
    if no_wait {
        println!("{started:#}");
        return Ok(());
    }
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let status: serde_json::Value = client.send_json("GET", "/admin/recover", &())?;
        match status["state"].as_str() {
            Some("done") => {
                eprintln!("rebuild finished");
                println!("{:#}", status["report"]);
                return Ok(());
            }
            Some("failed") => bail!(
                "the rebuild failed: {}",
                status["error"].as_str().unwrap_or("no reason given")
            ),
            _ => {}
        }
        let line = format!(
            "{}: nodes {}/{}, chunks found {}, verified {}/{}",
            status["phase"].as_str().unwrap_or("starting"),
            status["nodes_read"],
            status["nodes"],
            status["chunks_found"],
            status["chunks_verified"],
            status["chunks_to_verify"]
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "still running after {}; follow it with GET /admin/recover",
                humantime::format_duration(timeout)
            );
        }
        std::thread::sleep(RECOVER_POLL);
    }
}

/// The token: from `--token-file`, else the environment, else the dev data dir's file.
fn resolve_token(token_file: Option<&Path>, env: Option<String>) -> anyhow::Result<String> {
    let read = |path: &Path| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        Ok(text.trim().to_owned())
    };
    let token = match (token_file, env.filter(|t| !t.trim().is_empty())) {
        (Some(path), _) => read(path)?,
        (None, Some(env)) => env.trim().to_owned(),
        (None, None) if Path::new(DEFAULT_TOKEN_FILE).exists() => {
            read(Path::new(DEFAULT_TOKEN_FILE))?
        }
        (None, None) => bail!(
            "no admin token: pass --token-file FILE (a new data dir's first admin key is in \
             <data-dir>/admin.token) or set {TOKEN_ENV}"
        ),
    };
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(token)
}

/// An error body of the API.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
}

/// The CA certificates of `--cacert`, or of the dev cluster's CA when it is here.
fn load_roots(cacert: Option<&Path>) -> anyhow::Result<Vec<Certificate<'static>>> {
    let default = Path::new(DEFAULT_DEV_CA);
    let path = match cacert {
        Some(p) => p,
        None if default.exists() => default,
        None => anyhow::bail!(
            "an https:// gateway needs --cacert FILE: the CA its certificate chains to \
             (the cluster CA, <certs dir>/ca.pem)"
        ),
    };
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Where `dev` keeps its cluster CA.
const DEFAULT_DEV_CA: &str = "sixfold-data/gateway/certs/ca.pem";

struct Client {
    agent: ureq::Agent,
    base: String,
    bearer: String,
}

impl Client {
    fn new(base: &str, token: &str, roots: Option<Vec<Certificate<'static>>>) -> Client {
        let mut config = ureq::Agent::config_builder()
            // Error statuses carry the API's JSON error; read it rather than fail early.
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT));
        if let Some(roots) = roots {
            // Only the given CA is trusted: a sixfold gateway's certificate comes from the
            // cluster CA, not from a public one.
            config = config.tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::Rustls)
                    .root_certs(RootCerts::new_with_certs(&roots))
                    .build(),
            );
        }
        let agent = config.build().into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            bearer: format!("Bearer {token}"),
        }
    }

    /// Sends a request (with `body` as JSON for POST) and decodes a 2xx JSON answer.
    fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let text = self.send(method, path, Some(body))?;
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from {method} {path}: {text}"))
    }

    fn send_empty(&self, method: &str, path: &str) -> anyhow::Result<()> {
        self.send(method, path, None::<&()>).map(drop)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let sent = match (method, body) {
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("Authorization", &self.bearer)
                .send_json(body),
            ("PATCH", Some(body)) => self
                .agent
                .patch(&url)
                .header("Authorization", &self.bearer)
                .send_json(body),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &self.bearer)
                .call(),
            _ => self
                .agent
                .get(&url)
                .header("Authorization", &self.bearer)
                .call(),
        };
        // A pooled keep-alive connection the gateway closed just as this request went out
        // fails at once: a GET changes nothing, so it is sent once more on a new connection.
        let sent = match sent {
            Err(ureq::Error::Io(_)) | Err(ureq::Error::ConnectionFailed) if method == "GET" => self
                .agent
                .get(&url)
                .header("Authorization", &self.bearer)
                .call(),
            other => other,
        };
        let mut response = sent.with_context(|| format!("cannot reach the gateway at {url}"))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {method} {path}"))?;
        if !status.is_success() {
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(e) => bail!("{method} {path}: {status} {}: {}", e.error, e.message),
                Err(_) => bail!("{method} {path}: {status}: {text}"),
            }
        }
        Ok(text)
    }
}

/// `admin migrate-metadata`: the copy and its check, printed as a table.
fn migrate_metadata(from: &Path, to: &str) -> anyhow::Result<()> {
    use sixfold_gateway::meta_postgres::{PostgresSettings, is_postgres_url, migrate, redacted};
    if !is_postgres_url(to) {
        bail!(
            "--to must be a postgres:// or postgresql:// URL, not {:?}",
            redacted(to)
        );
    }
    let checks = crate::runtime(None)?.block_on(migrate::migrate_redb_to_postgres(
        from,
        to,
        &PostgresSettings::default(),
    ))?;
    println!(
        "{:<20} {:>12} {:>12}  xxh3-128 (both)",
        "table", "redb", "postgres"
    );
    for c in &checks {
        println!(
            "{:<20} {:>12} {:>12}  {:032x}",
            c.table, c.source_rows, c.target_rows, c.target_checksum
        );
    }
    let total: u64 = checks.iter().map(|c| c.target_rows).sum();
    println!(
        "copied {total} records of {} tables from {} into {}; counts and checksums agree",
        checks.len(),
        from.join("meta.redb").display(),
        redacted(to)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_the_file_then_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t");
        std::fs::write(&file, "FROMFILE\n").expect("write");
        assert_eq!(
            resolve_token(Some(&file), Some("FROMENV".into())).expect("file"),
            "FROMFILE"
        );
        assert_eq!(
            resolve_token(None, Some(" FROMENV ".into())).expect("env"),
            "FROMENV"
        );
        assert!(resolve_token(Some(&dir.path().join("missing")), None).is_err());
        std::fs::write(&file, "\n").expect("write");
        assert!(resolve_token(Some(&file), None).is_err());
    }
}
