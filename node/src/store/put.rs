//! Writing a chunk: `PutWriter` streams a body into O_DIRECT writes with several in flight,
//! then syncs and marks the chunk Complete; an interrupted put checkpoints whole blocks so a
//! later put can resume exactly there.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Buf, Bytes};
use monoio::fs::File;
use monoio::task::JoinHandle;

use super::chunk_file;
use super::chunk_store::{SlotGuard, StoreInner};
use super::error::{FileError, PutError};
use super::format::{self, BLOCK_SIZE, ChunkHeader, Layout, MAX_CHUNK_LEN};
use super::types::{ChunkId, ChunkMeta, ChunkStat, ChunkState, FileFacts, PutDone};

/// An open put. Feed the body with [`write`](PutWriter::write), then call
/// [`finish`](PutWriter::finish). If the stream breaks, call [`interrupt`](PutWriter::interrupt)
/// (or just drop the writer: the same checkpoint then runs in the background).
pub struct PutWriter {
    st: Option<PutState>,
}

impl PutWriter {
    pub(crate) fn new(st: PutState) -> PutWriter {
        PutWriter { st: Some(st) }
    }

    /// Body bytes accounted for so far, including a resumed durable prefix.
    pub fn received(&self) -> u64 {
        self.st.as_ref().map_or(0, |s| s.received)
    }

    /// The declared body length.
    pub fn length(&self) -> u64 {
        self.st.as_ref().map_or(0, |s| s.meta.length)
    }

    /// Accepts the next piece of the body. Pieces are gathered (as they are, no copy) until a
    /// whole block is there; only then is a pool buffer taken, filled and written. So a put
    /// never holds a buffer while it waits for the network, and a buffer is only ever waited
    /// for behind disk writes, which finish whatever the clients do: a slow or stalled client
    /// cannot starve other puts or reads of buffers. Waits while no pool buffer is free or
    /// the oldest write must finish first: that wait is the backpressure on the stream.
    ///
    /// Fails with `BadRequest` when more bytes arrive than declared and with `DiskFull` (the
    /// partial chunk is removed) when space runs out. After an error, only `interrupt` or
    /// dropping the writer make sense.
    pub async fn write(&mut self, data: Bytes) -> Result<(), PutError> {
        let Some(st) = self.st.as_mut() else {
            return Err(PutError::BadRequest("put is already closed".into()));
        };
        if st.failed {
            return Err(PutError::BadRequest("put failed earlier".into()));
        }
        // Poisoned until this write completes: a write future dropped midway may have lost a
        // block, so the put must not finish; its checkpoint only counts confirmed writes.
        st.failed = true;
        match st.write(data).await {
            Ok(()) => {
                st.failed = false;
                Ok(())
            }
            Err(PutError::DiskFull) => {
                if let Some(st) = self.st.take() {
                    st.remove_partial().await;
                }
                Err(PutError::DiskFull)
            }
            Err(e) => {
                st.failed = true;
                Err(e)
            }
        }
    }

    /// Checks that exactly the declared length arrived, writes the tail, syncs, marks the chunk
    /// Complete and syncs again. The part is durable when this returns `Ok`.
    pub async fn finish(mut self) -> Result<PutDone, PutError> {
        let Some(mut st) = self.st.take() else {
            return Err(PutError::BadRequest("put is already closed".into()));
        };
        let res = if st.failed {
            Err(PutError::BadRequest("put failed earlier".into()))
        } else {
            st.finish().await
        };
        match res {
            Ok(done) => Ok(done),
            Err(PutError::DiskFull) => {
                st.remove_partial().await;
                Err(PutError::DiskFull)
            }
            Err(e) => {
                st.slot().set_closing();
                if let Err(ce) = st.checkpoint().await {
                    tracing::warn!(error = %ce, "checkpoint after a failed finish failed");
                }
                Err(e)
            }
        }
    }

    /// The stream broke: keeps every whole block that is written, syncs, and records the
    /// durable length in the header (state stays Writing). Returns that durable length.
    pub async fn interrupt(mut self) -> Result<u64, PutError> {
        match self.st.take() {
            Some(st) => {
                st.slot().set_closing();
                st.checkpoint().await
            }
            None => Err(PutError::BadRequest("put is already closed".into())),
        }
    }
}

impl Drop for PutWriter {
    fn drop(&mut self) {
        if let Some(st) = self.st.take() {
            if std::thread::panicking() {
                // Unwinding: leave the chunk at its last recorded checkpoint rather than risk
                // a second panic. Resume still works from there.
                return;
            }
            let janitor = st.slot().store().janitor();
            janitor.push(st);
        }
    }
}

