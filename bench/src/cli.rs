//! Command line of the `sixfold-bench` binary.

use clap::{Args, Parser, Subcommand, ValueEnum};
use sixfold_bench::size::parse_size;
use sixfold_bench::soak::mix::Mix;
use sixfold_bench::soak::sizes::SizeDist;
use sixfold_bench::{BaselineConfig, Config, Mode, Report, SoakConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "sixfold-bench",
    version,
    about = "Load generator for a sixfold gateway: uploads and downloads big files over HTTP, \
             verifies every byte, and reports throughput against the disk's own limit."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload and/or download files through a running gateway and report throughput, latency
    /// percentiles and errors.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Mixed load for a fixed time: reads (verified), writes and deletes of the soak's own
    /// files at a given mix and concurrency, then a report per operation.
    #[command(after_help = SOAK_EXAMPLES)]
    Soak(SoakArgs),
    /// Only measure the disk's limit on DIR's filesystem (O_DIRECT io_uring sequential write
    /// and read, 1 MiB blocks, queue depth 16).
    Baseline(BaselineArgs),
}

const RUN_EXAMPLES: &str = "\
Examples:
  # one 10 GiB file up and back, against the disk limit measured on the nodes' disk
  sixfold-bench run --gateway http://127.0.0.1:8080 --size 10GiB --baseline /var/lib/sixfold --pids-auto
  # 100 concurrent 64 MiB uploads, report kept for a later download run
  sixfold-bench run --gateway http://127.0.0.1:8080 --mode upload --size 64MiB --files 100 --concurrency 100 --report up.json
  sixfold-bench run --gateway http://127.0.0.1:8080 --mode download --from-report up.json --concurrency 8
  # against a serve gateway: a write (or admin) key's token
  sixfold-bench run --gateway http://10.0.0.5:8080 --token-file /var/lib/sixfold/admin.token --size 1GiB

Exit status: 0 when every transfer succeeded and verified, 1 when any error occurred (the JSON
report is written either way), 2 when the run could not start.";

const SOAK_EXAMPLES: &str = "\
Examples:
  # 10 minutes at concurrency 100, 60% reads, 30% writes, 10% deletes of 1..64 MiB files
  sixfold-bench soak --gateway http://127.0.0.1:8080 --duration 10m --concurrency 100 \\
      --mix read=60,write=30,delete=10 --sizes 1MiB..64MiB --pids-auto --report soak.json
  # five small files for each big one; admission control's 503 busy retried, not counted
  sixfold-bench soak --gateway http://127.0.0.1:8080 --duration 2m --concurrency 1000 \\
      --sizes 64KiB:5,16MiB:1 --retry-busy

Exit status: 0 when every operation and every cleanup delete succeeded and every read
verified, 1 when any failed (the JSON report is written either way), 2 when the soak could
not start.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliMode {
    /// Upload the files only.
    Upload,
    /// Download and verify the files of an earlier run (needs --from-report).
    Download,
    /// Upload all files, then download and verify all of them.
    Roundtrip,
}

impl From<CliMode> for Mode {
    fn from(m: CliMode) -> Mode {
        match m {
            CliMode::Upload => Mode::Upload,
            CliMode::Download => Mode::Download,
            CliMode::Roundtrip => Mode::Roundtrip,
        }
    }
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): give e.g. 30s, 10m, 1h30m or seconds"))
}

fn mix_arg(s: &str) -> Result<Mix, String> {
    Mix::parse(s).map_err(|e| e.to_string())
}

fn sizes_arg(s: &str) -> Result<SizeDist, String> {
    SizeDist::parse(s).map_err(|e| e.to_string())
}

