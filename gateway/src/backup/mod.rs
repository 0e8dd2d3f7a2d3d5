//! Online backups of the metadata (issue #13): snapshots taken while the gateway serves, for
//! `POST /admin/backup` (streamed to the caller) and for the periodic snapshots to `backup_dir`.
//!
//! The copy itself is `Meta::snapshot_to` (`meta/backup.rs`); this module owns the files around
//! it (written whole under a temp name, synced, renamed into place), runs one snapshot at a time
//! (a second one meanwhile is refused, not queued: each holds a long read transaction and a
//! whole copy on disk), and counts the outcomes for `/metrics`.

pub mod periodic;
pub mod settings;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::meta::{Meta, MetaError, SnapshotReport};

/// A snapshot slower than this is logged at WARN: it held a read transaction that long, which
/// keeps redb from reusing the pages written meanwhile.
const SLOW_SNAPSHOT: Duration = Duration::from_secs(10);
/// Longest a caller waits for a snapshot. The copy itself cannot be cancelled (it is blocking
/// I/O): past this the caller gets an error, and the copy ends on its own, keeping the permit
/// (so abandoned copies never pile up) and counting its own outcome.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30 * 60);

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("another backup is being taken; retry when it is done")]
    Busy,
    #[error("snapshot of the metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backup task: {0}")]
    Task(String),
    #[error("the snapshot took longer than {}; it goes on in the background", humantime::format_duration(*.0))]
    TimedOut(Duration),
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Outcomes of the backups, for `/metrics`.
#[derive(Debug, Default)]
pub struct BackupStats {
    ok: AtomicU64,
    failed: AtomicU64,
    last_ok_unix_ms: AtomicU64,
    last_records: AtomicU64,
}

impl BackupStats {
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// When the last successful snapshot was taken (0: none yet).
    pub fn last_ok_unix_ms(&self) -> u64 {
        self.last_ok_unix_ms.load(Ordering::Relaxed)
    }
    /// Records the last successful snapshot copied.
    pub fn last_records(&self) -> u64 {
        self.last_records.load(Ordering::Relaxed)
    }
}

/// Takes snapshots, one at a time. Cheap to clone.
#[derive(Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

struct Inner {
    meta: Meta,
    /// Where snapshots streamed over HTTP are written first (the spool dir: its leftovers are
    /// removed at start).
    scratch_dir: PathBuf,
    /// One permit: one snapshot at a time.
    running: Arc<Semaphore>,
    stats: Arc<BackupStats>,
}

/// A snapshot file opened for reading and already unlinked: it goes away with the handle.
pub struct SnapshotFile {
    pub file: File,
    pub len: u64,
    pub report: SnapshotReport,
}

impl Backups {
    pub fn new(meta: Meta, scratch_dir: PathBuf) -> Backups {
        Backups {
            inner: Arc::new(Inner {
                meta,
                scratch_dir,
                running: Arc::new(Semaphore::new(1)),
                stats: Arc::new(BackupStats::default()),
            }),
        }
    }

    pub fn stats(&self) -> &Arc<BackupStats> {
        &self.inner.stats
    }

    /// Writes a snapshot to `dest` atomically: under a temp name in the same directory,
    /// synced, renamed over `dest`, the directory synced. `dest` is whole or untouched.
    pub async fn to_file(&self, dest: PathBuf) -> Result<SnapshotReport, BackupError> {
        let meta = self.inner.meta.clone();
        self.run(move || write_atomically(&meta, &dest).map(|(report, _)| report))
            .await
    }

    /// Writes a snapshot to a scratch file and hands it back open (and unlinked), to be
    /// streamed to a client without holding it in memory.
    pub async fn to_scratch(&self) -> Result<SnapshotFile, BackupError> {
        let meta = self.inner.meta.clone();
        let path = self
            .inner
            .scratch_dir
            .join(format!("backup-{}.spool", uuid::Uuid::new_v4()));
        self.run(move || {
            let written = snapshot_logged(&meta, &path).and_then(|(report, len)| {
                let file = File::open(&path).map_err(io_error("cannot open snapshot", &path))?;
                Ok(SnapshotFile { file, len, report })
            });
            // Whatever happened, the name goes: an open handle keeps the bytes.
            remove_quietly(&path);
            written
        })
        .await
    }