/// Everything an open put owns. Kept separate from `PutWriter` so a dropped writer's state can
/// be handed to the janitor.
pub(crate) struct PutState {
    slot: SlotGuard,
    id: ChunkId,
    meta: ChunkMeta,
    /// Written into every header of the chunk (version 2); `None` writes version 1.
    facts: Option<FileFacts>,
    layout: Layout,
    path: PathBuf,
    file: Rc<File>,
    /// This put created the file, so its directory entry must be made durable.
    created: bool,
    /// Durable length in the on-disk header (where this put started, or its last checkpoint).
    recorded_durable: u64,
    /// crc32c of every block submitted so far (block i at index i).
    block_crcs: Vec<u32>,
    /// Body bytes accounted for: the resumed prefix plus everything accepted since.
    received: u64,
    /// Received bytes of the next block (which starts on a block boundary), not yet copied
    /// into a pool buffer: less than a block between calls.
    pending: VecDeque<Bytes>,
    pending_len: usize,
    /// Submitted body writes, oldest first.
    in_flight: VecDeque<JoinHandle<io::Result<()>>>,
    /// Blocks known written, contiguous from block 0.
    confirmed_blocks: u64,
    /// A body write failed: no later block counts as written.
    write_error: bool,
    failed: bool,
}

impl PutState {
    pub(crate) async fn begin(
        store: &Rc<StoreInner>,
        id: ChunkId,
        meta: ChunkMeta,
        resume_from: u64,
        facts: Option<FileFacts>,
    ) -> Result<PutState, PutError> {
        validate_meta(&meta, resume_from)?;
        let layout =
            Layout::for_length(meta.length).map_err(|e| PutError::BadRequest(e.to_string()))?;
        let slot = store.lock_chunk(id, false).await?;
        let existing = store.stat(&id);
        let path = store.chunk_path(&id);
        if resume_from == 0 {
            // A Writing chunk restarts from scratch (possibly with new meta); a Complete one
            // is never overwritten.
            if let Some(s) = existing
                && s.state == ChunkState::Complete
            {
                return Err(if s.meta == meta {
                    PutError::Conflict {
                        durable_len: s.meta.length,
                    }
                } else {
                    PutError::BadRequest("chunk exists with different meta".into())
                });
            }
            return Self::create(store, slot, id, meta, facts, layout, path).await;
        }
        let Some(s) = existing else {
            return Err(PutError::Conflict { durable_len: 0 });
        };
        if s.meta != meta {
            return Err(PutError::BadRequest(
                "meta differs from the stored chunk".into(),
            ));
        }
        if s.state == ChunkState::Complete {
            return Err(PutError::Conflict {
                durable_len: s.meta.length,
            });
        }
        if s.durable_len != resume_from {
            return Err(PutError::Conflict {
                durable_len: s.durable_len,
            });
        }
        Self::resume(store, slot, s, layout, path).await
    }

    async fn create(
        store: &Rc<StoreInner>,
        slot: SlotGuard,
        id: ChunkId,
        meta: ChunkMeta,
        facts: Option<FileFacts>,
        layout: Layout,
        path: PathBuf,
    ) -> Result<PutState, PutError> {
        let file = chunk_file::create_direct(&path).await?;
        let stat = ChunkStat {
            chunk_id: id,
            meta,
            durable_len: 0,
            crc32c: 0,
            state: ChunkState::Writing,
        };
        let header = ChunkHeader {
            stat,
            table_crc32c: format::table_crc(&[]),
            facts: facts.clone(),
        };
        let prepared = async {
            chunk_file::preallocate(&file, layout.file_len())?;
            chunk_file::write_header(&file, store.pool(), &header).await
        }
        .await;
        if let Err(e) = prepared {
            // The file was truncated or never held anything: no partial chunk stays behind.
            drop(file);
            if let Err(re) = store.remove_chunk_file(id).await {
                tracing::warn!(chunk = %id, error = %re, "cannot remove a chunk whose creation failed");
            }
            return Err(e);
        }
        store.record_upsert(stat).await;
        Ok(PutState {
            slot,
            id,
            meta,
            facts,
            layout,
            path,
            file: Rc::new(file),
            created: true,
            recorded_durable: 0,
            block_crcs: Vec::with_capacity(layout.block_count as usize),
            received: 0,
            pending: VecDeque::new(),
            pending_len: 0,
            in_flight: VecDeque::new(),
            confirmed_blocks: 0,
            write_error: false,
            failed: false,
        })
    }

