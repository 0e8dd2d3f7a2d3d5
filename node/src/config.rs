//! `sixfold-node` configuration: command-line flags, an optional TOML file (`--config FILE`,
//! every flag has a key of the same name with `_` for `-`) and defaults. A flag wins over the
//! file, the file over the default. Unknown keys and invalid values are refused at start with an
//! error that names the key.

mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use units::{
    Advertise, ByteSize, HumanDuration, MAX_MTU, MIN_MTU, Mtu, parse_advertise, parse_byte_size,
    parse_mtu,
};

/// Most shards one node runs: ports are consecutive and shard indices travel as u16.
pub const MAX_SHARDS: u16 = 1024;
/// Default time in-flight requests get to finish after SIGTERM.
/// Default QUIC receive window of one stream.
pub const DEFAULT_STREAM_WINDOW: u64 = 8 << 20;
/// Default I/O buffers per shard.
pub const DEFAULT_IO_BUFFERS: usize = 32;
/// Fewest I/O buffers a shard works with: one put's block being filled plus one write.
pub const MIN_IO_BUFFERS: usize = 2;
/// Most I/O buffers per shard (4 GiB).
pub const MAX_IO_BUFFERS: usize = 4096;
/// Default scrub rate of a node (all shards together): a 4 TB node is read once in about
/// three days, a small fraction of a disk's bandwidth.
pub const DEFAULT_SCRUB_RATE: u64 = 16 << 20;
/// Default time from the end of one scrub pass to the start of the next.
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);
const MAX_NAME_LEN: usize = 255;
/// Most gateways one node is given.
pub const MAX_GATEWAYS: usize = 64;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `sixfold-node` flags. All optional here so the config file can supply them;
/// [`NodeConfig::resolve`] applies the defaults and checks the result.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "sixfold-node",
    version,
    about = "sixfold storage node: stores file parts received over QUIC on local disks"
)]
pub struct Cli {
    /// TOML file with any of the settings below (flags given on the command line win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the node id, the chunk files (one `shard-<n>` dir per shard) and, by
    /// default, the certificates. Required.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// QUIC (UDP) address of shard 0; shard n listens on port + n (port 0: each shard picks a
    /// free port). Required.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The gateway's internal listener the node registers with, e.g. https://10.0.0.1:8081.
    /// Several gateways (over one shared metadata store): repeat the flag or separate the URLs
    /// with commas; the node talks to one at a time, in this order, and moves on to the next
    /// (registering there) while the current one is unreachable or failing. Required.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub gateway: Vec<String>,
    /// Bytes the node offers, e.g. 500GiB [default: free space of the data dir's filesystem
    /// plus what the node already stores].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub capacity: Option<u64>,
    /// Number of shards (threads, each with its own port and chunk dir) [default: available
    /// cores].
    #[arg(long, value_name = "N")]
    pub shards: Option<u16>,
    /// Cluster certificates and token [default: <data-dir>/certs].
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Address the gateway should dial: IP, or IP:PORT for shard 0 when ports are forwarded
    /// [default: the listen IP].
    #[arg(long, value_name = "IP|IP:PORT", value_parser = parse_advertise)]
    pub advertise: Option<Advertise>,
    /// UDP payload size of QUIC packets: `auto` (jumbo on loopback, 1452 elsewhere) or
    /// 1200..=65527 [default: auto].
    #[arg(long, value_name = "BYTES|auto", value_parser = parse_mtu)]
    pub mtu: Option<Mtu>,
    /// Name shown by the gateway [default: <hostname>:<data-dir>].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Log format on stderr [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// QUIC receive window of one stream: body bytes of one put the node buffers before the
    /// gateway must wait [default: 8MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub stream_window: Option<u64>,
    /// Aligned 1 MiB I/O buffers of each shard: all of its chunk read/write memory
    /// [default: 32].
    #[arg(long, value_name = "N")]
    pub io_buffers: Option<usize>,
    /// Bytes per second the background scrub reads (all shards together) to verify every
    /// chunk's crc32c; 0 turns the scrub off, also on request [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    pub scrub_rate: Option<u64>,
    /// Time from the end of one scrub pass to the start of the next (the first: after the
    /// node started); 0s: passes only on request (`sixfold-gateway admin scrub start`)
    /// [default: 7d].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub scrub_interval: Option<Duration>,
}

