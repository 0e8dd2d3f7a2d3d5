//! The run loop: optional disk and loopback baselines, the upload phase, the download phase
//! (each with a fixed number of concurrent streams), process sampling around both, and the
//! report.

use crate::baseline::{self, BaselineConfig};
use crate::content::Content;
use crate::loopback::{self, LoopbackReport};
use crate::pool::BufPool;
use crate::procstat::{self, Sampler, Target};
use crate::progress::PhaseProgress;
use crate::report::{
    ErrorLog, ErrorRecord, FORMAT_VERSION, FileRecord, PhaseReport, ProcessReport, Ratios, Report,
    ReportConfig,
};
use crate::source::SourceFile;
use crate::transfer::{self, TransferError, UploadResponse, stall_guard};
use futures_util::StreamExt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Upload the files only.
    Upload,
    /// Download and verify files uploaded by an earlier run (`Config::existing`).
    Download,
    /// Upload all files, then download and verify all of them.
    Roundtrip,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Upload => "upload",
            Mode::Download => "download",
            Mode::Roundtrip => "roundtrip",
        }
    }
}

/// Everything a run needs. Build it with [`Config::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:8080`.
    pub gateway: String,
    pub mode: Mode,
    /// Bytes per file (ignored with `source`: the source's size is used).
    pub size: u64,
    /// Number of files (upload and roundtrip).
    pub files: u64,
    /// Files moved at the same time.
    pub concurrency: usize,
    /// Run seed; random (below 2^53, so JSON readers keep it exact) when `None`.
    pub seed: Option<u64>,
    /// Upload copies of this file instead of generated data.
    pub source: Option<PathBuf>,
    /// Section readers per source file (the gateway cuts files into 6 parts).
    pub sections: usize,
    /// Size of the body pieces handed to the HTTP client.
    pub chunk_size: usize,
    /// Download mode: the files to download (from an earlier run's report).
    pub existing: Vec<FileRecord>,
    /// Measure the disk's limit, and the loopback's CPU cost for as many bytes, before the load.
    pub baseline: Option<BaselineConfig>,
    /// Processes whose memory and CPU to sample.
    pub pids: Vec<u32>,
    /// Also sample every process named `sixfold-gateway` or `sixfold-node`.
    pub pids_auto: bool,
    pub sample_interval: Duration,
    /// Delete the files from the gateway at the end.
    pub delete_after: bool,
    /// Draw progress bars on stderr (only when it is a terminal).
    pub progress: bool,
    /// Give a transfer up when it has moved no byte for this long.
    pub stall_timeout: Option<Duration>,
    /// File names are `{name_prefix}-{seed}-{index}`.
    pub name_prefix: String,
    /// Access token sent as `Authorization: Bearer` with every request (none: anonymous).
    pub token: Option<String>,
}

impl Config {
    pub fn new(gateway: impl Into<String>) -> Self {
        Config {
            gateway: gateway.into(),
            mode: Mode::Roundtrip,
            size: 1 << 30,
            files: 1,
            concurrency: 1,
            seed: None,
            source: None,
            sections: 6,
            chunk_size: 1 << 20,
            existing: Vec::new(),
            baseline: None,
            pids: Vec::new(),
            pids_auto: false,
            sample_interval: Duration::from_millis(200),
            delete_after: false,
            progress: false,
            stall_timeout: Some(Duration::from_secs(120)),
            name_prefix: "sixfold-bench".into(),
            token: None,
        }
    }

