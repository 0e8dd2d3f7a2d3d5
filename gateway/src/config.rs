//! `sixfold-gateway serve` configuration: command-line flags, an optional TOML file
//! (`--config FILE`, every flag has a key of the same name with `_` for `-`), and defaults.
//! A flag wins over the file, the file over the default. Unknown keys and invalid values are
//! refused with an error that names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use sixfold_units::{ByteSize, HumanDuration, parse_byte_size};

use crate::auth::bootstrap::ADMIN_TOKEN_FILE;
use crate::auth::{Anonymous, AuthPolicy};
use crate::backup::settings::BackupSettings;
use crate::cluster::{DEFAULT_NODE_MAX_PARTS, MtuSetting};
use crate::split::SplitPolicy;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Default largest accepted file: 10 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * GIB;
/// Default in-memory share of a spooled (length-less) upload: 100 MB.
pub const DEFAULT_SPOOL_MEMORY_BYTES: u64 = 100 * 1_000_000;
/// Default memory all spooled uploads together may hold: 1 GiB (ten uploads at their full share).
pub const DEFAULT_SPOOL_MEMORY_TOTAL: u64 = GIB;
/// Default uploads running at once; more wait in the admission queue.
pub const DEFAULT_MAX_UPLOADS: usize = 64;
/// Default downloads running at once; more wait in the admission queue.
pub const DEFAULT_MAX_DOWNLOADS: usize = 64;
/// Default requests that may wait for admission (uploads and downloads each).
pub const DEFAULT_ADMISSION_QUEUE: usize = 1024;
/// Default longest wait for admission before `503 busy`.
pub const DEFAULT_ADMISSION_WAIT: Duration = Duration::from_secs(60);
/// Default bound on each exchange with a node (connect, answer, next piece of a read).
/// Generous: a node that is gone or silent is found sooner, by its missed heartbeats
/// (`down_after`) and by the QUIC idle timeout; this bounds a live node that does not answer.
/// Under heavy load (256 concurrent 64 MiB transfers on two shared cores) a loaded node took
/// over 10 s to acknowledge a synced part.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default address of the internal (node registration, mutual TLS) listener.
pub const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:8081";
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive connection is kept open.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an upload may go without a body byte.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of HTTP connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Far above any CPU count the gateway can use; a larger figure is a typo.
pub const MAX_WORKER_THREADS: usize = 1024;
/// Most HTTP connections one gateway may be configured to serve at once: each holds a file
/// descriptor and a few KiB, and the process's descriptor limit is rarely above this.
pub const MAX_MAX_CONNECTIONS: u32 = 1 << 20;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `sixfold-gateway serve` flags. Every one is optional here so that the config file can supply
/// it; [`GatewayConfig::resolve`] applies the defaults and checks the result.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags given on the command line win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the metadata (`meta.redb`), spool files and, by default, the certificates.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Cluster certificates and token [default: <data-dir>/certs].
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Largest accepted file, e.g. 10GiB [default: 10GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub max_file_size: Option<u64>,
    /// Number of parts a large file is cut into [default: 6].
    #[arg(long, value_name = "N")]
    pub part_count: Option<u32>,
    /// Smallest part [default: 1MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub min_part_size: Option<u64>,
    /// Memory a length-less upload may use before it spools to disk [default: 100MB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub spool_memory_bytes: Option<u64>,
    /// Memory all length-less uploads together may use; beyond it they spool to disk at once
    /// [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub spool_memory_total: Option<u64>,
    /// How long an unfinished upload session lives before cleanup aborts it [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub session_ttl: Option<Duration>,
    /// How often nodes are asked to heartbeat [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// A node silent for this long is marked down [default: 6s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub down_after: Option<Duration>,
    /// With several gateways over one PostgreSQL: a gateway silent this long is dead; the
    /// others abort its unfinished uploads and take over its background jobs [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub gateway_timeout: Option<Duration>,
    /// How often expired uploads are aborted and queued chunk deletions retried [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub cleanup_interval: Option<Duration>,
    /// How long a chunk that no file or upload references stays quarantined before it may be
    /// deleted [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub orphan_grace: Option<Duration>,
    /// How often each node's chunks are listed and checked for orphans [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub orphan_scan_interval: Option<Duration>,
    /// Delay between a node (re)registering and its first orphan scan [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub orphan_scan_delay: Option<Duration>,
    /// UDP payload size of the QUIC packets sent to nodes: `auto` (jumbo on loopback, 1452
    /// elsewhere) or 1200..=65527 [default: auto].
    #[arg(long, value_name = "BYTES|auto")]
    pub mtu: Option<MtuSetting>,
    /// Parts in flight to one node at most; an upload that finds too many nodes at the limit
    /// gets 503 `busy` with `Retry-After` [default: 64].
    #[arg(long, value_name = "N")]
    pub node_max_parts: Option<u32>,
    /// Log format on stderr [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Uploads running at once; more wait in a bounded queue [default: 64].
    #[arg(long, value_name = "N")]
    pub max_uploads: Option<usize>,
    /// Downloads (GET of a file or range) running at once; more wait in a bounded queue
    /// [default: 64].
    #[arg(long, value_name = "N")]
    pub max_downloads: Option<usize>,
    /// Requests that may wait for an upload or a download slot; beyond it `503 busy` at once
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub admission_queue: Option<usize>,
    /// Longest wait for an upload or download slot before `503 busy` [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub admission_wait: Option<Duration>,
    /// Bound on each exchange with a node: connecting, its answer to a request, and each next
    /// piece of a part being read [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub node_timeout: Option<Duration>,
    /// QUIC receive window of one stream from a node, i.e. the read-ahead of one part of a
    /// download [default: 8MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub node_stream_window: Option<u64>,
    /// Time a client has to send a request's headers, from the connection's start or from the
    /// first byte after an idle keep-alive; then the connection is closed [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub header_timeout: Option<Duration>,
    /// An idle keep-alive connection (no request in progress, no byte sent) is closed after
    /// this long [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Option<Duration>,
    /// HTTP connections served at once; further ones wait in the kernel's accept backlog
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
    /// An upload whose client sends no body byte for this long fails with 408 and is aborted
    /// [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub body_idle_timeout: Option<Duration>,
    /// Threads that serve HTTP and drive the QUIC connections to the nodes [default: one per
    /// CPU]. Fewer threads hand work between each other less often (less CPU per GiB); more
    /// use more CPUs at high concurrency.
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<usize>,

    // Access keys.
    /// What requests without credentials may do: none, read or write (never admin)
    /// [default: none].
    #[arg(long, value_name = "SCOPE")]
    pub anonymous: Option<Anonymous>,
    /// Require the read scope for `/metrics` (`/health` stays open).
    #[arg(long)]
    pub protect_metrics: bool,
    /// Where the first admin key's token is written when the metadata has no key yet
    /// [default: <data-dir>/admin.token].
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    // --- TLS and node identity (issue 12) ---
    /// Address of the internal HTTPS listener nodes register and heartbeat to (mutual TLS,
    /// node certificates only); firewall it from everything but the nodes
    /// [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    pub internal_listen: Option<SocketAddr>,
    /// PEM certificate chain of the public API; with --tls-key the API is served over HTTPS
    /// (HTTP/1.1 and HTTP/2) [default: plain HTTP].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    // --- Periodic backups (issue 13) ---
    /// Directory for periodic snapshots of the metadata, `meta-<UTC time>.redb` [default:
    /// none, no periodic backup].
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Time between two periodic snapshots, at least 1s [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub backup_interval: Option<Duration>,
    /// Periodic snapshots kept in backup_dir; older ones are removed [default: 24].
    #[arg(long, value_name = "N")]
    pub backup_keep: Option<usize>,
    // --- S3 (issue 14) ---
    /// Address of the S3-compatible API (path-style, SigV4 with the access keys; HTTPS with
    /// --tls-cert like the main API) [default: none, no S3 listener; `dev`: 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    pub s3_listen: Option<SocketAddr>,
    /// Address of a listener of its own for the admin API (`/admin/...`, the same TLS as the
    /// main API); when set, the main listener refuses admin paths [default: none, the admin
    /// API is on the main listener].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    // --- Rebalancing (issue 15) ---
    /// Bytes per second the rebalancer moves over all nodes, 0 = unlimited; changeable at run
    /// time with `admin rebalance` [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_byte_size)]
    pub rebalance_rate: Option<u64>,
    /// Moves at once per node, as source or target; changeable at run time [default: 2].
    #[arg(long, value_name = "N")]
    pub rebalance_concurrency: Option<u32>,
    /// Fill spread (fullest minus emptiest eligible node, used/capacity, 0..1) above which
    /// `POST /admin/rebalance` moves parts towards their winners [default: 0.05].
    #[arg(long, value_name = "FRACTION")]
    pub rebalance_threshold: Option<f64>,
    /// How long a moved part's old chunk is kept for reads that began before the move; longer
    /// than node_timeout [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rebalance_grace: Option<Duration>,
    // --- PostgreSQL metadata (issue 16) ---
    /// Where the metadata lives: a `postgres://` URL for PostgreSQL (several gateways can share
    /// it) [default: redb, `meta.redb` in the data dir].
    #[arg(long, value_name = "URL")]
    pub metadata: Option<String>,
    /// PostgreSQL connections this gateway keeps at most [default: 16].
    #[arg(long, value_name = "N")]
    pub metadata_pool_size: Option<usize>,
    /// Opening one PostgreSQL connection, at most [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metadata_connect_timeout: Option<Duration>,
    /// Waiting for a free PostgreSQL connection of the pool, at most [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metadata_wait_timeout: Option<Duration>,
}

/// The config file: the same settings as [`ServeArgs`], all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    certs_dir: Option<PathBuf>,
    max_file_size: Option<ByteSize>,
    part_count: Option<u32>,
    min_part_size: Option<ByteSize>,
    spool_memory_bytes: Option<ByteSize>,
    spool_memory_total: Option<ByteSize>,
    session_ttl: Option<HumanDuration>,
    heartbeat_interval: Option<HumanDuration>,
    down_after: Option<HumanDuration>,
    gateway_timeout: Option<HumanDuration>,
    cleanup_interval: Option<HumanDuration>,
    orphan_grace: Option<HumanDuration>,
    orphan_scan_interval: Option<HumanDuration>,
    orphan_scan_delay: Option<HumanDuration>,
    mtu: Option<MtuSetting>,
    node_max_parts: Option<u32>,
    log_format: Option<LogFormat>,
    max_uploads: Option<usize>,
    max_downloads: Option<usize>,
    admission_queue: Option<usize>,
    admission_wait: Option<HumanDuration>,
    node_timeout: Option<HumanDuration>,
    node_stream_window: Option<ByteSize>,
    header_timeout: Option<HumanDuration>,
    keepalive_timeout: Option<HumanDuration>,
    max_connections: Option<u32>,
    body_idle_timeout: Option<HumanDuration>,
    worker_threads: Option<usize>,
    // Access keys.
    anonymous: Option<Anonymous>,
    protect_metrics: Option<bool>,
    admin_token_file: Option<PathBuf>,
    // TLS and node identity
    internal_listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    // Periodic backups
    backup_dir: Option<PathBuf>,
    backup_interval: Option<HumanDuration>,
    backup_keep: Option<usize>,
    // S3
    s3_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    // Rebalancing
    rebalance_rate: Option<ByteSize>,
    rebalance_concurrency: Option<u32>,
    rebalance_threshold: Option<f64>,
    rebalance_grace: Option<HumanDuration>,
    // PostgreSQL metadata
    metadata: Option<String>,
    metadata_pool_size: Option<usize>,
    metadata_connect_timeout: Option<HumanDuration>,
    metadata_wait_timeout: Option<HumanDuration>,
}