/// The config file: the same settings as [`Cli`], all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    gateway: Option<GatewayUrls>,
    capacity: Option<ByteSize>,
    shards: Option<u16>,
    certs_dir: Option<PathBuf>,
    advertise: Option<Advertise>,
    mtu: Option<Mtu>,
    name: Option<String>,
    shutdown_grace: Option<HumanDuration>,
    log_format: Option<LogFormat>,
    stream_window: Option<ByteSize>,
    io_buffers: Option<usize>,
    scrub_rate: Option<ByteSize>,
    scrub_interval: Option<HumanDuration>,
}

/// Everything the node runs with, defaults applied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Gateway base URLs without a trailing slash, in the order they are tried; never empty,
    /// no duplicates.
    pub gateways: Vec<String>,
    /// `None`: measure the filesystem once the shards are open.
    pub capacity: Option<u64>,
    pub shards: u16,
    pub certs_dir: PathBuf,
    /// Concrete (never unspecified) address the shards are advertised at.
    pub advertise: Advertise,
    pub mtu: Mtu,
    pub name: String,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub stream_window: u64,
    pub io_buffers: usize,
    /// Bytes/s of the background scrub; 0: off.
    pub scrub_rate: u64,
    /// From one scrub pass's end to the next's start; zero: only on request.
    pub scrub_interval: Duration,
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
    #[error("missing `{key}`: pass --{flag} or set `{key}` in the config file")]
    Missing {
        key: &'static str,
        flag: &'static str,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn missing(key: &'static str, flag: &'static str) -> ConfigError {
    ConfigError::Missing { key, flag }
}