fn seed_arg(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a seed: give an integer (decimal or 0x hex)"))
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Base URL of the gateway.
    #[arg(long, env = "SIXFOLD_GATEWAY", value_name = "URL")]
    pub gateway: String,

    /// Size of each file: bytes (123) or with a unit: KiB MiB GiB TiB (1024-based, also K M G T)
    /// or KB MB GB TB (1000-based). Ignored with --source.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = size_arg)]
    pub size: u64,

    /// Number of files to upload.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub files: u64,

    /// Files moved at the same time.
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub concurrency: usize,

    /// What to do.
    #[arg(long, value_enum, default_value_t = CliMode::Roundtrip)]
    pub mode: CliMode,

    /// Upload copies of this file instead of generated data (its size replaces --size). It is
    /// read in sections with positioned reads, one reader per section.
    #[arg(long, value_name = "FILE")]
    pub source: Option<PathBuf>,

    /// Section readers per --source upload.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub sections: usize,

    /// Seed of the generated data (decimal or 0x hex); random when not given. It is printed
    /// and recorded in the report, so the files can be verified later.
    #[arg(long, value_parser = seed_arg)]
    pub seed: Option<u64>,

    /// Write the JSON report to this file (also when errors occurred).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,

    /// Download mode: the files (ids, sizes, seed, source) to download, from the report of an
    /// earlier upload or roundtrip run.
    #[arg(long, value_name = "REPORT.json")]
    pub from_report: Option<PathBuf>,

    /// Before the load, measure the disk's limit on DIR's filesystem (O_DIRECT io_uring
    /// sequential write then read, like fio --direct=1 --ioengine=io_uring --bs=1M
    /// --iodepth=16) and print every throughput also as a ratio of it. Give a directory on the
    /// disk the nodes store to. Also measures the CPU cost of sending the same number of bytes
    /// over loopback TCP, and gives the --pids CPU per GiB as a multiple of it.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,

    /// Bytes written and read by --baseline, and sent over loopback.
    #[arg(long, value_name = "SIZE", default_value = "2GiB", value_parser = size_arg)]
    pub baseline_size: u64,

    #[command(flatten)]
    pub procs: ProcessArgs,

    /// Delete the files from the gateway at the end of the run.
    #[arg(long)]
    pub delete: bool,

    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// Give a transfer up after this many seconds without a byte moving (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub stall_timeout: u64,

    /// Size of the body pieces handed to the HTTP client.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = size_arg)]
    pub chunk_size: u64,

    #[command(flatten)]
    pub auth: AuthArgs,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Base URL of the gateway.
    #[arg(long, env = "SIXFOLD_GATEWAY", value_name = "URL")]
    pub gateway: String,

    /// How long new operations start (30s, 10m, 1h30m, or seconds); those in flight then
    /// finish, and the soak deletes its files.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = duration_arg)]
    pub duration: Duration,

    /// Relative weights of the operations, OP=WEIGHT,... with OP read, write or delete (left
    /// out: 0). Writes must weigh above 0: reads and deletes use the soak's own files.
    #[arg(long, value_name = "MIX", default_value = "read=60,write=30,delete=10", value_parser = mix_arg)]
    pub mix: Mix,

    /// File sizes: SIZE (all alike), MIN..MAX (uniform, both included) or
    /// SIZE:WEIGHT,SIZE:WEIGHT,... (a weighted list), sizes written as for `run --size`.
    #[arg(long, value_name = "SIZES", default_value = "1MiB..64MiB", value_parser = sizes_arg)]
    pub sizes: SizeDist,

    /// Operations in flight at once (1 to 1000), one HTTP connection each.
    #[arg(long, value_name = "C", default_value_t = 16)]
    pub concurrency: usize,

    /// Limit on each HTTP request, from connect to its last byte (and on the busy retries of
    /// one operation), so the bench never hangs.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration_arg)]
    pub request_timeout: Duration,

    /// Retry `503 busy` answers after their Retry-After (1 s when missing, at most 60 s)
    /// instead of counting them as errors; the retries are counted apart.
    #[arg(long)]
    pub retry_busy: bool,

    /// Leave the soak's files on the gateway at the end instead of deleting them.
    #[arg(long)]
    pub keep: bool,

    /// Most files of the soak on the gateway at once (writes in flight included); at the
    /// bound writes give way to deletes. At least --concurrency.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_files: usize,

    /// Seed of the generated data (decimal or 0x hex); random when not given.
    #[arg(long, value_parser = seed_arg)]
    pub seed: Option<u64>,

    /// Size of the upload body pieces (memory: about 2 x this per write in flight).
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = size_arg)]
    pub chunk_size: u64,

    #[command(flatten)]
    pub procs: ProcessArgs,

    /// Write the JSON report to this file (also when errors occurred).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,

    #[command(flatten)]
    pub auth: AuthArgs,
}

impl SoakArgs {
    pub fn to_config(&self) -> anyhow::Result<SoakConfig> {
        use anyhow::Context;
        let mut c = SoakConfig::new(self.gateway.clone());
        c.duration = self.duration;
        c.mix = self.mix;
        c.sizes = self.sizes.clone();
        c.concurrency = self.concurrency;
        c.request_timeout = self.request_timeout;
        c.retry_busy = self.retry_busy;
        c.keep = self.keep;
        c.max_files = self.max_files;
        c.seed = self.seed;
        c.chunk_size = usize::try_from(self.chunk_size).context("--chunk-size is too large")?;
        c.pids = self.procs.pids.clone();
        c.pids_auto = self.procs.pids_auto;
        c.sample_interval = self.procs.sample_interval();
        c.token = self.auth.token(None)?;
        Ok(c)
    }
}