/// Everything `serve` runs with, defaults applied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub max_file_size: u64,
    pub part_count: u32,
    pub min_part_size: u64,
    pub spool_memory_bytes: u64,
    pub spool_memory_total: u64,
    pub session_ttl: Duration,
    pub heartbeat_interval: Duration,
    pub down_after: Duration,
    pub gateway_timeout: Duration,
    pub cleanup_interval: Duration,
    pub orphan_grace: Duration,
    pub orphan_scan_interval: Duration,
    pub orphan_scan_delay: Duration,
    pub mtu: MtuSetting,
    pub node_max_parts: u32,
    pub log_format: LogFormat,
    pub max_uploads: usize,
    pub max_downloads: usize,
    pub admission_queue: usize,
    pub admission_wait: Duration,
    pub node_timeout: Duration,
    pub node_stream_window: u64,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: u32,
    pub body_idle_timeout: Duration,
    /// Worker threads of the tokio runtime.
    pub worker_threads: usize,
    // Access keys.
    pub anonymous: Anonymous,
    pub protect_metrics: bool,
    pub admin_token_file: PathBuf,
    /// When the metadata holds no key but the token file exists (left by a lost or replaced
    /// metadata file): `false` refuses to start (serve), `true` moves the stale file aside
    /// and writes a new first token (dev, whose data dir is the operator's own).
    pub replace_stale_admin_token: bool,
    // TLS and node identity
    /// The internal (registration) listener, mutual TLS.
    pub internal_listen: SocketAddr,
    /// Certificate and key of the public API; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Periodic snapshots of the metadata.
    pub backup: BackupSettings,
    // S3
    /// The S3-compatible listener; `None`: none.
    pub s3_listen: Option<SocketAddr>,
    /// The admin API's own listener; `None`: on the main listener.
    pub admin_listen: Option<SocketAddr>,
    /// The rebalancer's rate, concurrency, threshold and grace period.
    pub rebalance: crate::rebalance::job::RebalanceSettings,
    // Metadata
    /// PostgreSQL instead of the embedded redb; `None`: redb in the data dir.
    pub metadata: Option<PostgresTarget>,
}