    async fn resume(
        store: &Rc<StoreInner>,
        slot: SlotGuard,
        known: ChunkStat,
        layout: Layout,
        path: PathBuf,
    ) -> Result<PutState, PutError> {
        let file = chunk_file::open_direct(&path, true).await?;
        match Self::load_durable(store, &file, &known, &layout).await {
            Ok(Some((block_crcs, facts))) => Ok(PutState {
                slot,
                id: known.chunk_id,
                meta: known.meta,
                facts,
                layout,
                path,
                file: Rc::new(file),
                created: false,
                recorded_durable: known.durable_len,
                block_crcs,
                received: known.durable_len,
                pending: VecDeque::new(),
                pending_len: 0,
                in_flight: VecDeque::new(),
                confirmed_blocks: known.durable_len / BLOCK_SIZE,
                write_error: false,
                failed: false,
            }),
            // The header is the truth and the index was behind (e.g. a finish whose last sync
            // failed): it has been adopted; the caller retries from what it says.
            Ok(None) => Err(PutError::Conflict {
                durable_len: store.stat(&known.chunk_id).map_or(0, |s| s.durable_len),
            }),
            Err(FileError::Corrupt(why)) => {
                // Nothing verifiable to resume from: have the client start over (a put from 0
                // recreates the file).
                tracing::warn!(chunk = %known.chunk_id, %why, "cannot resume a damaged chunk");
                Err(PutError::Conflict { durable_len: 0 })
            }
            Err(FileError::Io(e)) => Err(e.into()),
        }
    }

    /// The crcs of the durable blocks, verified, and the facts the chunk was created with;
    /// None if the header differs from `known`.
    async fn load_durable(
        store: &Rc<StoreInner>,
        file: &File,
        known: &ChunkStat,
        layout: &Layout,
    ) -> Result<Option<(Vec<u32>, Option<FileFacts>)>, FileError> {
        let header = chunk_file::read_header(file, store.pool()).await?;
        if header.stat != *known {
            store.record_upsert(header.stat).await;
            return Ok(None);
        }
        let blocks = known.durable_len / BLOCK_SIZE;
        let mut block_crcs = Vec::with_capacity(layout.block_count as usize);
        block_crcs.extend(
            chunk_file::read_table(file, store.pool(), layout, blocks, header.table_crc32c).await?,
        );
        if format::combine_block_crcs(&block_crcs, layout) != known.crc32c {
            return Err(FileError::Corrupt(
                "crc table does not match the header's body crc".into(),
            ));
        }
        Ok(Some((block_crcs, header.facts)))
    }

    pub(crate) fn chunk_id(&self) -> ChunkId {
        self.id
    }

    pub(crate) fn slot(&self) -> &SlotGuard {
        &self.slot
    }

    fn store(&self) -> &Rc<StoreInner> {
        self.slot.store()
    }

