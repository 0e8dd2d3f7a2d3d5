//! `ChunkStore`: one shard's chunks, its in-memory index, and the operations on them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use monoio::fs::File;

use super::buffer_pool::BufferPool;
use super::chunk_file;
use super::error::{
    ChunkBusy, DeleteError, FileError, MarkError, OpenError, PutError, ReadError, StatError,
    VerifyError,
};
use super::format::{BLOCK_SIZE, Layout};
use super::index_codec::{self, LogRecord};
use super::index_log::IndexLog;
use super::local_sync::{Event, Notify};
use super::marks_log::{self, MarksLog};
use super::put::{PutState, PutWriter};
use super::read::ChunkReader;
use super::recovery::{self, OpenReport};
use super::space::Space;
use super::types::{
    ChunkId, ChunkMeta, ChunkStat, ChunkState, CommitMark, FileFacts, InventoryItem, StoreConfig,
    Usage,
};

/// Directory of shard `n` under a node's data directory.
pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

/// One shard's chunk store. Cheap to clone (a handle); not `Send`: it lives on the shard's
/// monoio runtime and every method must be called there.
#[derive(Clone)]
pub struct ChunkStore {
    inner: Rc<StoreInner>,
}

/// The shard's state. Its fields are private: the index changes only together with the index
/// log ([`StoreInner::record_upsert`], [`StoreInner::record_remove`]), after the chunk header
/// it mirrors is durable, so that the three agree however `put` and `read` use them.
pub(crate) struct StoreInner {
    config: StoreConfig,
    chunks_dir: PathBuf,
    /// The chunks directory, kept open to fsync entry creation and removal.
    chunks_dir_fd: Rc<File>,
    pool: BufferPool,
    index: RefCell<BTreeMap<ChunkId, ChunkStat>>,
    log: IndexLog,
    /// The latest commit mark of each chunk that has one; in step with `marks_log`.
    marks: RefCell<HashMap<ChunkId, CommitMark>>,
    marks_log: MarksLog,
    slots: RefCell<HashMap<ChunkId, Rc<ChunkSlot>>>,
    janitor: Rc<Janitor>,
    report: OpenReport,
    /// Whether the filesystem has room for new chunks.
    space: Space,
    /// Holds the shard directory's exclusive lock for the store's lifetime.
    _dir_lock: std::fs::File,
}

impl ChunkStore {
    /// Opens (creating if needed) the store in `dir` (normally [`shard_dir`]). Loads the index,
    /// or rebuilds it from the chunk headers when it is missing or damaged. Must run on the
    /// shard's monoio runtime (io_uring driver).
    pub async fn open(
        dir: impl Into<PathBuf>,
        config: StoreConfig,
    ) -> Result<ChunkStore, OpenError> {
        validate_config(&config)?;
        let dir = dir.into();
        let opened = recovery::open_dir_and_index(&dir, &config).await?;
        let (marks, marks_log) = open_marks(&dir, &opened.index).await?;
        let janitor = Rc::new(Janitor::default());
        let space = Space::new(opened.chunks_dir.clone());
        let inner = Rc::new(StoreInner {
            config,
            chunks_dir: opened.chunks_dir,
            chunks_dir_fd: Rc::new(opened.chunks_dir_fd),
            pool: opened.pool,
            index: RefCell::new(opened.index),
            log: opened.log,
            marks: RefCell::new(marks),
            marks_log,
            slots: RefCell::new(HashMap::new()),
            janitor: janitor.clone(),
            report: opened.report,
            space,
            _dir_lock: opened.dir_lock,
        });
        monoio::spawn(run_janitor(janitor));
        Ok(ChunkStore { inner })
    }

    /// The shard's `chunks/` directory, for tests that damage chunk files.
    #[cfg(test)]
    pub(crate) fn inner_chunks_dir(&self) -> PathBuf {
        self.inner.chunks_dir().to_path_buf()
    }

    /// How the last open found the index.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The shard's buffer pool (shared by puts and reads).
    pub fn pool(&self) -> &BufferPool {
        &self.inner.pool
    }