/// The PostgreSQL database holding the metadata, and how to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    pub url: String,
    pub settings: crate::meta_postgres::PostgresSettings,
}

impl std::fmt::Debug for PostgresTarget {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("url", &crate::meta_postgres::redacted(&self.url))
            .field("settings", &self.settings)
            .finish()
    }
}

impl PostgresTarget {
    /// The target named by `metadata` and its pool settings; `None` for redb.
    pub fn resolve(
        metadata: Option<String>,
        pool_size: Option<usize>,
        connect_timeout: Option<Duration>,
        wait_timeout: Option<Duration>,
    ) -> Result<Option<PostgresTarget>, ConfigError> {
        let Some(url) = metadata.filter(|m| !m.trim().is_empty()) else {
            if pool_size.is_some() || connect_timeout.is_some() || wait_timeout.is_some() {
                return Err(invalid(
                    "metadata_pool_size",
                    "the metadata pool settings apply to PostgreSQL: set `metadata` to a \
                     postgres:// URL",
                ));
            }
            return Ok(None);
        };
        if !crate::meta_postgres::is_postgres_url(&url) {
            return Err(invalid(
                "metadata",
                format!(
                    "{:?} is not a postgres:// or postgresql:// URL (leave it out for the \
                     embedded redb in the data dir)",
                    crate::meta_postgres::redacted(&url)
                ),
            ));
        }
        if url.parse::<tokio_postgres::Config>().is_err() {
            return Err(invalid(
                "metadata",
                format!(
                    "{:?} is not a valid PostgreSQL connection URL",
                    crate::meta_postgres::redacted(&url)
                ),
            ));
        }
        let defaults = crate::meta_postgres::PostgresSettings::default();
        let settings = crate::meta_postgres::PostgresSettings {
            pool_size: pool_size.unwrap_or(defaults.pool_size),
            connect_timeout: connect_timeout.unwrap_or(defaults.connect_timeout),
            wait_timeout: wait_timeout.unwrap_or(defaults.wait_timeout),
        };
        if settings.pool_size == 0 {
            return Err(invalid("metadata_pool_size", "must be at least 1"));
        }
        if settings.connect_timeout.is_zero() || settings.wait_timeout.is_zero() {
            return Err(invalid(
                "metadata_connect_timeout",
                "the metadata timeouts must be greater than 0",
            ));
        }
        Ok(Some(PostgresTarget { url, settings }))
    }
}