    async fn write(&mut self, data: Bytes) -> Result<(), PutError> {
        let len = data.len() as u64;
        if len > self.meta.length - self.received {
            return Err(PutError::BadRequest(format!(
                "body longer than the declared {} bytes",
                self.meta.length
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.received += len;
        self.pending_len += data.len();
        self.pending.push_back(data);
        while self.pending_len >= BLOCK_SIZE as usize {
            self.submit_block(BLOCK_SIZE as usize).await?;
        }
        Ok(())
    }

    /// Copies the first `n` pending bytes (a whole block, or the short last one) into a pool
    /// buffer (padded to alignment) and submits its write without waiting for it, after
    /// waiting for the oldest write if the in-flight limit is reached.
    async fn submit_block(&mut self, n: usize) -> Result<(), PutError> {
        if n == 0 {
            return Ok(());
        }
        let mut buf = self.store().pool().acquire().await;
        let mut crc = 0u32;
        let mut left = n;
        while left > 0 {
            let Some(mut piece) = self.pending.pop_front() else {
                break;
            };
            let take = piece.len().min(left);
            let copied = buf.extend_from_slice(&piece[..take]);
            crc = sixfold_wire::crc::crc32c_append(crc, &piece[..copied]);
            left -= copied;
            self.pending_len -= copied;
            piece.advance(copied);
            if !piece.is_empty() {
                self.pending.push_front(piece);
            }
            if copied < take {
                break;
            }
        }
        if left > 0 {
            return Err(PutError::Corrupt(format!(
                "internal: a block of {n} bytes did not fit its {} byte buffer",
                buf.capacity()
            )));
        }
        let block = self.block_crcs.len() as u64;
        self.block_crcs.push(crc);
        buf.pad_to_alignment();
        while self.in_flight.len() >= self.store().config().writes_in_flight {
            self.await_oldest().await?;
        }
        let file = self.file.clone();
        let pos = self.layout.body_offset + block * BLOCK_SIZE;
        self.in_flight.push_back(monoio::spawn(async move {
            // The buffer goes back to the pool as soon as the write completes, not when the put
            // gets round to awaiting this handle.
            let (res, _buf) = file.write_all_at(buf, pos).await;
            res
        }));
        Ok(())
    }

    async fn await_oldest(&mut self) -> Result<(), PutError> {
        let Some(h) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match h.await {
            Ok(()) if !self.write_error => {
                self.confirmed_blocks += 1;
                Ok(())
            }
            Ok(()) => Ok(()),
            Err(e) => {
                self.write_error = true;
                Err(e.into())
            }
        }
    }

    async fn drain(&mut self) -> Result<(), PutError> {
        let mut first_err = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.await_oldest().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn finish(&mut self) -> Result<PutDone, PutError> {
        if self.received != self.meta.length {
            return Err(PutError::BadRequest(format!(
                "body ended after {} of {} bytes",
                self.received, self.meta.length
            )));
        }
        self.submit_block(self.pending_len).await?;
        self.drain().await?;
        if !self.meta.length.is_multiple_of(format::ALIGN) {
            chunk_file::set_len(&self.file, self.layout.file_len())?;
        }
        let stat = self.persist(self.meta.length, ChunkState::Complete).await?;
        Ok(PutDone {
            length: stat.meta.length,
            crc32c: stat.crc32c,
        })
    }

    /// Writes the table, syncs the data, writes the header for `durable` bytes in `state`,
    /// syncs again and records the new stat. The first sync orders body and table before the
    /// header, so a header never claims bytes that are not on disk.
    async fn persist(&mut self, durable: u64, state: ChunkState) -> Result<ChunkStat, PutError> {
        let blocks = format::blocks_for(durable) as usize;
        let crcs = &self.block_crcs[..blocks];
        let store = self.slot.store().clone();
        chunk_file::write_table(&self.file, store.pool(), &self.layout, crcs).await?;
        self.file.sync_data().await?;
        let stat = ChunkStat {
            chunk_id: self.id,
            meta: self.meta,
            durable_len: durable,
            crc32c: format::combine_block_crcs(crcs, &self.layout),
            state,
        };
        let header = ChunkHeader {
            stat,
            table_crc32c: format::table_crc(crcs),
            facts: self.facts.clone(),
        };
        chunk_file::write_header(&self.file, store.pool(), &header).await?;
        self.file.sync_data().await?;
        if self.created {
            store.sync_chunks_dir().await?;
            self.created = false;
        }
        self.recorded_durable = durable;
        store.record_upsert(stat).await;
        Ok(stat)
    }

    /// Makes every whole block written so far durable and records it (state stays Writing).
    pub(crate) async fn checkpoint(mut self) -> Result<u64, PutError> {
        self.pending.clear();
        // Failures only shorten the durable prefix; they are already counted.
        let _ = self.drain().await;
        let whole_blocks = self.meta.length / BLOCK_SIZE;
        let durable = self.confirmed_blocks.min(whole_blocks) * BLOCK_SIZE;
        if durable <= self.recorded_durable && !self.created {
            return Ok(self.recorded_durable);
        }
        match self.persist(durable, ChunkState::Writing).await {
            Ok(_) => Ok(durable),
            Err(PutError::DiskFull) => {
                self.remove_partial().await;
                Err(PutError::DiskFull)
            }
            Err(e) => Err(e),
        }
    }

    /// Disk full: no partial chunk may stay behind.
    async fn remove_partial(mut self) {
        self.pending.clear();
        let _ = self.drain().await;
        let store = self.slot.store().clone();
        tracing::warn!(chunk = %self.id, path = %self.path.display(), "disk full; removing partial chunk");
        if let Err(e) = store.remove_chunk_file(self.id).await {
            tracing::warn!(chunk = %self.id, error = %e, "cannot remove partial chunk after disk full");
        }
    }
}

fn validate_meta(meta: &ChunkMeta, resume_from: u64) -> Result<(), PutError> {
    if meta.part_count == 0 || meta.part_index >= meta.part_count {
        return Err(PutError::BadRequest(format!(
            "part index {} out of range for {} parts",
            meta.part_index, meta.part_count
        )));
    }
    if meta.length > MAX_CHUNK_LEN {
        return Err(PutError::BadRequest(format!(
            "chunk length {} exceeds the maximum {MAX_CHUNK_LEN}",
            meta.length
        )));
    }
    if meta.file_offset.checked_add(meta.length).is_none() {
        return Err(PutError::BadRequest(
            "file offset + length overflows".into(),
        ));
    }
    if resume_from > meta.length {
        return Err(PutError::BadRequest(format!(
            "resume offset {resume_from} beyond length {}",
            meta.length
        )));
    }
    Ok(())
}
