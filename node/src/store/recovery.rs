//! Opening a shard directory: layout, O_DIRECT probe, and the index (loaded from the log and
//! reconciled with the directory, or rebuilt from the chunk headers).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use monoio::fs::File;

use super::buffer_pool::BufferPool;
use super::chunk_file;
use super::error::{FileError, OpenError};
use super::format::{BLOCK_SIZE, HEADER_SIZE};
use super::index_codec;
use super::index_log::{IndexLog, LoadError};
use super::space;
use super::types::{ChunkId, ChunkStat, ChunkState, StoreConfig};

const CHUNKS_DIR: &str = "chunks";
const PROBE_FILE: &str = ".o_direct_probe";
const LOCK_FILE: &str = "lock";

/// Where the index came from when the store was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexSource {
    /// The index log was valid; it was reconciled with the chunk directory.
    Loaded,
    /// The log was missing or damaged (reason given); every chunk header was read.
    Rebuilt { reason: String },
}

/// What opening the store found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    pub index: IndexSource,
    /// Chunks known after opening.
    pub chunks: usize,
    /// Chunk headers read from disk (all of them on a rebuild; only unsure ones otherwise).
    pub headers_read: usize,
    /// Chunk files left in place because their header is unreadable or invalid.
    pub unreadable: usize,
    /// Files removed because their creation never finished (no header was ever written).
    pub removed_unfinished: usize,
}

pub(crate) struct Opened {
    pub(crate) dir_lock: std::fs::File,
    pub(crate) chunks_dir: PathBuf,
    pub(crate) chunks_dir_fd: File,
    pub(crate) pool: BufferPool,
    pub(crate) index: BTreeMap<ChunkId, ChunkStat>,
    pub(crate) log: IndexLog,
    pub(crate) report: OpenReport,
}

pub(crate) async fn open_dir_and_index(
    dir: &Path,
    config: &StoreConfig,
) -> Result<Opened, OpenError> {
    let chunks_dir = dir.join(CHUNKS_DIR);
    // Startup only: plain blocking calls are fine here.
    std::fs::create_dir_all(&chunks_dir)?;
    let dir_lock = lock_dir(dir)?;
    probe_o_direct(&chunks_dir).await?;
    let dir_fd = Rc::new(chunk_file::open_dir(dir).await?);
    let chunks_dir_fd = chunk_file::open_dir(&chunks_dir).await?;
    let pool = BufferPool::new(config.buffer_count, BLOCK_SIZE as usize);

    let on_disk = list_chunk_files(&chunks_dir)?;
    let mut scan = Scan {
        chunks_dir: &chunks_dir,
        pool: &pool,
        headers_read: 0,
        unreadable: 0,
        removed_unfinished: 0,
    };
    let (index, source) = match IndexLog::load(dir).await {
        Ok(records) => {
            let mut index = BTreeMap::new();
            index_codec::replay(&records, &mut index);
            reconcile(&mut index, &on_disk, &mut scan).await;
            (index, IndexSource::Loaded)
        }
        Err(e) => {
            let reason = e.to_string();
            if !matches!(e, LoadError::Missing) || !on_disk.is_empty() {
                tracing::info!(dir = %dir.display(), %reason, chunks = on_disk.len(), "rebuilding chunk index from chunk headers");
            }
            let mut index = BTreeMap::new();
            for id in &on_disk {
                if let Some(stat) = scan.read_stat(id).await {
                    index.insert(*id, stat);
                }
            }
            (index, IndexSource::Rebuilt { reason })
        }
    };
    if scan.unreadable > 0 {
        tracing::warn!(dir = %dir.display(), files = scan.unreadable, "chunk files with unreadable headers left in place");
    }
    // Start every run from a compact snapshot of exactly what is known now; on a full disk,
    // start without one rather than not at all (reads and deletes need no space).
    let snapshot = index_codec::encode_snapshot(index.values());
    let log = match IndexLog::create(dir, Rc::clone(&dir_fd), snapshot, index.len() as u64).await {
        Ok(log) => log,
        Err(e) if space::is_no_space(&e) => {
            tracing::warn!(
                dir = %dir.display(),
                "no space for the index snapshot: starting without it; it is written once \
                 space is freed (a restart before then rebuilds the index from the chunk headers)"
            );
            IndexLog::deferred(dir, dir_fd).await
        }
        Err(e) => return Err(e.into()),
    };
    let report = OpenReport {
        index: source,
        chunks: index.len(),
        headers_read: scan.headers_read,
        unreadable: scan.unreadable,
        removed_unfinished: scan.removed_unfinished,
    };
    tracing::info!(dir = %dir.display(), ?report, "chunk store open");
    Ok(Opened {
        dir_lock,
        chunks_dir,
        chunks_dir_fd,
        pool,
        index,
        log,
        report,
    })
}