/// PEM files of the public HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("no data directory: pass --data-dir DIR or set `data_dir` in the config file")]
    MissingDataDir,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl GatewayConfig {
    /// Merges flags, the config file they name (if any) and the defaults, then validates.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| invalid("listen", "bad built-in default"))?,
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .ok_or(ConfigError::MissingDataDir)?;
        let certs_dir = args
            .certs_dir
            .clone()
            .or(file.certs_dir)
            .unwrap_or_else(|| data_dir.join("certs"));
        let admin_token_file = args
            .admin_token_file
            .clone()
            .or(file.admin_token_file)
            .unwrap_or_else(|| data_dir.join(ADMIN_TOKEN_FILE));
        let internal_listen = match args.internal_listen.or(file.internal_listen) {
            Some(addr) => addr,
            None => DEFAULT_INTERNAL_LISTEN
                .parse()
                .map_err(|_| invalid("internal_listen", "bad built-in default"))?,
        };
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid("tls_key", "tls_cert is set but tls_key is not"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert", "tls_key is set but tls_cert is not"));
            }
        };
        let backup = BackupSettings::resolve(
            args.backup_dir.clone().or(file.backup_dir),
            args.backup_interval.or(file.backup_interval.map(|d| d.0)),
            args.backup_keep.or(file.backup_keep),
        )?;
        let config = GatewayConfig {
            backup,
            s3_listen: args.s3_listen.or(file.s3_listen),
            admin_listen: args.admin_listen.or(file.admin_listen),
            rebalance: {
                let d = crate::rebalance::job::RebalanceSettings::default();
                crate::rebalance::job::RebalanceSettings {
                    rate: args
                        .rebalance_rate
                        .or(file.rebalance_rate.map(|s| s.0))
                        .unwrap_or(d.rate),
                    concurrency: args
                        .rebalance_concurrency
                        .or(file.rebalance_concurrency)
                        .unwrap_or(d.concurrency),
                    threshold: args
                        .rebalance_threshold
                        .or(file.rebalance_threshold)
                        .unwrap_or(d.threshold),
                    grace: args
                        .rebalance_grace
                        .or(file.rebalance_grace.map(|g| g.0))
                        .unwrap_or(d.grace),
                }
            },
            metadata: PostgresTarget::resolve(
                args.metadata.clone().or(file.metadata),
                args.metadata_pool_size.or(file.metadata_pool_size),
                args.metadata_connect_timeout
                    .or(file.metadata_connect_timeout.map(|d| d.0)),
                args.metadata_wait_timeout
                    .or(file.metadata_wait_timeout.map(|d| d.0)),
            )?,
            internal_listen,
            tls,
            listen,
            data_dir,
            certs_dir,
            max_file_size: args
                .max_file_size
                .or(file.max_file_size.map(|s| s.0))
                .unwrap_or(DEFAULT_MAX_FILE_SIZE),
            part_count: args.part_count.or(file.part_count).unwrap_or(6),
            min_part_size: args
                .min_part_size
                .or(file.min_part_size.map(|s| s.0))
                .unwrap_or(MIB),
            spool_memory_bytes: args
                .spool_memory_bytes
                .or(file.spool_memory_bytes.map(|s| s.0))
                .unwrap_or(DEFAULT_SPOOL_MEMORY_BYTES),
            spool_memory_total: args
                .spool_memory_total
                .or(file.spool_memory_total.map(|s| s.0))
                .unwrap_or(DEFAULT_SPOOL_MEMORY_TOTAL),
            session_ttl: args
                .session_ttl
                .or(file.session_ttl.map(|d| d.0))
                .unwrap_or(Duration::from_secs(3600)),
            heartbeat_interval: args
                .heartbeat_interval
                .or(file.heartbeat_interval.map(|d| d.0))
                .unwrap_or(Duration::from_secs(2)),
            down_after: args
                .down_after
                .or(file.down_after.map(|d| d.0))
                .unwrap_or(Duration::from_secs(6)),
            gateway_timeout: args
                .gateway_timeout
                .or(file.gateway_timeout.map(|d| d.0))
                .unwrap_or(crate::cluster::DEFAULT_GATEWAY_TIMEOUT),
            cleanup_interval: args
                .cleanup_interval
                .or(file.cleanup_interval.map(|d| d.0))
                .unwrap_or(Duration::from_secs(5)),
            orphan_grace: args
                .orphan_grace
                .or(file.orphan_grace.map(|d| d.0))
                .unwrap_or(crate::cluster::DEFAULT_ORPHAN_GRACE),
            orphan_scan_interval: args
                .orphan_scan_interval
                .or(file.orphan_scan_interval.map(|d| d.0))
                .unwrap_or(Duration::from_secs(600)),
            orphan_scan_delay: args
                .orphan_scan_delay
                .or(file.orphan_scan_delay.map(|d| d.0))
                .unwrap_or(Duration::from_secs(30)),
            mtu: args.mtu.or(file.mtu).unwrap_or_default(),
            node_max_parts: args
                .node_max_parts
                .or(file.node_max_parts)
                .unwrap_or(DEFAULT_NODE_MAX_PARTS),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            max_uploads: args
                .max_uploads
                .or(file.max_uploads)
                .unwrap_or(DEFAULT_MAX_UPLOADS),
            max_downloads: args
                .max_downloads
                .or(file.max_downloads)
                .unwrap_or(DEFAULT_MAX_DOWNLOADS),
            admission_queue: args
                .admission_queue
                .or(file.admission_queue)
                .unwrap_or(DEFAULT_ADMISSION_QUEUE),
            admission_wait: args
                .admission_wait
                .or(file.admission_wait.map(|d| d.0))
                .unwrap_or(DEFAULT_ADMISSION_WAIT),
            node_timeout: args
                .node_timeout
                .or(file.node_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_NODE_TIMEOUT),
            node_stream_window: args
                .node_stream_window
                .or(file.node_stream_window.map(|s| s.0))
                .unwrap_or(8 * MIB),
            header_timeout: args
                .header_timeout
                .or(file.header_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_HEADER_TIMEOUT),
            keepalive_timeout: args
                .keepalive_timeout
                .or(file.keepalive_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            body_idle_timeout: args
                .body_idle_timeout
                .or(file.body_idle_timeout.map(|d| d.0))
                .unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
            worker_threads: args
                .worker_threads
                .or(file.worker_threads)
                .unwrap_or_else(default_worker_threads),
            anonymous: args.anonymous.or(file.anonymous).unwrap_or_default(),
            protect_metrics: args.protect_metrics || file.protect_metrics.unwrap_or(false),
            admin_token_file,
            replace_stale_admin_token: false,
        };
        if config.metadata.is_some() && config.backup.dir.is_some() {
            return Err(invalid(
                "backup_dir",
                "the periodic backups copy the embedded redb metadata; with PostgreSQL, back up \
                 the database with PostgreSQL's own tools (pg_dump, WAL archiving)",
            ));
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that have limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_file_size == 0 {
            return Err(invalid("max_file_size", "must be greater than 0"));
        }
        if self.part_count == 0 {
            return Err(invalid("part_count", "must be at least 1"));
        }
        if self.part_count > 1024 {
            return Err(invalid("part_count", "must be at most 1024"));
        }
        if self.min_part_size < u64::from(self.part_count) {
            return Err(invalid(
                "min_part_size",
                format!("must be at least part_count ({})", self.part_count),
            ));
        }
        if self.session_ttl.is_zero() {
            return Err(invalid("session_ttl", "must be greater than 0"));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(invalid("heartbeat_interval", "must be greater than 0"));
        }
        if self.cleanup_interval.is_zero() {
            return Err(invalid("cleanup_interval", "must be greater than 0"));
        }
        if self.node_max_parts == 0 {
            return Err(invalid("node_max_parts", "must be at least 1"));
        }
        for (key, value) in [
            ("header_timeout", self.header_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.max_connections > MAX_MAX_CONNECTIONS {
            return Err(invalid(
                "max_connections",
                format!("must be at most {MAX_MAX_CONNECTIONS}"),
            ));
        }
        if self.down_after <= self.heartbeat_interval {
            return Err(invalid(
                "down_after",
                "must be longer than heartbeat_interval",
            ));
        }
        if self.gateway_timeout < Duration::from_millis(600) {
            return Err(invalid("gateway_timeout", "must be at least 600ms"));
        }
        if self.rebalance.concurrency == 0 {
            return Err(invalid("rebalance_concurrency", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.rebalance.threshold) {
            return Err(invalid("rebalance_threshold", "must be between 0 and 1"));
        }
        if self.rebalance.grace <= self.node_timeout {
            return Err(invalid(
                "rebalance_grace",
                "must be longer than node_timeout (a read that began before a move must end first)",
            ));
        }
        if self.max_uploads == 0 {
            return Err(invalid("max_uploads", "must be at least 1"));
        }
        if self.max_downloads == 0 {
            return Err(invalid("max_downloads", "must be at least 1"));
        }
        if !(1..=MAX_WORKER_THREADS).contains(&self.worker_threads) {
            return Err(invalid(
                "worker_threads",
                format!("must be between 1 and {MAX_WORKER_THREADS}"),
            ));
        }
        if self.node_timeout.is_zero() {
            return Err(invalid("node_timeout", "must be greater than 0"));
        }
        if !(64 * 1024..=1 << 30).contains(&self.node_stream_window) {
            return Err(invalid(
                "node_stream_window",
                "must be between 64KiB and 1GiB",
            ));
        }
        self.backup.validate()?;
        Ok(())
    }

    /// The split rule this configuration asks for.
    pub fn split_policy(&self) -> SplitPolicy {
        SplitPolicy {
            part_count: self.part_count,
            min_part_size: self.min_part_size,
        }
    }

    /// The metadata database.
    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta.redb")
    }

    /// How the API edge treats credentials.
    pub fn auth_policy(&self) -> AuthPolicy {
        AuthPolicy {
            anonymous: self.anonymous,
            protect_metrics: self.protect_metrics,
        }
    }

    /// Where length-less uploads spool.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

/// One worker thread per CPU the process may run on, as tokio would choose.
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file_config(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// toml's messages name the offending key (unknown field, or the line of a bad value).
fn parse_file_config(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_with_file(text: &str) -> (tempfile::TempDir, ServeArgs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).expect("write config");
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        (dir, args)
    }

    #[test]
    fn defaults_need_only_a_data_dir() {
        let args = ServeArgs {
            data_dir: Some("/srv/sixfold".into()),
            ..ServeArgs::default()
        };
        let c = GatewayConfig::resolve(&args).expect("valid");
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().expect("addr"));
        assert_eq!(c.certs_dir, PathBuf::from("/srv/sixfold/certs"));
        assert_eq!(c.meta_path(), PathBuf::from("/srv/sixfold/meta.redb"));
        assert_eq!(c.max_file_size, 10 * GIB);
        assert_eq!((c.part_count, c.min_part_size), (6, MIB));
        assert_eq!(c.spool_memory_bytes, 100_000_000);
        assert_eq!(c.spool_memory_total, GIB);
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.mtu, MtuSetting::Auto);
        assert_eq!((c.max_uploads, c.max_downloads), (64, 64));
        assert_eq!(c.admission_queue, 1024);
        assert_eq!(c.admission_wait, Duration::from_secs(60));
        assert_eq!(c.node_timeout, Duration::from_secs(30));
        assert_eq!(c.node_stream_window, 8 * MIB);
        assert_eq!(c.node_max_parts, 64);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(c.worker_threads, default_worker_threads());
        assert!(c.worker_threads >= 1);
        assert_eq!(c.anonymous, Anonymous::None);
        assert!(!c.protect_metrics);
        assert_eq!(
            c.admin_token_file,
            PathBuf::from("/srv/sixfold/admin.token")
        );
        assert!(matches!(
            GatewayConfig::resolve(&ServeArgs::default()),
            Err(ConfigError::MissingDataDir)
        ));
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let (_dir, mut args) = args_with_file(
            r#"
            listen = "0.0.0.0:9000"
            data_dir = "/data"
            certs_dir = "/etc/sixfold"
            max_file_size = "2GiB"
            part_count = 4
            min_part_size = 65536
            spool_memory_bytes = "8MiB"
            spool_memory_total = "64MiB"
            session_ttl = "30m"
            heartbeat_interval = 1
            down_after = "5s"
            mtu = 1400
            node_max_parts = 8
            log_format = "json"
            max_uploads = 3
            max_downloads = 5
            admission_queue = 7
            admission_wait = "2s"
            node_timeout = "3s"
            node_stream_window = "256KiB"
            header_timeout = "3s"
            keepalive_timeout = "90s"
            max_connections = 20
            body_idle_timeout = "500ms"
            worker_threads = 3
            anonymous = "read"
            protect_metrics = true
            admin_token_file = "/etc/sixfold/admin.token"
            "#,
        );
        let c = GatewayConfig::resolve(&args).expect("valid");
        assert_eq!(c.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(c.data_dir, PathBuf::from("/data"));
        assert_eq!(c.certs_dir, PathBuf::from("/etc/sixfold"));
        assert_eq!(c.max_file_size, 2 * GIB);
        assert_eq!((c.part_count, c.min_part_size), (4, 65536));
        assert_eq!(c.spool_memory_bytes, 8 * MIB);
        assert_eq!(c.spool_memory_total, 64 * MIB);
        assert_eq!(c.session_ttl, Duration::from_secs(1800));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.down_after, Duration::from_secs(5));
        assert_eq!(c.mtu, MtuSetting::Fixed(1400));
        assert_eq!(c.node_max_parts, 8);
        assert_eq!(c.worker_threads, 3);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            (c.max_uploads, c.max_downloads, c.admission_queue),
            (3, 5, 7)
        );
        assert_eq!(c.admission_wait, Duration::from_secs(2));
        assert_eq!(c.node_timeout, Duration::from_secs(3));
        assert_eq!(c.node_stream_window, 256 * 1024);
        assert_eq!(c.header_timeout, Duration::from_secs(3));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(90));
        assert_eq!(c.max_connections, 20);
        assert_eq!(c.body_idle_timeout, Duration::from_millis(500));
        assert_eq!(c.anonymous, Anonymous::Read);
        assert!(c.protect_metrics);
        assert_eq!(
            c.admin_token_file,
            PathBuf::from("/etc/sixfold/admin.token")
        );

        args.listen = Some("127.0.0.1:1".parse().expect("addr"));
        args.part_count = Some(3);
        args.log_format = Some(LogFormat::Text);
        args.node_max_parts = Some(2);
        let c = GatewayConfig::resolve(&args).expect("valid");
        assert_eq!(c.node_max_parts, 2);
        args.max_connections = Some(7);
        args.header_timeout = Some(Duration::from_secs(1));
        let c = GatewayConfig::resolve(&args).expect("valid");
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.header_timeout, Duration::from_secs(1));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(90));
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.part_count, 3);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(
            c.max_file_size,
            2 * GIB,
            "file value kept where no flag is given"
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let (_dir, args) = args_with_file("data_dir = \"/d\"\nmax_filesize = 10\n");
        let err = GatewayConfig::resolve(&args)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("max_filesize"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused_by_name() {
        for (text, key) in [
            ("part_count = \"six\"", "part_count"),
            ("max_file_size = \"lots\"", "max_file_size"),
            ("session_ttl = \"soon\"", "session_ttl"),
            ("log_format = \"xml\"", "log_format"),
            ("listen = \"nowhere\"", "listen"),
            ("part_count = 0", "part_count"),
            ("min_part_size = 2\npart_count = 6", "min_part_size"),
            ("mtu = 500", "mtu"),
            ("max_file_size = 0", "max_file_size"),
            ("down_after = \"1s\"", "down_after"),
            ("mtu = \"big\"", "mtu"),
            ("max_uploads = 0", "max_uploads"),
            ("max_downloads = 0", "max_downloads"),
            ("admission_wait = \"never\"", "admission_wait"),
            ("node_timeout = \"0s\"", "node_timeout"),
            ("node_stream_window = \"1KiB\"", "node_stream_window"),
            ("node_max_parts = 0", "node_max_parts"),
            ("node_max_parts = -1", "node_max_parts"),
            ("header_timeout = 0", "header_timeout"),
            ("header_timeout = \"never\"", "header_timeout"),
            ("keepalive_timeout = \"0s\"", "keepalive_timeout"),
            ("body_idle_timeout = 0", "body_idle_timeout"),
            ("max_connections = 0", "max_connections"),
            ("max_connections = 2000000", "max_connections"),
            ("max_connections = -1", "max_connections"),
            ("worker_threads = 0", "worker_threads"),
            ("worker_threads = 5000", "worker_threads"),
            ("worker_threads = \"many\"", "worker_threads"),
            ("anonymous = \"admin\"", "anonymous"),
            ("anonymous = true", "anonymous"),
            ("protect_metrics = \"yes\"", "protect_metrics"),
        ] {
            let (_dir, args) = args_with_file(&format!("data_dir = \"/d\"\n{text}\n"));
            let err = GatewayConfig::resolve(&args).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let args = ServeArgs {
            config: Some("/nonexistent/sixfold.toml".into()),
            data_dir: Some("/d".into()),
            ..ServeArgs::default()
        };
        assert!(matches!(
            GatewayConfig::resolve(&args),
            Err(ConfigError::Read { .. })
        ));
    }
}
