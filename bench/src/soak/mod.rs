//! `sixfold-bench soak`: a mixed load for a fixed time. Workers draw reads, writes and deletes
//! from a mix, on files of a size distribution; every byte read back is verified; when the time
//! is up the operations in flight finish and the soak deletes what it created.

pub mod mix;
mod ops;
pub mod report;
pub mod scheduler;
pub mod sizes;

use crate::content::Content;
use crate::pool::BufPool;
use crate::report::ProcessReport;
use crate::runner::{RunError, block_on, random_seed, run_workers, start_sampler, unix_ms_now};
use crate::transfer;
use mix::Mix;
use ops::Ctx;
use report::{
    CleanupReport, Finished, SOAK_FORMAT_VERSION, SoakReport, SoakReportConfig, SoakStats,
};
use scheduler::{FileEntry, Planned, Scheduler};
use sizes::SizeDist;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The most workers a soak runs (each holds one HTTP connection).
pub const MAX_CONCURRENCY: usize = 1000;
/// Largest body piece handed to the HTTP client.
const MAX_CHUNK: usize = 64 << 20;

/// Everything a soak needs. Build it with [`SoakConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub gateway: String,
    /// How long new operations start; those in flight then finish.
    pub duration: Duration,
    pub mix: Mix,
    pub sizes: SizeDist,
    /// Operations in flight at once (1 to [`MAX_CONCURRENCY`]).
    pub concurrency: usize,
    /// Run seed; random (below 2^53) when `None`.
    pub seed: Option<u64>,
    /// Limit on each HTTP request, from connect to the last body byte.
    pub request_timeout: Duration,
    /// Retry `503 busy` after its `Retry-After` instead of counting it as an error.
    pub retry_busy: bool,
    /// Leave the soak's files on the gateway at the end.
    pub keep: bool,
    /// Bound on the soak's files on the gateway (plus writes in flight); at least
    /// `concurrency`.
    pub max_files: usize,
    pub chunk_size: usize,
    pub pids: Vec<u32>,
    pub pids_auto: bool,
    pub sample_interval: Duration,
    /// File names are `{name_prefix}-{seed}-{index:06}`.
    pub name_prefix: String,
    /// Access token sent as `Authorization: Bearer` with every request (none: anonymous).
    pub token: Option<String>,
}

impl SoakConfig {
    pub fn new(gateway: impl Into<String>) -> Self {
        SoakConfig {
            gateway: gateway.into(),
            duration: Duration::from_secs(60),
            mix: Mix::default(),
            sizes: SizeDist::Uniform {
                min: 1 << 20,
                max: 64 << 20,
            },
            concurrency: 16,
            seed: None,
            request_timeout: Duration::from_secs(600),
            retry_busy: false,
            keep: false,
            max_files: 10_000,
            chunk_size: 256 << 10,
            pids: Vec::new(),
            pids_auto: false,
            sample_interval: Duration::from_millis(200),
            name_prefix: "sixfold-soak".into(),
            token: None,
        }
    }