    /// Runs `work` on the blocking pool holding the one permit, and counts the outcome.
    async fn run<T: HasReport + Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
    ) -> Result<T, BackupError> {
        let permit = Arc::clone(&self.inner.running)
            .try_acquire_owned()
            .map_err(|_| BackupError::Busy)?;
        let stats = Arc::clone(&self.inner.stats);
        let task = tokio::task::spawn_blocking(move || {
            // The permit lives as long as the work, even if the caller stops waiting.
            let _permit = permit;
            let result = work();
            match &result {
                Ok(value) => {
                    let report = value.report();
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                    stats
                        .last_ok_unix_ms
                        .store(report.info.taken_unix_ms, Ordering::Relaxed);
                    stats
                        .last_records
                        .store(report.records(), Ordering::Relaxed);
                }
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            result
        });
        match tokio::time::timeout(SNAPSHOT_WAIT, task).await {
            Err(_) => Err(BackupError::TimedOut(SNAPSHOT_WAIT)),
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                self.inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                Err(BackupError::Task(e.to_string()))
            }
        }
    }
}

/// What the outcome counters need from a result.
trait HasReport {
    fn report(&self) -> &SnapshotReport;
}

impl HasReport for SnapshotReport {
    fn report(&self) -> &SnapshotReport {
        self
    }
}

impl HasReport for SnapshotFile {
    fn report(&self) -> &SnapshotReport {
        &self.report
    }
}

/// Snapshot to `path` (a new file), logged with its counts and time; returns the file's size.
/// A failed snapshot's file is removed.
fn snapshot_logged(meta: &Meta, path: &Path) -> Result<(SnapshotReport, u64), BackupError> {
    let report = match meta.snapshot_to(path) {
        Ok(report) => report,
        Err(e) => {
            remove_quietly(path);
            tracing::error!(path = %path.display(), error = %e, "metadata snapshot failed");
            return Err(e.into());
        }
    };
    let len = std::fs::metadata(path)
        .map_err(io_error("cannot stat snapshot", path))?
        .len();
    let tables = report
        .tables
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX);
    if report.elapsed >= SLOW_SNAPSHOT {
        tracing::warn!(
            path = %path.display(),
            records = report.records(),
            bytes = len,
            elapsed_ms,
            %tables,
            "metadata snapshot written, slowly (a long read transaction grows meta.redb)"
        );
    } else {
        tracing::info!(
            path = %path.display(),
            records = report.records(),
            bytes = len,
            elapsed_ms,
            %tables,
            "metadata snapshot written"
        );
    }
    Ok((report, len))
}

/// The temp name `dest` is written under: hidden, in the same directory (so the rename is
/// atomic), and recognisable for the cleanup of an interrupted run (`periodic.rs`).
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "meta.redb".to_owned());
    dest.with_file_name(format!(".{name}.{}{TEMP_SUFFIX}", std::process::id()))
}

/// Suffix of the temp files of [`temp_path_for`].
pub const TEMP_SUFFIX: &str = ".tmp";

fn write_atomically(meta: &Meta, dest: &Path) -> Result<(SnapshotReport, u64), BackupError> {
    let temp = temp_path_for(dest);
    // A temp file of an earlier, interrupted run of this process id is stale.
    remove_quietly(&temp);
    let (report, len) = snapshot_logged(meta, &temp)?;
    let placed = File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot sync snapshot", &temp))
        .and_then(|()| {
            std::fs::rename(&temp, dest).map_err(io_error("cannot rename snapshot to", dest))
        })
        .and_then(|()| sync_parent(dest));
    if let Err(e) = placed {
        remove_quietly(&temp);
        tracing::error!(path = %dest.display(), error = %e, "metadata snapshot not placed");
        return Err(e);
    }
    Ok((report, len))
}

/// Syncs the directory holding `path`, so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("cannot sync directory", dir))
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a snapshot file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_backup_is_whole_and_private_and_one_runs_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
        let backups = Backups::new(meta, dir.path().to_path_buf());
        let dest = dir.path().join("out.redb");
        let report = backups.to_file(dest.clone()).await.expect("backup");
        let info = crate::meta::read_snapshot_info(&dest)
            .expect("read")
            .expect("snapshot");
        assert_eq!(info, report.info);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Replacing an earlier backup of the same name is atomic too.
        backups.to_file(dest.clone()).await.expect("again");
        assert!(!temp_path_for(&dest).exists());
        assert_eq!((backups.stats().ok(), backups.stats().failed()), (2, 0));

        // While the permit is held, another backup is refused at once.
        let held = Arc::clone(&backups.inner.running)
            .try_acquire_owned()
            .expect("permit");
        assert!(matches!(
            backups.to_file(dir.path().join("other.redb")).await,
            Err(BackupError::Busy)
        ));
        drop(held);

        // A scratch snapshot leaves no name behind.
        let snap = backups.to_scratch().await.expect("scratch");
        assert!(snap.len > 0);
        let spools = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".spool"))
            .count();
        assert_eq!(spools, 0);

        // A directory that does not exist fails, counted, without a panic.
        let err = backups
            .to_file(dir.path().join("missing").join("x.redb"))
            .await
            .expect_err("no dir");
        assert!(matches!(err, BackupError::Meta(_)), "{err}");
        assert_eq!(backups.stats().failed(), 1);
    }
}
