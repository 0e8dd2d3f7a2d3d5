//! The index log file of one shard (`index.log`): appends, snapshots and loading.
//!
//! Appends are serialized by a one-permit semaphore so a compaction (rewrite to a temp file,
//! fsync, rename, fsync of the directory) never interleaves with them. A log that failed to take
//! an append is unlinked, so the next open rebuilds from the chunk headers instead of trusting
//! a log with a hole in it. A store opened on a full disk starts without a log the same way
//! ([`IndexLog::deferred`]): its first append writes the snapshot once there is room.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use monoio::fs::{File, OpenOptions};

use super::index_codec::{self, IndexError, LogRecord};
use super::local_sync::Semaphore;

pub(crate) const INDEX_FILE: &str = "index.log";
const INDEX_TMP_FILE: &str = "index.log.tmp";

/// Compaction runs when the log holds this many records and four times the live chunks.
const COMPACT_MIN_RECORDS: u64 = 1024;

/// Why a stored index could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("index file missing")]
    Missing,
    #[error("index file damaged: {0}")]
    Damaged(#[from] IndexError),
    #[error("index file unreadable: {0}")]
    Io(io::Error),
}

pub(crate) struct IndexLog {
    path: PathBuf,
    tmp_path: PathBuf,
    /// The directory holding the log, kept open to fsync renames.
    dir: Rc<File>,
    /// `None` until a snapshot could be written (see [`IndexLog::deferred`]).
    file: RefCell<Option<Rc<File>>>,
    end: Cell<u64>,
    records: Cell<u64>,
    broken: Cell<bool>,
    lock: Semaphore,
}

impl IndexLog {
    pub(crate) async fn load(dir: &Path) -> Result<Vec<LogRecord>, LoadError> {
        match monoio::fs::read(dir.join(INDEX_FILE)).await {
            Ok(bytes) => Ok(index_codec::decode_log(&bytes)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LoadError::Missing),
            Err(e) => Err(LoadError::Io(e)),
        }
    }

    /// Writes `snapshot` (a whole log of `records` records) as the new log and opens it.
    pub(crate) async fn create(
        dir_path: &Path,
        dir: Rc<File>,
        snapshot: Vec<u8>,
        records: u64,
    ) -> io::Result<IndexLog> {
        let path = dir_path.join(INDEX_FILE);
        let tmp_path = dir_path.join(INDEX_TMP_FILE);
        let end = snapshot.len() as u64;
        let file = write_snapshot(&tmp_path, &path, &dir, snapshot).await?;
        Ok(IndexLog {
            path,
            tmp_path,
            dir,
            file: RefCell::new(Some(Rc::new(file))),
            end: Cell::new(end),
            records: Cell::new(records),
            broken: Cell::new(false),
            lock: Semaphore::new(1),
        })
    }

    /// A log with no file yet, for a store that could not write its opening snapshot (disk
    /// full). It counts as broken, so the next append compacts first, i.e. writes the snapshot,
    /// once space allows. The old log is removed: it would miss every change until then, and
    /// an open without a log rebuilds from the chunk headers.
    pub(crate) async fn deferred(dir_path: &Path, dir: Rc<File>) -> IndexLog {
        let log = IndexLog {
            path: dir_path.join(INDEX_FILE),
            tmp_path: dir_path.join(INDEX_TMP_FILE),
            dir,
            file: RefCell::new(None),
            end: Cell::new(0),
            records: Cell::new(0),
            broken: Cell::new(false),
            lock: Semaphore::new(1),
        };
        log.poison().await;
        log
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.get()
    }

    pub(crate) fn wants_compaction(&self, live: usize) -> bool {
        let r = self.records.get();
        r >= COMPACT_MIN_RECORDS && r >= 4 * live as u64
    }

    /// Appends one record; with `sync` it is durable on return.
    pub(crate) async fn append(&self, rec: &LogRecord, sync: bool) -> io::Result<()> {
        let _guard = self.lock.lock().await;
        if self.broken.get() {
            return Err(io::Error::other("index log is broken"));
        }
        let mut buf = Vec::with_capacity(96);
        index_codec::encode_record(rec, &mut buf);
        let len = buf.len() as u64;
        let Some(file) = self.file.borrow().clone() else {
            return Err(io::Error::other("index log is not written yet"));
        };
        let at = self.end.get();
        let (res, _) = file.write_all_at(buf, at).await;
        if let Err(e) = res {
            self.poison().await;
            return Err(e);
        }
        self.end.set(at + len);
        self.records.set(self.records.get() + 1);
        if sync && let Err(e) = file.sync_data().await {
            self.poison().await;
            return Err(e);
        }
        Ok(())
    }

    /// Replaces the log with a snapshot. `snapshot` is called once the log is exclusively held,
    /// so it sees every in-memory change that any earlier append described.
    pub(crate) async fn compact(
        &self,
        snapshot: impl FnOnce() -> (Vec<u8>, u64),
    ) -> io::Result<()> {
        let _guard = self.lock.lock().await;
        let (bytes, records) = snapshot();
        let end = bytes.len() as u64;
        let file = write_snapshot(&self.tmp_path, &self.path, &self.dir, bytes).await?;
        *self.file.borrow_mut() = Some(Rc::new(file));
        self.end.set(end);
        self.records.set(records);
        self.broken.set(false);
        Ok(())
    }

    /// A log that missed a record must not be trusted at the next open: remove it.
    async fn poison(&self) {
        self.broken.set(true);
        match monoio::fs::remove_file(&self.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot remove a damaged index log; delete it before the next start"
            ),
        }
    }
}

/// Writes `bytes` to `tmp`, syncs, and renames it over `path`. A failed write removes `tmp`, so
/// a full disk is not left fuller. Shared with the commit marks log.
pub(crate) async fn write_snapshot(
    tmp: &Path,
    path: &Path,
    dir: &File,
    bytes: Vec<u8>,
) -> io::Result<File> {
    let res = write_snapshot_file(tmp, path, dir, bytes).await;
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res
}

async fn write_snapshot_file(
    tmp: &Path,
    path: &Path,
    dir: &File,
    bytes: Vec<u8>,
) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .await?;
    let (res, _) = file.write_all_at(bytes, 0).await;
    res?;
    file.sync_all().await?;
    // monoio 0.2.4's `renameat` feature does not build without its legacy driver, so this rare
    // metadata operation (startup and compaction only) is a plain syscall.
    std::fs::rename(tmp, path)?;
    dir.sync_all().await?;
    Ok(file)
}