    fn validate(&self) -> Result<(), RunError> {
        let bad = |m: String| Err(RunError::Config(m));
        if !self.gateway.starts_with("http://") {
            return bad("--gateway must be a plain HTTP URL like http://127.0.0.1:8080".into());
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!(
                "--concurrency must be from 1 to {MAX_CONCURRENCY}, not {}",
                self.concurrency
            ));
        }
        if self.duration.is_zero() {
            return bad("--duration must be above zero".into());
        }
        if self.request_timeout.is_zero() {
            return bad("--request-timeout must be above zero".into());
        }
        if self.max_files < self.concurrency {
            return bad(format!(
                "--max-files ({}) must be at least --concurrency ({})",
                self.max_files, self.concurrency
            ));
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK {
            return bad("--chunk-size must be from 1 byte to 64MiB".into());
        }
        if self.sample_interval.is_zero() {
            return bad("--sample-ms must be above zero".into());
        }
        if self.mix.write == 0 {
            return bad(
                "--mix needs writes: reads and deletes work on the soak's own files".into(),
            );
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Each worker holds one connection; the soft open-files limit is raised to what that needs,
/// as far as the hard limit allows, so connection 1001 does not fail with EMFILE mid-soak.
fn ensure_open_files(concurrency: usize) -> Result<(), RunError> {
    // Connections, plus the runtime, the sampler's /proc reads and the standard streams.
    let needed = concurrency as u64 + 64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= needed {
        return Ok(());
    }
    if lim.rlim_max >= needed {
        let raised = libc::rlimit {
            rlim_cur: needed,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the rlimit struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(RunError::Config(format!(
        "--concurrency {concurrency} needs about {needed} open files, but the limit is {} \
         (hard limit {}): raise it with `ulimit -n`",
        lim.rlim_cur, lim.rlim_max
    )))
}

/// Runs the soak. Operation failures are in the report; `Err` only when it cannot start.
pub async fn soak(config: &SoakConfig) -> Result<SoakReport, RunError> {
    config.validate()?;
    ensure_open_files(config.concurrency)?;
    let started_unix_ms = unix_ms_now();
    let seed = config.seed.unwrap_or_else(random_seed);
    let client = transfer::http_client(
        config.concurrency,
        Some(config.request_timeout),
        config.token.as_deref(),
    )
    .map_err(|e| RunError::Setup(format!("HTTP client: {e}")))?;
    let ctx = Arc::new(Ctx {
        client,
        gateway: config.gateway.trim_end_matches('/').to_string(),
        content: Content::Generated { run_seed: seed },
        // A generated upload body has a piece or two in flight; idle buffers never outnumber
        // the peak in flight, so this bounds reuse, not memory.
        pool: BufPool::new(config.chunk_size, 2 * config.concurrency + 8),
        retry_busy: config.retry_busy,
        request_timeout: config.request_timeout,
        name_prefix: config.name_prefix.clone(),
        seed,
    });
    let sched = Arc::new(Mutex::new(Scheduler::new(
        config.mix,
        config.sizes.clone(),
        config.max_files,
        seed,
    )));
    let stats = Arc::new(Mutex::new(SoakStats::default()));

    let sampler = start_sampler(&config.pids, config.pids_auto, config.sample_interval)?;
    if let Some(s) = &sampler {
        s.mark("soak");
    }
    tracing::info!(
        seconds = config.duration.as_secs_f64(),
        concurrency = config.concurrency,
        "soak"
    );
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut workers = JoinSet::new();
    for _ in 0..config.concurrency {
        let (ctx, sched, stats) = (Arc::clone(&ctx), Arc::clone(&sched), Arc::clone(&stats));
        workers.spawn(async move {
            while Instant::now() < deadline {
                let planned = lock(&sched).plan();
                let done = ctx.execute(&planned).await;
                lock(&sched).done(&planned, done.outcome(&planned));
                record(&stats, &planned, planned.op().as_str(), &done);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            tracing::error!("a soak worker was cancelled: {e}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    let (left, substituted) = {
        let mut s = lock(&sched);
        (s.take_all(), s.substituted())
    };
    let mut cleanup = CleanupReport {
        ran: !config.keep,
        files: left.len() as u64,
        deleted: 0,
        failed: 0,
        busy_retries: 0,
        seconds: 0.0,
    };
    if !config.keep {
        if let Some(s) = &sampler {
            s.mark("cleanup");
        }
        let t = Instant::now();
        delete_all(&ctx, &stats, left, config.concurrency).await;
        cleanup.seconds = t.elapsed().as_secs_f64();
    }

    let (write_bytes, read_bytes) = {
        let st = lock(&stats);
        let ops = st.ops(seconds);
        (ops.write.bytes, ops.read.bytes)
    };
    let processes = sampler.map(|s| {
        let interval_ms = s.interval().as_millis() as u64;
        let own = std::process::id();
        let (bench, watched): (Vec<_>, Vec<_>) = s.stop().into_iter().partition(|p| p.pid == own);
        let mut p = ProcessReport::new(
            interval_ms,
            watched,
            bench.into_iter().next(),
            write_bytes,
            read_bytes,
        );
        // Reads and writes overlap in a soak: there is no upload or download phase to
        // charge CPU time to, only the total.
        p.upload_cpu_seconds_per_gib = None;
        p.download_cpu_seconds_per_gib = None;
        p
    });

    let mut st = lock(&stats);
    cleanup.deleted = st.cleanup_deleted;
    cleanup.failed = st.cleanup_failed;
    cleanup.busy_retries = st.cleanup_busy_retries;
    let ops = st.ops(seconds);
    let verified_bytes = st.verified_bytes;
    let (errors_by_kind, error_count, errors) = st.take_errors();
    Ok(SoakReport {
        format_version: SOAK_FORMAT_VERSION,
        report: "soak".into(),
        tool: concat!("sixfold-bench ", env!("CARGO_PKG_VERSION")).into(),
        started_unix_ms,
        config: SoakReportConfig {
            gateway: config.gateway.clone(),
            duration_s: config.duration.as_secs_f64(),
            concurrency: config.concurrency as u64,
            mix: config.mix,
            sizes: config.sizes.to_string(),
            seed,
            request_timeout_s: config.request_timeout.as_secs_f64(),
            retry_busy: config.retry_busy,
            keep: config.keep,
            max_files: config.max_files as u64,
            chunk_size: config.chunk_size as u64,
        },
        seconds,
        ops,
        verified_bytes,
        substituted,
        cleanup,
        errors_by_kind,
        error_count,
        errors,
        processes,
    })
}

/// Runs [`soak`] on a runtime of its own. Must not be called from inside a tokio runtime.
pub fn soak_blocking(config: &SoakConfig) -> Result<SoakReport, RunError> {
    block_on(soak(config))
}

fn record(stats: &Mutex<SoakStats>, planned: &Planned, phase: &'static str, done: &ops::Done) {
    let (file, id) = match planned {
        Planned::Read(f) | Planned::Delete(f) => (f.index, Some(f.id.as_str())),
        Planned::Write { index, .. } => (*index, None),
    };
    lock(stats).record(Finished {
        op: planned.op(),
        phase,
        file,
        id,
        latency: done.latency,
        busy_retries: done.busy_retries,
        result: done.result.as_ref().map(|(n, _)| *n),
        verified: done.verified,
    });
}

/// The cleanup: every file of the soak still on the gateway, deleted `concurrency` at a time.
async fn delete_all(
    ctx: &Arc<Ctx>,
    stats: &Arc<Mutex<SoakStats>>,
    files: Vec<FileEntry>,
    concurrency: usize,
) {
    let (ctx, stats) = (Arc::clone(ctx), Arc::clone(stats));
    run_workers(files, concurrency, move |f, _| {
        let (ctx, stats) = (Arc::clone(&ctx), Arc::clone(&stats));
        async move {
            let planned = Planned::Delete(f);
            let done = ctx.execute(&planned).await;
            record(&stats, &planned, "cleanup", &done);
        }
    })
    .await;
}