/// Makes a loaded index agree with the directory. The log can lag the chunk files only by the
/// operations in flight at a crash (see STORAGE-FORMAT.md), so: entries without a file are
/// dropped, Writing entries are re-read, and files without an entry are read.
async fn reconcile(
    index: &mut BTreeMap<ChunkId, ChunkStat>,
    on_disk: &BTreeSet<ChunkId>,
    scan: &mut Scan<'_>,
) {
    index.retain(|id, _| on_disk.contains(id));
    let unsure: Vec<ChunkId> = index
        .iter()
        .filter(|(_, s)| s.state == ChunkState::Writing)
        .map(|(id, _)| *id)
        .chain(on_disk.iter().filter(|id| !index.contains_key(id)).copied())
        .collect();
    for id in unsure {
        match scan.read_stat(&id).await {
            Some(stat) => {
                index.insert(id, stat);
            }
            None => {
                index.remove(&id);
            }
        }
    }
}

struct Scan<'a> {
    chunks_dir: &'a Path,
    pool: &'a BufferPool,
    headers_read: usize,
    unreadable: usize,
    removed_unfinished: usize,
}

impl Scan<'_> {
    /// The stat in a chunk file's header, or None (logged) if it has none usable.
    async fn read_stat(&mut self, id: &ChunkId) -> Option<ChunkStat> {
        let path = chunk_file::chunk_path(self.chunks_dir, id);
        self.headers_read += 1;
        match self.read_header_block(&path).await {
            Ok(HeaderBlock::Header(stat)) if stat.chunk_id == *id => Some(stat),
            Ok(HeaderBlock::Header(stat)) => {
                tracing::warn!(path = %path.display(), header_id = %stat.chunk_id, "chunk header names another chunk; ignored");
                self.unreadable += 1;
                None
            }
            Ok(HeaderBlock::NeverWritten) => {
                // Created, then crashed before its first header write: holds nothing.
                tracing::info!(path = %path.display(), "removing chunk file whose creation never finished");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove unfinished chunk file");
                }
                self.removed_unfinished += 1;
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable chunk header; file ignored");
                self.unreadable += 1;
                None
            }
        }
    }

    async fn read_header_block(&self, path: &Path) -> Result<HeaderBlock, FileError> {
        let file = chunk_file::open_direct(path, false).await?;
        let buf = self.pool.acquire().await;
        let (res, buf) =
            chunk_file::read_exact_direct(&file, buf, 0, HEADER_SIZE, HEADER_SIZE).await;
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let all_zero = buf.as_slice().iter().all(|&b| b == 0);
                return if all_zero {
                    Ok(HeaderBlock::NeverWritten)
                } else {
                    Err(FileError::Corrupt(
                        "chunk file shorter than its header".into(),
                    ))
                };
            }
            Err(e) => return Err(e.into()),
        }
        if buf.as_slice().iter().all(|&b| b == 0) {
            return Ok(HeaderBlock::NeverWritten);
        }
        let header = super::format::decode_header(buf.as_slice())?;
        Ok(HeaderBlock::Header(header.stat))
    }
}

enum HeaderBlock {
    Header(ChunkStat),
    NeverWritten,
}

fn list_chunk_files(chunks_dir: &Path) -> io::Result<BTreeSet<ChunkId>> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(chunks_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(chunk_file::parse_chunk_name) {
            Some(id) => {
                ids.insert(id);
            }
            None => tracing::debug!(name = ?name, "ignoring non-chunk file in chunk directory"),
        }
    }
    Ok(ids)
}

/// Takes an exclusive advisory lock on `<dir>/lock`, so two stores (in one process or two)
/// never share a shard directory. Released when the returned file is closed.
fn lock_dir(dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    // SAFETY: flock only takes an fd, which `file` keeps open, and integer flags.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(file);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Err(OpenError::Locked {
            dir: dir.to_path_buf(),
        });
    }
    Err(e.into())
}

/// Fails early, with a clear message, on a filesystem without O_DIRECT (e.g. old tmpfs).
async fn probe_o_direct(chunks_dir: &Path) -> Result<(), OpenError> {
    let path = chunks_dir.join(PROBE_FILE);
    let res = chunk_file::create_direct(&path).await;
    let _ = std::fs::remove_file(&path);
    match res {
        Ok(_) => Ok(()),
        // Even an empty file may not fit on a full disk; the first put that has room probes
        // again in effect (it opens with O_DIRECT too).
        Err(e) if space::is_no_space(&e) => {
            tracing::debug!(dir = %chunks_dir.display(), "disk full: O_DIRECT probe skipped");
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(OpenError::NoDirectIo {
            dir: chunks_dir.to_path_buf(),
        }),
        Err(e) => Err(e.into()),
    }
}