impl NodeConfig {
    /// Merges flags, the config file they name (if any) and the defaults, then validates.
    pub fn resolve(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let data_dir = cli
            .data_dir
            .clone()
            .or(file.data_dir)
            .ok_or_else(|| missing("data_dir", "data-dir"))?;
        let listen = cli
            .listen
            .or(file.listen)
            .ok_or_else(|| missing("listen", "listen"))?;
        let gateways = if cli.gateway.is_empty() {
            file.gateway.map(|g| g.0).unwrap_or_default()
        } else {
            cli.gateway.clone()
        };
        if gateways.is_empty() {
            return Err(missing("gateway", "gateway"));
        }
        let certs_dir = cli
            .certs_dir
            .clone()
            .or(file.certs_dir)
            .unwrap_or_else(|| data_dir.join("certs"));
        let advertise = cli
            .advertise
            .or(file.advertise)
            .unwrap_or(Advertise::Ip(listen.ip()));
        let shards = match cli.shards.or(file.shards) {
            Some(n) => n,
            None => default_shards(),
        };
        let name = match cli.name.clone().or(file.name) {
            Some(name) => name,
            None => default_name(&data_dir),
        };
        let config = NodeConfig {
            gateways: normalize_gateways(&gateways)?,
            capacity: cli.capacity.or(file.capacity.map(|s| s.0)),
            certs_dir,
            advertise,
            shards,
            mtu: cli.mtu.or(file.mtu).unwrap_or_default(),
            name,
            shutdown_grace: cli
                .shutdown_grace
                .or(file.shutdown_grace.map(|d| d.0))
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            stream_window: cli
                .stream_window
                .or(file.stream_window.map(|s| s.0))
                .unwrap_or(DEFAULT_STREAM_WINDOW),
            io_buffers: cli
                .io_buffers
                .or(file.io_buffers)
                .unwrap_or(DEFAULT_IO_BUFFERS),
            scrub_rate: cli
                .scrub_rate
                .or(file.scrub_rate.map(|s| s.0))
                .unwrap_or(DEFAULT_SCRUB_RATE),
            scrub_interval: cli
                .scrub_interval
                .or(file.scrub_interval.map(|d| d.0))
                .unwrap_or(DEFAULT_SCRUB_INTERVAL),
            data_dir,
            listen,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that have limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(invalid("shards", format!("must be 1..={MAX_SHARDS}")));
        }
        let base = self.listen.port();
        if base != 0 && u32::from(base) + u32::from(self.shards) - 1 > u32::from(u16::MAX) {
            return Err(invalid(
                "listen",
                format!("port {base} + {} shards runs past port 65535", self.shards),
            ));
        }
        let ip = self.advertise.ip();
        if ip.is_unspecified() {
            return Err(invalid(
                "advertise",
                format!(
                    "{ip} is not an address the gateway can dial; listening on {} needs \
                     --advertise with a concrete IP",
                    self.listen.ip()
                ),
            ));
        }
        if let Advertise::Addr(addr) = self.advertise
            && (addr.port() == 0
                || u32::from(addr.port()) + u32::from(self.shards) - 1 > u32::from(u16::MAX))
        {
            return Err(invalid(
                "advertise",
                format!("port {} does not fit {} shards", addr.port(), self.shards),
            ));
        }
        if self.capacity == Some(0) {
            return Err(invalid("capacity", "must be greater than 0"));
        }
        if let Mtu::Fixed(mtu) = self.mtu
            && !(MIN_MTU..=MAX_MTU).contains(&mtu)
        {
            return Err(invalid("mtu", format!("must be {MIN_MTU}..={MAX_MTU}")));
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "name",
                format!("must be 1..={MAX_NAME_LEN} bytes and not blank"),
            ));
        }
        if self.shutdown_grace > MAX_SHUTDOWN_GRACE {
            return Err(invalid("shutdown_grace", "must be at most 1h"));
        }
        if !(64 * 1024..=1 << 30).contains(&self.stream_window) {
            return Err(invalid("stream_window", "must be between 64KiB and 1GiB"));
        }
        if !(MIN_IO_BUFFERS..=MAX_IO_BUFFERS).contains(&self.io_buffers) {
            return Err(invalid(
                "io_buffers",
                format!("must be {MIN_IO_BUFFERS}..={MAX_IO_BUFFERS}"),
            ));
        }
        Ok(())
    }

    /// The address shard `shard` is advertised at, given the port it actually bound.
    pub fn advertised_addr(&self, shard: u16, bound: SocketAddr) -> SocketAddr {
        match self.advertise {
            Advertise::Ip(ip) => SocketAddr::new(ip, bound.port()),
            Advertise::Addr(addr) => SocketAddr::new(addr.ip(), addr.port() + shard),
        }
    }

    /// The address shard `shard` binds (port 0 stays 0: the kernel picks).
    pub fn listen_addr(&self, shard: u16) -> SocketAddr {
        let base = self.listen.port();
        let port = if base == 0 { 0 } else { base + shard };
        SocketAddr::new(self.listen.ip(), port)
    }

    /// Directory of shard `shard`'s chunk store.
    pub fn shard_dir(&self, shard: u16) -> PathBuf {
        self.data_dir.join(format!("shard-{shard}"))
    }

    /// The URL of an internal endpoint path such as `/internal/nodes/register` on gateway
    /// `index` (0: the first one given).
    pub fn gateway_url(&self, index: usize, path: &str) -> Option<String> {
        self.gateways.get(index).map(|g| format!("{g}{path}"))
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file_config(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

fn parse_file_config(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// The file's `gateway`: one URL as before (commas separate several, as on the command
/// line) or an array of URLs.
#[derive(Debug, Default)]
struct GatewayUrls(Vec<String>);

impl<'de> Deserialize<'de> for GatewayUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = GatewayUrls;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a gateway URL or an array of gateway URLs")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GatewayUrls, E> {
                Ok(GatewayUrls(v.split(',').map(str::to_owned).collect()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<GatewayUrls, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    if urls.len() == MAX_GATEWAYS {
                        return Err(serde::de::Error::custom(format!(
                            "at most {MAX_GATEWAYS} gateways"
                        )));
                    }
                    urls.push(url);
                }
                Ok(GatewayUrls(urls))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Normalizes every gateway URL ([`normalize_gateway`]) and refuses the same gateway twice.
fn normalize_gateways(urls: &[String]) -> Result<Vec<String>, ConfigError> {
    if urls.len() > MAX_GATEWAYS {
        return Err(invalid(
            "gateway",
            format!("{} gateways given; at most {MAX_GATEWAYS}", urls.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(urls.len());
    for url in urls {
        let url = normalize_gateway(url)?;
        if out.iter().any(|u| u.eq_ignore_ascii_case(&url)) {
            return Err(invalid(
                "gateway",
                format!("{url:?} is given twice; list each gateway once"),
            ));
        }
        out.push(url);
    }
    Ok(out)
}

/// The node registers with the gateway's internal listener over HTTPS with its node
/// certificate (mutual TLS): `https://HOST:PORT`, no path. The gateway is verified by the
/// cluster CA and its role, not by HOST.
fn normalize_gateway(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") {
        return Err(invalid(
            "gateway",
            format!(
                "{url:?}: nodes no longer register over plain HTTP on the gateway's public \
                 port. Give the gateway's internal listener (its `internal_listen`, default \
                 port 8081) as https://HOST:PORT; the node authenticates with its certificate"
            ),
        ));
    }
    let Some(authority) = url.strip_prefix("https://") else {
        return Err(invalid(
            "gateway",
            format!("{url:?} must be an https:// URL such as https://10.0.0.1:8081"),
        ));
    };
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || authority.contains('/') {
        return Err(invalid(
            "gateway",
            format!("{url:?} must be https://HOST:PORT (no path), e.g. https://10.0.0.1:8081"),
        ));
    }
    Ok(url.to_owned())
}

fn default_shards() -> u16 {
    std::thread::available_parallelism()
        .map(|n| u16::try_from(n.get()).unwrap_or(MAX_SHARDS).min(MAX_SHARDS))
        .unwrap_or(1)
}

fn default_name(data_dir: &Path) -> String {
    let host = hostname().unwrap_or_else(|| "node".to_owned());
    let mut name = format!("{host}:{}", data_dir.display());
    if name.len() > MAX_NAME_LEN {
        let mut cut = MAX_NAME_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; gethostname
    // writes at most `len` bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut full = vec!["sixfold-node"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap()
    }

    const BASE: &[&str] = &[
        "--data-dir",
        "/tmp/n1",
        "--listen",
        "127.0.0.1:7000",
        "--gateway",
        "https://127.0.0.1:8080/",
    ];

    fn with_file(
        text: &str,
        extra: &[&str],
    ) -> (tempfile::TempDir, Result<NodeConfig, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["--config", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let result = NodeConfig::resolve(&cli(&args));
        (dir, result)
    }

    #[test]
    fn flags_alone_give_defaults() {
        let c = NodeConfig::resolve(&cli(&[BASE, &["--shards", "2"]].concat())).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/n1"));
        assert_eq!(c.certs_dir, PathBuf::from("/tmp/n1/certs"));
        assert_eq!(c.gateways, ["https://127.0.0.1:8080"]);
        assert_eq!(c.advertise, Advertise::Ip([127, 0, 0, 1].into()));
        assert_eq!(c.capacity, None);
        assert_eq!(c.shards, 2);
        assert_eq!(c.mtu, Mtu::Auto);
        assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.stream_window, DEFAULT_STREAM_WINDOW);
        assert_eq!(c.io_buffers, DEFAULT_IO_BUFFERS);
        assert_eq!(c.scrub_rate, DEFAULT_SCRUB_RATE);
        assert_eq!(c.scrub_interval, DEFAULT_SCRUB_INTERVAL);
        assert!(c.name.ends_with(":/tmp/n1"), "{}", c.name);
        assert_eq!(c.listen_addr(1), "127.0.0.1:7001".parse().unwrap());
        assert_eq!(c.shard_dir(1), PathBuf::from("/tmp/n1/shard-1"));
        assert_eq!(
            c.gateway_url(0, "/internal/nodes/register").as_deref(),
            Some("https://127.0.0.1:8080/internal/nodes/register")
        );
        assert_eq!(c.gateway_url(1, "/x"), None);
    }

    #[test]
    fn file_supplies_every_key_and_flags_win() {
        let (_dir, c) = with_file(
            r#"
            data_dir = "/srv/sixfold"
            listen = "10.0.0.5:7100"
            gateway = "https://10.0.0.1:8080"
            capacity = "1.5TiB"
            shards = 4
            certs_dir = "/etc/sixfold"
            advertise = "192.0.2.10:9100"
            mtu = 1500
            name = "rack1-n5"
            shutdown_grace = "30s"
            log_format = "json"
            stream_window = "1MiB"
            io_buffers = 8
            scrub_rate = "0"
            scrub_interval = "1d"
            "#,
            &["--shards", "3", "--capacity", "10GiB", "--io-buffers", "4"],
        );
        let c = c.unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/sixfold"));
        assert_eq!(c.listen, "10.0.0.5:7100".parse().unwrap());
        assert_eq!(c.capacity, Some(10 << 30));
        assert_eq!(c.shards, 3);
        assert_eq!(c.certs_dir, PathBuf::from("/etc/sixfold"));
        assert_eq!(c.mtu, Mtu::Fixed(1500));
        assert_eq!(c.name, "rack1-n5");
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.stream_window, 1 << 20);
        assert_eq!(c.io_buffers, 4);
        assert_eq!(
            (c.scrub_rate, c.scrub_interval),
            (0, Duration::from_secs(86_400))
        );
        let flags = NodeConfig::resolve(&cli(&[
            BASE,
            &["--scrub-rate", "4MiB", "--scrub-interval", "0s"],
        ]
        .concat()))
        .unwrap();
        assert_eq!(
            (flags.scrub_rate, flags.scrub_interval),
            (4 << 20, Duration::ZERO)
        );
        // Forwarded ports: shard n is advertised at the advertised base + n.
        assert_eq!(
            c.advertised_addr(2, "10.0.0.5:7102".parse().unwrap()),
            "192.0.2.10:9102".parse().unwrap()
        );
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let (_dir, r) = with_file("data_dir = \"/x\"\nshard = 2\n", &[]);
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("unknown field `shard`"), "{msg}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (text, key) in [
            ("capacity = \"12XB\"", "capacity"),
            ("mtu = 900", "mtu"),
            ("shards = -1", "shards"),
            ("log_format = \"xml\"", "log_format"),
            ("shutdown_grace = \"soon\"", "shutdown_grace"),
            ("stream_window = \"1KiB\"", "stream_window"),
            ("io_buffers = 1", "io_buffers"),
        ] {
            let (_dir, r) = with_file(text, BASE);
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
        for (args, key) in [
            (&["--shards", "0"][..], "`shards`"),
            (&["--capacity", "0"][..], "`capacity`"),
            (&["--name", "  "][..], "`name`"),
        ] {
            let msg = NodeConfig::resolve(&cli(&[BASE, args].concat()))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{args:?}: {msg}");
        }
    }

    #[test]
    fn required_settings_are_named_when_missing() {
        let msg = NodeConfig::resolve(&cli(&["--listen", "127.0.0.1:0"]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--data-dir"), "{msg}");
        let msg = NodeConfig::resolve(&cli(&["--data-dir", "/x", "--listen", "127.0.0.1:0"]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--gateway"), "{msg}");
    }

    #[test]
    fn unspecified_listen_needs_an_advertised_ip() {
        let args = [
            "--data-dir",
            "/x",
            "--listen",
            "0.0.0.0:7000",
            "--gateway",
            "https://g:1",
        ];
        let msg = NodeConfig::resolve(&cli(&args)).unwrap_err().to_string();
        assert!(msg.contains("advertise"), "{msg}");
        let c =
            NodeConfig::resolve(&cli(&[&args[..], &["--advertise", "10.1.2.3"]].concat())).unwrap();
        assert_eq!(
            c.advertised_addr(0, "0.0.0.0:7000".parse().unwrap()),
            "10.1.2.3:7000".parse().unwrap()
        );
    }

    #[test]
    fn ports_must_fit_every_shard() {
        let args = [
            "--data-dir",
            "/x",
            "--listen",
            "127.0.0.1:65535",
            "--gateway",
            "https://g:1",
            "--shards",
            "2",
        ];
        let msg = NodeConfig::resolve(&cli(&args)).unwrap_err().to_string();
        assert!(msg.contains("`listen`"), "{msg}");
    }

    #[test]
    fn gateway_must_be_the_https_internal_listener() {
        let args = ["--data-dir", "/x", "--listen", "127.0.0.1:0", "--gateway"];
        let msg = NodeConfig::resolve(&cli(&[&args[..], &["http://g:8080"]].concat()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("internal listener"), "{msg}");
        for bad in [
            "g:1",
            "https://",
            "https://g",
            "https://g:x",
            "https://g:1/path",
        ] {
            let msg = NodeConfig::resolve(&cli(&[&args[..], &[bad]].concat()))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`gateway`"), "{bad}: {msg}");
        }
    }

    const NO_GATEWAY: &[&str] = &["--data-dir", "/x", "--listen", "127.0.0.1:0"];

    #[test]
    fn several_gateways_from_repeated_flags_and_commas_keep_their_order() {
        let c = NodeConfig::resolve(&cli(&[
            NO_GATEWAY,
            &[
                "--gateway",
                "https://10.0.0.2:8081/, https://10.0.0.1:8081",
                "--gateway",
                "https://gw3:8081",
            ],
        ]
        .concat()))
        .unwrap();
        assert_eq!(
            c.gateways,
            [
                "https://10.0.0.2:8081",
                "https://10.0.0.1:8081",
                "https://gw3:8081"
            ]
        );
    }

    #[test]
    fn the_file_takes_a_gateway_string_or_an_array_and_the_flag_wins() {
        let (_dir, c) = with_file("gateway = \"https://a:1\"", NO_GATEWAY);
        assert_eq!(c.unwrap().gateways, ["https://a:1"]);
        let (_dir, c) = with_file("gateway = \"https://a:1,https://b:2\"", NO_GATEWAY);
        assert_eq!(c.unwrap().gateways, ["https://a:1", "https://b:2"]);
        let (_dir, c) = with_file("gateway = [\"https://b:2/\", \"https://a:1\"]", NO_GATEWAY);
        assert_eq!(c.unwrap().gateways, ["https://b:2", "https://a:1"]);
        let (_dir, c) = with_file(
            "gateway = [\"https://b:2\", \"https://a:1\"]",
            &[NO_GATEWAY, &["--gateway", "https://c:3"]].concat(),
        );
        assert_eq!(c.unwrap().gateways, ["https://c:3"]);
        let (_dir, c) = with_file("gateway = 7", NO_GATEWAY);
        let msg = c.unwrap_err().to_string();
        assert!(msg.contains("gateway URL or an array"), "{msg}");
    }

    #[test]
    fn bad_gateway_lists_are_refused_by_name() {
        let (_dir, c) = with_file("gateway = []", NO_GATEWAY);
        let msg = c.unwrap_err().to_string();
        assert!(msg.contains("missing `gateway`"), "{msg}");
        for list in [
            "https://a:1,https://A:1/",
            "https://a:1,,https://b:2",
            "https://a:1,http://b:2",
        ] {
            let msg = NodeConfig::resolve(&cli(&[NO_GATEWAY, &["--gateway", list]].concat()))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`gateway`"), "{list}: {msg}");
        }
        let msg = NodeConfig::resolve(&cli(&[
            NO_GATEWAY,
            &["--gateway", "https://a:1", "--gateway", "https://a:1"],
        ]
        .concat()))
        .unwrap_err()
        .to_string();
        assert!(msg.contains("given twice"), "{msg}");
        let many = (1..=MAX_GATEWAYS + 1)
            .map(|p| format!("https://g:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let msg = NodeConfig::resolve(&cli(&[NO_GATEWAY, &["--gateway", &many]].concat()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at most"), "{msg}");
    }
}