/// The access token (run and soak alike).
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// File holding the access token sent as `Authorization: Bearer` (a write key's, or the
    /// first admin key's `<data-dir>/admin.token`). Without it: $SIXFOLD_TOKEN, else
    /// `<--baseline DIR>/admin.token` or `./sixfold-data/admin.token` if one exists, else no
    /// token (for a gateway with `anonymous = "write"`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Where `dev` leaves its first admin key's token.
const DEV_TOKEN_FILE: &str = "sixfold-data/admin.token";
const TOKEN_ENV: &str = "SIXFOLD_TOKEN";

impl AuthArgs {
    /// The token, looked up in the documented order; `baseline` is the run's `--baseline DIR`.
    pub fn token(&self, baseline: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
        resolve_token(
            self.token_file.as_deref(),
            std::env::var(TOKEN_ENV).ok(),
            &[
                baseline.map(|dir| dir.join("admin.token")),
                Some(PathBuf::from(DEV_TOKEN_FILE)),
            ],
        )
    }
}

fn resolve_token(
    file: Option<&std::path::Path>,
    env: Option<String>,
    defaults: &[Option<PathBuf>],
) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    let read = |path: &std::path::Path| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.trim().to_owned();
        anyhow::ensure!(
            !token.is_empty(),
            "the token file {} is empty",
            path.display()
        );
        Ok(token)
    };
    if let Some(path) = file {
        return read(path).map(Some);
    }
    if let Some(token) = env.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
        return Ok(Some(token));
    }
    match defaults.iter().flatten().find(|p| p.exists()) {
        Some(path) => read(path).map(Some),
        None => Ok(None),
    }
}

/// Which processes' memory and CPU to sample (run and soak alike).
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Sample peak RSS and CPU time of these processes (gateway, nodes) during the load.
    #[arg(long, value_name = "PID,PID,...", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Also sample every process named sixfold-gateway or sixfold-node.
    #[arg(long)]
    pub pids_auto: bool,

    /// Process sampling interval in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub sample_ms: u64,
}

impl ProcessArgs {
    fn sample_interval(&self) -> Duration {
        Duration::from_millis(self.sample_ms.max(1))
    }
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// A directory on the filesystem to measure.
    pub dir: PathBuf,
    /// Bytes written and read.
    #[arg(long, value_name = "SIZE", default_value = "2GiB", value_parser = size_arg)]
    pub size: u64,
    /// Write the result as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

impl RunArgs {
    /// The library configuration for these arguments.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        use anyhow::{Context, bail};
        let mut c = Config::new(self.gateway.clone());
        c.mode = self.mode.into();
        c.size = self.size;
        c.files = self.files;
        c.concurrency = self.concurrency;
        c.seed = self.seed;
        c.source = self.source.clone();
        c.sections = self.sections;
        c.chunk_size = usize::try_from(self.chunk_size).context("--chunk-size is too large")?;
        if c.chunk_size > 64 << 20 {
            bail!("--chunk-size above 64MiB only wastes memory");
        }
        c.baseline = self.baseline.as_ref().map(|dir| BaselineConfig {
            dir: dir.clone(),
            size: self.baseline_size,
        });
        c.pids = self.procs.pids.clone();
        c.pids_auto = self.procs.pids_auto;
        c.sample_interval = self.procs.sample_interval();
        c.delete_after = self.delete;
        c.progress = !self.no_progress;
        c.stall_timeout = (self.stall_timeout > 0).then(|| Duration::from_secs(self.stall_timeout));
        c.token = self.auth.token(self.baseline.as_deref())?;
        match (&self.from_report, c.mode) {
            (Some(path), Mode::Download) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let earlier: Report = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a sixfold-bench report", path.display()))?;
                c.existing = earlier
                    .files
                    .into_iter()
                    .filter(|f| f.id.is_some())
                    .collect();
                if c.existing.is_empty() {
                    bail!("{} lists no uploaded file", path.display());
                }
                if c.source.is_none() {
                    c.source = earlier.config.source.map(PathBuf::from);
                }
                if c.seed.is_none() {
                    c.seed = Some(earlier.config.seed);
                }
            }
            (Some(_), _) => bail!("--from-report is for --mode download"),
            (None, Mode::Download) => {
                bail!("--mode download needs --from-report REPORT.json from an earlier run")
            }
            (None, _) => {}
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sixfold-bench").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_from_flag_then_env_then_default_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("flag.token");
        let default = dir.path().join("admin.token");
        std::fs::write(&flag, "FLAG\n").expect("write");
        let defaults = [None, Some(default.clone())];
        let env = || Some("ENV".to_owned());
        assert_eq!(
            resolve_token(Some(&flag), env(), &defaults).expect("flag"),
            Some("FLAG".into())
        );
        assert_eq!(
            resolve_token(None, env(), &defaults).expect("env"),
            Some("ENV".into())
        );
        assert_eq!(resolve_token(None, None, &defaults).expect("none"), None);
        std::fs::write(&default, "DEFAULT\n").expect("write");
        assert_eq!(
            resolve_token(None, Some(" ".into()), &defaults).expect("default"),
            Some("DEFAULT".into())
        );
        assert!(resolve_token(Some(&dir.path().join("missing")), env(), &defaults).is_err());
        let cli = parse(&[
            "soak",
            "--gateway",
            "http://127.0.0.1:1",
            "--token-file",
            flag.to_str().expect("utf-8"),
        ])
        .expect("parse");
        let Command::Soak(args) = cli.command else {
            panic!("not soak");
        };
        assert_eq!(args.auth.token_file.as_deref(), Some(flag.as_path()));
    }