    /// Starts (`resume_from == 0`) or resumes (`resume_from` == the chunk's durable length) a put.
    ///
    /// Errors: `Conflict{durable_len}` when the chunk is Complete or `resume_from` is not its
    /// durable length (0 when the chunk is unknown); `Busy` while another put on it is
    /// receiving; `BadRequest` for invalid meta or meta differing from the stored chunk;
    /// `DiskFull` if the space cannot be reserved, or at once, before any file is created,
    /// while the filesystem is full ([`ChunkStore::is_full`]).
    ///
    /// `facts` go into the chunk's header (version 2); a resumed put keeps those the chunk was
    /// created with.
    pub async fn put(
        &self,
        chunk_id: ChunkId,
        meta: ChunkMeta,
        resume_from: u64,
        facts: Option<FileFacts>,
    ) -> Result<PutWriter, PutError> {
        // Measured again only while full, so space freed since is seen by the next put.
        if self.inner.space.is_full() && self.inner.space.check() {
            return Err(PutError::DiskFull);
        }
        let st = PutState::begin(&self.inner, chunk_id, meta, resume_from, facts).await?;
        Ok(PutWriter::new(st))
    }

    /// Streams `len` bytes of a Complete chunk from body offset `offset`, verified block by block.
    pub async fn read(
        &self,
        chunk_id: ChunkId,
        offset: u64,
        len: u64,
    ) -> Result<ChunkReader, ReadError> {
        ChunkReader::open(&self.inner, chunk_id, offset, len).await
    }

    pub fn stat(&self, chunk_id: ChunkId) -> Result<ChunkStat, StatError> {
        self.inner
            .index
            .borrow()
            .get(&chunk_id)
            .copied()
            .ok_or(StatError::NotFound)
    }

    /// Removes a chunk (Complete or Writing). `NotFound` if absent; `Busy` while a put on it
    /// is receiving. Durable on return.
    pub async fn delete(&self, chunk_id: ChunkId) -> Result<(), DeleteError> {
        let inner = &self.inner;
        let _slot = inner.lock_chunk(chunk_id, true).await?;
        if !inner.index.borrow().contains_key(&chunk_id) {
            return Err(DeleteError::NotFound);
        }
        inner
            .remove_chunk_file(chunk_id)
            .await
            .map_err(DeleteError::Io)
    }