    fn validate(&self) -> Result<(), RunError> {
        let bad = |m: &str| Err(RunError::Config(m.to_string()));
        if self.gateway.starts_with("https://") {
            return bad("this build speaks plain HTTP only: give the gateway as http://HOST:PORT");
        }
        if !self.gateway.starts_with("http://") {
            return bad("the gateway must be a URL like http://127.0.0.1:8080");
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.chunk_size == 0 || self.sections == 0 {
            return bad("chunk size and sections must be at least 1");
        }
        if self.sample_interval.is_zero() {
            return bad("the sample interval must be above zero");
        }
        match self.mode {
            Mode::Upload | Mode::Roundtrip if self.files == 0 => bad("files must be at least 1"),
            Mode::Download if self.existing.is_empty() => bad(
                "download mode needs the files of an earlier upload run (--from-report REPORT.json)",
            ),
            Mode::Download if self.existing.iter().any(|f| f.id.is_none()) => {
                bad("every file to download needs the id the gateway gave it")
            }
            Mode::Download if self.seed.is_none() && self.source.is_none() => bad(
                "download mode needs the seed (or the source file) the files were uploaded with",
            ),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot use the source file {path}: {source}")]
    Source {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot set up the run: {0}")]
    Setup(String),
}

/// What every transfer task shares.
struct Shared {
    client: reqwest::Client,
    gateway: String,
    content: Content,
    pool: BufPool,
    stall_timeout: Option<Duration>,
    progress: bool,
}

/// Runs the benchmark. Transfer failures are in the report (`errors`, `error_count`); `Err` is
/// only for a run that cannot start. Needs a tokio runtime (any flavour).
pub async fn run(config: &Config) -> Result<Report, RunError> {
    config.validate()?;
    let started_unix_ms = unix_ms_now();
    let seed = config.seed.unwrap_or_else(random_seed);

    let (content, size) = match &config.source {
        Some(path) => {
            let source = SourceFile::open(path).map_err(|source| RunError::Source {
                path: path.display().to_string(),
                source,
            })?;
            let size = source.size();
            let content = Content::File {
                source: Arc::new(source),
                sections: config.sections,
            };
            (content, size)
        }
        None => (Content::Generated { run_seed: seed }, config.size),
    };

    let mut files: Vec<FileRecord> = match config.mode {
        // Results of the run the records come from are not this run's.
        Mode::Download => config
            .existing
            .iter()
            .cloned()
            .map(|mut f| {
                f.download_ms = None;
                f.verified = None;
                f.verified_bytes = None;
                f
            })
            .collect(),
        Mode::Upload | Mode::Roundtrip => (0..config.files)
            .map(|index| FileRecord {
                index,
                name: format!("{}-{seed}-{index:04}", config.name_prefix),
                size,
                id: None,
                checksum: None,
                parts: None,
                upload_ms: None,
                download_ms: None,
                verified: None,
                verified_bytes: None,
            })
            .collect(),
    };
    // In download mode the files' sizes come from the earlier run.
    let size = match (config.mode, files.first()) {
        (Mode::Download, Some(f)) if config.source.is_none() => f.size,
        _ => size,
    };
    if config.source.is_some()
        && let Some(f) = files.iter().find(|f| f.size != size)
    {
        return Err(RunError::Config(format!(
            "file {} has {} bytes but the source has {size}",
            f.index, f.size
        )));
    }

    let client = transfer::http_client(config.concurrency, None, config.token.as_deref())
        .map_err(|e| RunError::Setup(format!("HTTP client: {e}")))?;
    let shared = Arc::new(Shared {
        client,
        gateway: config.gateway.trim_end_matches('/').to_string(),
        content,
        // Idle buffers kept for reuse: every stream's pieces in flight (a few for generated
        // data; two per section reader, plus the verifier's, for a source file). Idle buffers
        // never outnumber the peak in flight, so this bounds reuse, not memory.
        pool: BufPool::new(
            config.chunk_size,
            config.concurrency * (2 * config.sections + 4) + 8,
        ),
        stall_timeout: config.stall_timeout,
        progress: config.progress,
    });
    let mut errors = ErrorLog::default();

    let baseline = match &config.baseline {
        Some(b) => {
            tracing::info!(dir = %b.dir.display(), size = b.size, "measuring the disk's limit");
            let r = baseline::measure(b.clone()).await;
            if let Some(e) = &r.error {
                errors.push(baseline_error(e.clone()));
            }
            Some(r)
        }
        None => None,
    };
    let loopback = match &config.baseline {
        Some(b) => Some(measure_loopback(b.size, &mut errors).await),
        None => None,
    };

    let sampler = start_sampler(&config.pids, config.pids_auto, config.sample_interval)?;

    let upload = if config.mode == Mode::Download {
        PhaseReport::not_run()
    } else {
        if let Some(s) = &sampler {
            s.mark("upload");
        }
        upload_phase(&shared, config.concurrency, &mut files, &mut errors).await
    };
    let download = if config.mode == Mode::Upload {
        PhaseReport::not_run()
    } else {
        if let Some(s) = &sampler {
            s.mark("download");
        }
        download_phase(&shared, config.concurrency, &mut files, &mut errors).await
    };

    let processes = sampler.map(|s| {
        let interval_ms = s.interval().as_millis() as u64;
        let own = std::process::id();
        let (bench, watched): (Vec<_>, Vec<_>) = s.stop().into_iter().partition(|p| p.pid == own);
        ProcessReport::new(
            interval_ms,
            watched,
            bench.into_iter().next(),
            upload.bytes,
            download.bytes,
        )
    });

    if config.delete_after {
        delete_files(&shared, config.concurrency, &files, &mut errors).await;
    }

    let verified_bytes = files_verified_bytes(&files);
    let ratios = Ratios::compute(
        &upload,
        &download,
        baseline.as_ref(),
        processes.as_ref(),
        loopback.as_ref(),
    );
    Ok(Report {
        format_version: FORMAT_VERSION,
        tool: concat!("sixfold-bench ", env!("CARGO_PKG_VERSION")).into(),
        started_unix_ms,
        config: ReportConfig {
            gateway: config.gateway.clone(),
            mode: config.mode.as_str().into(),
            size,
            files: files.len() as u64,
            concurrency: config.concurrency as u64,
            seed,
            source: config.source.as_ref().map(|p| p.display().to_string()),
            sections: config.sections as u64,
            chunk_size: config.chunk_size as u64,
        },
        upload,
        download,
        verified_bytes,
        errors: errors.kept,
        error_count: errors.count,
        baseline,
        loopback,
        ratios,
        processes,
        files,
    })
}

/// The host's loopback cost (`loopback.rs`), on threads of its own so the runtime keeps
/// serving; a failure is one error of the run, like the disk baseline's.
async fn measure_loopback(bytes: u64, errors: &mut ErrorLog) -> LoopbackReport {
    tracing::info!(bytes, "measuring the loopback's CPU cost");
    let report = tokio::task::spawn_blocking(move || loopback::measure(bytes))
        .await
        .unwrap_or_else(|e| {
            LoopbackReport::failed(bytes, format!("the loopback measurement failed: {e}"))
        });
    if let Some(e) = &report.error {
        errors.push(baseline_error(e.clone()));
    }
    report
}

/// The error record of a limit that could not be measured.
fn baseline_error(message: String) -> ErrorRecord {
    ErrorRecord {
        phase: "baseline".into(),
        kind: "baseline".into(),
        file: None,
        id: None,
        status: None,
        code: None,
        offset: None,
        message,
    }
}

/// Milliseconds since the Unix epoch (0 on a clock before it).
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random run seed below 2^53, so JSON readers keep it exact.
pub(crate) fn random_seed() -> u64 {
    rand::random::<u64>() & ((1u64 << 53) - 1)
}

/// Runs [`run`] on a runtime of its own. Must not be called from inside a tokio runtime.
pub fn run_blocking(config: &Config) -> Result<Report, RunError> {
    block_on(run(config))
}

/// Runs `f` on a multi-threaded runtime of its own.
pub(crate) fn block_on<T>(f: impl Future<Output = Result<T, RunError>>) -> Result<T, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(format!("tokio runtime: {e}")))?
        .block_on(f)
}

/// Samples `pids` (and with `auto` every gateway and node process) plus the bench itself;
/// `None` when there is nothing to watch.
pub(crate) fn start_sampler(
    pids: &[u32],
    auto: bool,
    interval: Duration,
) -> Result<Option<Sampler>, RunError> {
    let mut targets = Vec::new();
    for &pid in pids {
        let t = Target::from_pid(pid)
            .map_err(|e| RunError::Config(format!("cannot watch process {pid}: {e}")))?;
        targets.push(t);
    }
    if auto {
        let found = procstat::find_by_name(&procstat::AUTO_NAMES);
        if found.is_empty() {
            tracing::warn!("--pids-auto found no sixfold-gateway or sixfold-node process");
        }
        for t in found {
            if !targets.iter().any(|x| x.pid == t.pid) {
                targets.push(t);
            }
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let own = std::process::id();
    targets.push(Target {
        pid: own,
        name: "sixfold-bench".into(),
        role: "bench".into(),
    });
    Ok(Some(Sampler::start(targets, interval)))
}

/// Runs `f` over `jobs` with `concurrency` worker tasks (worker ids `0..concurrency`), each
/// taking the next job when it is free. Results come back in job order.
pub(crate) async fn run_workers<J, T, F, Fut>(jobs: Vec<J>, concurrency: usize, f: F) -> Vec<T>
where
    J: Clone + Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(J, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let n = jobs.len();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut set = JoinSet::new();
    for worker in 0..concurrency.min(n) {
        let (jobs, next, f) = (Arc::clone(&jobs), Arc::clone(&next), Arc::clone(&f));
        set.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                done.push((i, f(job.clone(), worker).await));
            }
            done
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(done) => all.extend(done),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => tracing::error!("a transfer worker was cancelled: {e}"),
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

fn error_record(phase: &str, file: &FileRecord, e: &TransferError) -> ErrorRecord {
    ErrorRecord {
        phase: phase.into(),
        kind: e.kind().into(),
        file: Some(file.index),
        id: file.id.clone(),
        status: e.status(),
        code: e.code().map(str::to_string),
        offset: e.offset(),
        message: e.to_string(),
    }
}

#[derive(Clone)]
struct Job {
    /// Position in the run's file list.
    pos: usize,
    index: u64,
    name: String,
    id: Option<String>,
    size: u64,
}

fn jobs_of(files: &[FileRecord], filter: impl Fn(&FileRecord) -> bool) -> Vec<Job> {
    files
        .iter()
        .enumerate()
        .filter(|(_, f)| filter(f))
        .map(|(pos, f)| Job {
            pos,
            index: f.index,
            name: f.name.clone(),
            id: f.id.clone(),
            size: f.size,
        })
        .collect()
}

async fn upload_phase(
    shared: &Arc<Shared>,
    concurrency: usize,
    files: &mut [FileRecord],
    errors: &mut ErrorLog,
) -> PhaseReport {
    let jobs = jobs_of(files, |_| true);
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let progress = Arc::new(PhaseProgress::new(
        shared.progress,
        "upload",
        total,
        jobs.len() as u64,
        concurrency.min(jobs.len()),
    ));
    tracing::info!(files = jobs.len(), bytes = total, "upload phase");
    let started = Instant::now();
    let results = {
        let (shared, progress) = (Arc::clone(shared), Arc::clone(&progress));
        run_workers(jobs.clone(), concurrency, move |job, worker| {
            upload_file(Arc::clone(&shared), Arc::clone(&progress), job, worker)
        })
        .await
    };
    let seconds = started.elapsed().as_secs_f64();
    progress.finish();

    let (mut ok, mut failed, mut bytes, mut latencies) = (0, 0, 0, Vec::new());
    for (job, (latency, result)) in jobs.iter().zip(results) {
        let file = &mut files[job.pos];
        let ms = latency.as_secs_f64() * 1e3;
        match result {
            Ok(resp) => {
                ok += 1;
                bytes += job.size;
                latencies.push(ms);
                file.id = Some(resp.id);
                file.checksum = resp.checksum;
                file.parts = resp.parts;
                file.upload_ms = Some(ms);
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(file = job.index, "upload failed: {e}");
                errors.push(error_record("upload", file, &e));
            }
        }
    }
    PhaseReport::new(ok, failed, bytes, seconds, &latencies)
}

async fn upload_file(
    shared: Arc<Shared>,
    progress: Arc<PhaseProgress>,
    job: Job,
    worker: usize,
) -> (Duration, Result<UploadResponse, TransferError>) {
    progress.start_file(worker, &job.name, job.size);
    let moved = Arc::new(AtomicU64::new(0));
    let body = {
        let (moved, progress) = (Arc::clone(&moved), Arc::clone(&progress));
        shared
            .content
            .stream(job.index, job.size, &shared.pool)
            .inspect(move |piece| {
                if let Ok(p) = piece {
                    moved.fetch_add(p.len() as u64, Ordering::Relaxed);
                    progress.add_bytes(worker, p.len() as u64);
                }
            })
            .boxed()
    };
    let start = Instant::now();
    let upload = transfer::upload(&shared.client, &shared.gateway, &job.name, job.size, body);
    let result = stall_guard(upload, moved, shared.stall_timeout).await;
    let latency = start.elapsed();
    progress.finish_file(worker, result.is_ok());
    (latency, result)
}

async fn download_phase(
    shared: &Arc<Shared>,
    concurrency: usize,
    files: &mut [FileRecord],
    errors: &mut ErrorLog,
) -> PhaseReport {
    // Files whose upload failed have nothing to download; their error is already recorded.
    let jobs = jobs_of(files, |f| f.id.is_some());
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let progress = Arc::new(PhaseProgress::new(
        shared.progress,
        "download",
        total,
        jobs.len() as u64,
        concurrency.min(jobs.len()),
    ));
    tracing::info!(files = jobs.len(), bytes = total, "download phase");
    let started = Instant::now();
    let results = {
        let (shared, progress) = (Arc::clone(shared), Arc::clone(&progress));
        run_workers(jobs.clone(), concurrency, move |job, worker| {
            download_file(Arc::clone(&shared), Arc::clone(&progress), job, worker)
        })
        .await
    };
    let seconds = started.elapsed().as_secs_f64();
    progress.finish();

    let (mut ok, mut failed, mut bytes, mut latencies) = (0, 0, 0, Vec::new());
    for (job, done) in jobs.iter().zip(results) {
        let file = &mut files[job.pos];
        let ms = done.latency.as_secs_f64() * 1e3;
        file.verified = Some(done.result.is_ok());
        match done.result {
            Ok(_) => {
                ok += 1;
                bytes += job.size;
                latencies.push(ms);
                file.download_ms = Some(ms);
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(file = job.index, "download failed: {e}");
                errors.push(error_record("download", file, &e));
            }
        }
        // Bytes found equal count even when the file failed later on.
        file.verified_bytes = Some(done.verified);
    }
    PhaseReport::new(ok, failed, bytes, seconds, &latencies)
}

struct DownloadDone {
    latency: Duration,
    result: Result<u64, TransferError>,
    verified: u64,
}

async fn download_file(
    shared: Arc<Shared>,
    progress: Arc<PhaseProgress>,
    job: Job,
    worker: usize,
) -> DownloadDone {
    progress.start_file(worker, &job.name, job.size);
    let moved = Arc::new(AtomicU64::new(0));
    let mut verifier = shared.content.verifier(job.index, job.size, &shared.pool);
    let id = job.id.clone().unwrap_or_default();
    let start = Instant::now();
    let result = {
        let (counter, progress) = (Arc::clone(&moved), Arc::clone(&progress));
        let on_bytes = move |n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
            progress.add_bytes(worker, n);
        };
        let download = transfer::download(
            &shared.client,
            &shared.gateway,
            &id,
            job.size,
            &mut verifier,
            on_bytes,
        );
        stall_guard(download, Arc::clone(&moved), shared.stall_timeout).await
    };
    let latency = start.elapsed();
    progress.finish_file(worker, result.is_ok());
    DownloadDone {
        latency,
        result,
        verified: verifier.verified(),
    }
}

fn files_verified_bytes(files: &[FileRecord]) -> u64 {
    files.iter().filter_map(|f| f.verified_bytes).sum()
}

async fn delete_files(
    shared: &Arc<Shared>,
    concurrency: usize,
    files: &[FileRecord],
    errors: &mut ErrorLog,
) {
    let jobs = jobs_of(files, |f| f.id.is_some());
    let results = {
        let shared = Arc::clone(shared);
        run_workers(jobs.clone(), concurrency, move |job, _| {
            let shared = Arc::clone(&shared);
            async move {
                let id = job.id.clone().unwrap_or_default();
                transfer::delete(&shared.client, &shared.gateway, &id).await
            }
        })
        .await
    };
    for (job, r) in jobs.iter().zip(results) {
        if let Err(e) = r {
            errors.push(error_record("delete", &files[job.pos], &e));
        }
    }
}