    #[test]
    fn run_defaults_and_sizes() {
        let cli = parse(&[
            "run",
            "--gateway",
            "http://127.0.0.1:9",
            "--size",
            "10GiB",
            "--files",
            "3",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let c = args.to_config().unwrap();
        assert_eq!(c.size, 10 << 30);
        assert_eq!(c.files, 3);
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.mode, Mode::Roundtrip);
        assert_eq!(c.chunk_size, 1 << 20);
        assert!(c.baseline.is_none());
        assert_eq!(c.stall_timeout, Some(Duration::from_secs(120)));
    }

    #[test]
    fn bad_size_is_refused_with_the_reason() {
        let err = parse(&["run", "--gateway", "http://x", "--size", "10XB"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown unit") && msg.contains("XB"), "{msg}");
    }

    #[test]
    fn pids_baseline_and_seed() {
        let cli = parse(&[
            "run",
            "--gateway",
            "http://h:1",
            "--pids",
            "12,34",
            "--baseline",
            "/data",
            "--baseline-size",
            "512MiB",
            "--seed",
            "0x10",
            "--stall-timeout",
            "0",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let c = args.to_config().unwrap();
        assert_eq!(c.pids, vec![12, 34]);
        let b = c.baseline.unwrap();
        assert_eq!((b.dir, b.size), (PathBuf::from("/data"), 512 << 20));
        assert_eq!(c.seed, Some(16));
        assert_eq!(c.stall_timeout, None);
        assert!(parse(&["run", "--gateway", "http://h:1", "--seed", "x1"]).is_err());
    }

    fn soak_args(args: &[&str]) -> Result<SoakArgs, clap::Error> {
        let all: Vec<&str> = ["soak", "--gateway", "http://h:1"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        match parse(&all)?.command {
            Command::Soak(a) => Ok(a),
            _ => panic!("not soak"),
        }
    }

    #[test]
    fn soak_defaults_and_flags() {
        let c = soak_args(&[]).unwrap().to_config().unwrap();
        assert_eq!(c.duration, Duration::from_secs(60));
        assert_eq!(c.mix, Mix::default());
        assert_eq!(
            c.sizes,
            SizeDist::Uniform {
                min: 1 << 20,
                max: 64 << 20
            }
        );
        assert_eq!(c.request_timeout, Duration::from_secs(600));
        assert!(!c.retry_busy && !c.keep);
        let c = soak_args(&[
            "--duration",
            "10m",
            "--mix",
            "read=1,write=1",
            "--sizes",
            "1MiB:5,64MiB:1",
            "--concurrency",
            "1000",
            "--request-timeout",
            "90",
            "--retry-busy",
            "--keep",
            "--pids-auto",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        assert_eq!(c.duration, Duration::from_secs(600));
        assert_eq!((c.mix.read, c.mix.write, c.mix.delete), (1, 1, 0));
        assert_eq!(
            c.sizes,
            SizeDist::Weighted(vec![(1 << 20, 5), (64 << 20, 1)])
        );
        assert_eq!(c.concurrency, 1000);
        assert_eq!(c.request_timeout, Duration::from_secs(90));
        assert!(c.retry_busy && c.keep && c.pids_auto);
    }

    #[test]
    fn soak_errors_name_the_flag() {
        for (flag, value, says) in [
            ("--mix", "read=60,list=1", "list"),
            ("--sizes", "64MiB..1MiB", "lower bound"),
            ("--duration", "ten minutes", "not a duration"),
            ("--request-timeout", "5 parsecs", "not a duration"),
        ] {
            let msg = soak_args(&[flag, value]).unwrap_err().to_string();
            assert!(msg.contains(flag) && msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn download_mode_needs_a_report() {
        let cli = parse(&["run", "--gateway", "http://h:1", "--mode", "download"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let err = args.to_config().unwrap_err().to_string();
        assert!(err.contains("--from-report"), "{err}");
    }
}