    /// Up to `limit` chunks (Complete and Writing) with ids greater than `after`, in id order.
    pub fn list(&self, after: Option<ChunkId>, limit: usize) -> Vec<ChunkStat> {
        let index = self.inner.index.borrow();
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        index
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Records commit marks, durably on `Ok`. Marks for chunks that are not held Complete are
    /// skipped; returns how many were recorded.
    pub async fn mark(&self, marks: &[(ChunkId, CommitMark)]) -> Result<usize, MarkError> {
        let inner = &self.inner;
        let held: Vec<&(ChunkId, CommitMark)> = {
            let index = inner.index.borrow();
            marks
                .iter()
                .filter(|(id, _)| {
                    index
                        .get(id)
                        .is_some_and(|s| s.state == ChunkState::Complete)
                })
                .collect()
        };
        if held.is_empty() {
            return Ok(0);
        }
        let mut records = Vec::with_capacity(held.len() * 57);
        let mut previous = Vec::with_capacity(held.len());
        {
            let mut map = inner.marks.borrow_mut();
            for (id, m) in &held {
                marks_log::encode_record(id, m, &mut records);
                previous.push((*id, map.insert(*id, *m)));
            }
        }
        let live = inner.marks.borrow().len();
        let res = inner
            .marks_log
            .append(records, held.len() as u64, live, || {
                marks_log::encode_snapshot(inner.marks.borrow().iter())
            })
            .await;
        if let Err(e) = res {
            // Not durable: forget them again, so the inventory never reports a mark a restart
            // would lose. The gateway sends them again.
            let mut map = inner.marks.borrow_mut();
            for (id, old) in previous {
                match old {
                    Some(m) => map.insert(id, m),
                    None => map.remove(&id),
                };
            }
            return Err(MarkError::Io(e));
        }
        Ok(held.len())
    }

    /// The latest commit mark of a chunk.
    pub fn mark_of(&self, chunk_id: ChunkId) -> Option<CommitMark> {
        self.inner.marks.borrow().get(&chunk_id).copied()
    }

    /// Up to `limit` chunks after `after`, with the facts of their headers (read again from
    /// disk) and their commit marks: what a rebuild of the gateway's metadata starts from.
    pub async fn inventory(&self, after: Option<ChunkId>, limit: usize) -> Vec<InventoryItem> {
        let stats = self.list(after, limit);
        let mut items = Vec::with_capacity(stats.len());
        for stat in stats {
            let header = match chunk_file::open_direct(
                &self.inner.chunk_path(&stat.chunk_id),
                false,
            )
            .await
            {
                Ok(file) => chunk_file::read_header(&file, self.pool()).await,
                Err(e) => Err(FileError::Io(e)),
            };
            let (header_version, facts) = match header {
                Ok(h) if h.stat == stat => (h.version(), h.facts),
                Ok(_) => (0, None),
                Err(e) => {
                    tracing::warn!(chunk = %stat.chunk_id, error = %e, "cannot read a chunk header for the inventory");
                    (0, None)
                }
            };
            items.push(InventoryItem {
                stat,
                header_version,
                facts,
                mark: self.mark_of(stat.chunk_id),
            });
        }
        items
    }

    /// Reads a Complete chunk whole, checking every block against its table entry and the
    /// whole body against the header's crc; returns its length and crc32c.
    pub async fn verify(&self, chunk_id: ChunkId) -> Result<(u64, u32), VerifyError> {
        match self.verify_paced(chunk_id, async |_| true).await {
            Some(result) => result,
            // `between` never stops it.
            None => Err(VerifyError::NotFound),
        }
    }

    /// [`ChunkStore::verify`], awaiting `between(bytes)` after each block of `bytes` bytes
    /// (the scrub paces itself there); `None` when `between` answered `false` (stop now).
    pub async fn verify_paced(
        &self,
        chunk_id: ChunkId,
        mut between: impl AsyncFnMut(u64) -> bool,
    ) -> Option<Result<(u64, u32), VerifyError>> {
        let stat = match self.stat(chunk_id) {
            Ok(s) => s,
            Err(e) => return Some(Err(e.into())),
        };
        if stat.state != ChunkState::Complete {
            return Some(Err(VerifyError::NotFound));
        }
        let mut reader = match self.read(chunk_id, 0, stat.meta.length).await {
            Ok(r) => r,
            Err(e) => return Some(Err(e.into())),
        };
        let mut crc = 0u32;
        let mut seen = 0u64;
        while let Some(piece) = reader.next().await {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => return Some(Err(e.into())),
            };
            crc = sixfold_wire::crc::crc32c_append(crc, &piece);
            seen += piece.len() as u64;
            if !between(piece.len() as u64).await {
                return None;
            }
        }
        Some(Self::check_whole(&stat, seen, crc))
    }

    fn check_whole(stat: &ChunkStat, seen: u64, crc: u32) -> Result<(u64, u32), VerifyError> {
        if seen != stat.meta.length || crc != stat.crc32c {
            return Err(VerifyError::Corrupt(format!(
                "the body reads back as {seen} bytes with crc32c {crc:08x}, the header says {} bytes, {:08x}",
                stat.meta.length, stat.crc32c
            )));
        }
        Ok((seen, crc))
    }

    /// Whether the filesystem was full when last measured: new puts are refused, reads and
    /// deletes served.
    pub fn is_full(&self) -> bool {
        self.inner.space.is_full()
    }

    /// Measures the filesystem's free space again; returns [`ChunkStore::is_full`].
    pub fn check_space(&self) -> bool {
        self.inner.space.check()
    }

    pub fn usage(&self) -> Usage {
        let index = self.inner.index.borrow();
        let used_bytes = index
            .values()
            .map(|s| Layout::for_length(s.meta.length).map_or(0, |l| l.file_len()))
            .sum();
        Usage {
            used_bytes,
            chunk_count: index.len() as u64,
            in_flight_puts: self.inner.slots.borrow().len() as u64,
        }
    }
}

/// Loads the shard's commit marks, keeps those of chunks the index holds, and rewrites the log
/// as a snapshot of them. A log that cannot be read is moved aside, never deleted: its marks
/// may still be read by hand.
async fn open_marks(
    dir: &Path,
    index: &BTreeMap<ChunkId, ChunkStat>,
) -> Result<(HashMap<ChunkId, CommitMark>, MarksLog), OpenError> {
    let mut marks = match MarksLog::load(dir).await? {
        Ok(loaded) => {
            if loaded.damaged > 0 || loaded.torn_tail > 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    damaged = loaded.damaged,
                    torn_tail_bytes = loaded.torn_tail,
                    "commit marks log had damaged records or a torn last append; kept the rest"
                );
            }
            loaded.marks
        }
        Err(e) => {
            let aside = dir.join(format!(
                "{}.unreadable-{}",
                marks_log::MARKS_FILE,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ));
            tracing::error!(
                dir = %dir.display(),
                error = %e,
                aside = %aside.display(),
                "commit marks log unreadable; moved aside and starting with no marks"
            );
            std::fs::rename(dir.join(marks_log::MARKS_FILE), &aside)?;
            HashMap::new()
        }
    };
    marks.retain(|id, _| index.contains_key(id));
    let dir_fd = Rc::new(chunk_file::open_dir(dir).await?);
    let snapshot = marks_log::encode_snapshot(marks.iter());
    let log = MarksLog::create(dir, dir_fd, snapshot).await?;
    Ok((marks, log))
}

fn validate_config(c: &StoreConfig) -> Result<(), OpenError> {
    if c.buffer_count < 2
        || c.writes_in_flight == 0
        || c.reads_in_flight == 0
        || c.writes_in_flight >= c.buffer_count
        || c.reads_in_flight > c.buffer_count
    {
        return Err(OpenError::InvalidConfig(format!(
            "{c:?}: need buffer_count >= 2, \
             1 <= writes_in_flight < buffer_count, 1 <= reads_in_flight <= buffer_count"
        )));
    }
    Ok(())
}

impl StoreInner {
    pub(crate) fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        chunk_file::chunk_path(&self.chunks_dir, id)
    }

    #[cfg(test)]
    pub(crate) fn chunks_dir(&self) -> &Path {
        &self.chunks_dir
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// What the index knows of a chunk.
    pub(crate) fn stat(&self, id: &ChunkId) -> Option<ChunkStat> {
        self.index.borrow().get(id).copied()
    }

    /// Where interrupted puts are handed to be checkpointed.
    pub(crate) fn janitor(&self) -> Rc<Janitor> {
        self.janitor.clone()
    }

    /// Makes the creation or removal of chunk files durable.
    pub(crate) async fn sync_chunks_dir(&self) -> io::Result<()> {
        self.chunks_dir_fd.sync_all().await
    }

    /// Takes exclusive hold of a chunk for a put or delete. A chunk whose holder is still
    /// receiving data answers `Busy`; one being closed (checkpoint, delete) is waited for.
    pub(crate) async fn lock_chunk(
        self: &Rc<Self>,
        id: ChunkId,
        closing: bool,
    ) -> Result<SlotGuard, ChunkBusy> {
        loop {
            let existing = self.slots.borrow().get(&id).cloned();
            match existing {
                None => {
                    let slot = Rc::new(ChunkSlot::default());
                    slot.closing.set(closing);
                    self.slots.borrow_mut().insert(id, slot.clone());
                    return Ok(SlotGuard {
                        store: self.clone(),
                        id,
                        slot,
                    });
                }
                Some(s) if s.closing.get() => s.released.wait().await,
                Some(_) => return Err(ChunkBusy),
            }
        }
    }

    /// Records a new or changed chunk in memory and in the index log. A failed log append is
    /// logged, not returned: the chunk header is the truth and a damaged log is rebuilt.
    pub(crate) async fn record_upsert(&self, stat: ChunkStat) {
        self.index.borrow_mut().insert(stat.chunk_id, stat);
        self.append_log(LogRecord::Upsert(stat), false).await;
    }

    /// Forgets a chunk; the removal is durable in the log on return (see STORAGE-FORMAT.md).
    /// Its commit mark goes with it (the marks log drops it at its next rewrite).
    pub(crate) async fn record_remove(&self, id: ChunkId) {
        self.index.borrow_mut().remove(&id);
        self.marks.borrow_mut().remove(&id);
        self.append_log(LogRecord::Remove(id), true).await;
    }

    async fn append_log(&self, rec: LogRecord, sync: bool) {
        let live = self.index.borrow().len();
        if self.log.is_broken() || self.log.wants_compaction(live) {
            let res = self
                .log
                .compact(|| {
                    let index = self.index.borrow();
                    (
                        index_codec::encode_snapshot(index.values()),
                        index.len() as u64,
                    )
                })
                .await;
            match res {
                // The snapshot already holds this change.
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "index log compaction failed"),
            }
        }
        if let Err(e) = self.log.append(&rec, sync).await {
            tracing::warn!(error = %e, "index log append failed; the index will be rebuilt at next open");
        }
    }

    /// Unlinks a chunk file, makes that durable, and forgets the chunk.
    pub(crate) async fn remove_chunk_file(&self, id: ChunkId) -> io::Result<()> {
        match monoio::fs::remove_file(self.chunk_path(&id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.sync_chunks_dir().await?;
        self.record_remove(id).await;
        Ok(())
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        self.janitor.close();
    }
}

/// Marks a chunk as held by one put or delete.
#[derive(Default)]
struct ChunkSlot {
    /// The holder no longer receives data (checkpointing or deleting): wait, don't refuse.
    closing: Cell<bool>,
    released: Event,
}

/// Exclusive hold of one chunk; released on drop.
pub(crate) struct SlotGuard {
    store: Rc<StoreInner>,
    id: ChunkId,
    slot: Rc<ChunkSlot>,
}

impl SlotGuard {
    pub(crate) fn set_closing(&self) {
        self.slot.closing.set(true);
    }

    pub(crate) fn store(&self) -> &Rc<StoreInner> {
        &self.store
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut slots = self.store.slots.borrow_mut();
        if slots
            .get(&self.id)
            .is_some_and(|s| Rc::ptr_eq(s, &self.slot))
        {
            slots.remove(&self.id);
        }
        drop(slots);
        self.slot.released.set();
    }
}

/// Checkpoints puts whose writer was dropped without `finish` or `interrupt` (a broken stream):
/// `Drop` cannot await, so the work is queued here and done on the runtime.
#[derive(Default)]
pub(crate) struct Janitor {
    queue: RefCell<VecDeque<PutState>>,
    wake: Notify,
    closed: Cell<bool>,
}

impl Janitor {
    pub(crate) fn push(&self, st: PutState) {
        st.slot().set_closing();
        self.queue.borrow_mut().push_back(st);
        self.wake.notify();
    }

    /// Lets the janitor task end at its next wake-up. It is not woken here: the store may be
    /// dropped outside the runtime, where waking a monoio task panics.
    fn close(&self) {
        self.closed.set(true);
    }
}

async fn run_janitor(j: Rc<Janitor>) {
    loop {
        j.wake.notified().await;
        loop {
            let next = j.queue.borrow_mut().pop_front();
            let Some(st) = next else { break };
            let id = st.chunk_id();
            match st.checkpoint().await {
                Ok(durable) => tracing::debug!(chunk = %id, durable, "dropped put checkpointed"),
                Err(e) => {
                    tracing::warn!(chunk = %id, error = %e, "checkpoint of a dropped put failed")
                }
            }
        }
        if j.closed.get() {
            return;
        }
    }
}

/// Block size of the checksummed body blocks (the unit of resume).
pub const CHUNK_BLOCK_SIZE: u64 = BLOCK_SIZE;
