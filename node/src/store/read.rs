//! Reading a chunk range: `ChunkReader` reads the touched blocks with O_DIRECT (a few in
//! flight), verifies each against its crc32c, and yields only verified bytes.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;
use monoio::fs::File;
use monoio::task::JoinHandle;

use super::buffer_pool::{BufferPool, PooledBuf};
use super::chunk_file;
use super::chunk_store::StoreInner;
use super::error::{BlockError, ReadError};
use super::format::{self, ALIGN, BLOCK_SIZE, Layout};
use super::types::{ChunkId, ChunkState};

/// One block being read and verified; its pool buffer is back in the pool when this finishes.
type BlockRead = JoinHandle<Result<Bytes, BlockError>>;

/// A verified stream of one chunk range, as `Bytes` pieces of at most one block, in order.
///
/// Verified bytes leave the pool as soon as each read completes (read-ahead included): the
/// block's buffer is lent out as `Bytes` and the pool gets a replacement at once
/// ([`PooledBuf::lend`]), so a reader whose consumer waits on the network (a client that does
/// not read, a full stream window) never holds pool memory, and other reads and puts can always
/// get buffers. Read-ahead is held as `Bytes`, at most `reads_in_flight` blocks per reader.
pub struct ChunkReader {
    chunk_id: ChunkId,
    pool: BufferPool,
    file: Rc<File>,
    layout: Layout,
    /// crc32c of blocks `first_block..=last_block`.
    crcs: Vec<u32>,
    first_block: u64,
    last_block: u64,
    next_submit: u64,
    next_yield: u64,
    /// Requested body range `[start, end)`.
    start: u64,
    end: u64,
    in_flight: VecDeque<BlockRead>,
    max_in_flight: usize,
    done: bool,
}

impl ChunkReader {
    pub(crate) async fn open(
        store: &Rc<StoreInner>,
        id: ChunkId,
        offset: u64,
        len: u64,
    ) -> Result<ChunkReader, ReadError> {
        let stat = store.stat(&id).ok_or(ReadError::NotFound)?;
        if stat.state != ChunkState::Complete {
            return Err(ReadError::NotComplete {
                durable_len: stat.durable_len,
            });
        }
        let length = stat.meta.length;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= length)
            .ok_or_else(|| {
                ReadError::BadRequest(format!(
                    "range {offset}+{len} outside the chunk's {length} bytes"
                ))
            })?;
        let layout = Layout::for_length(length).map_err(|e| ReadError::Corrupt(e.to_string()))?;
        let file = match chunk_file::open_direct(&store.chunk_path(&id), false).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let (first_block, last_block) = if len == 0 {
            (1, 0)
        } else {
            (offset / BLOCK_SIZE, (end - 1) / BLOCK_SIZE)
        };
        let crcs = if len == 0 {
            Vec::new()
        } else {
            let header = chunk_file::read_header(&file, store.pool()).await?;
            if header.stat != stat {
                return Err(ReadError::Corrupt(
                    "chunk header differs from the index".into(),
                ));
            }
            let all = chunk_file::read_table(
                &file,
                store.pool(),
                &layout,
                layout.block_count,
                header.table_crc32c,
            )
            .await?;
            all[first_block as usize..=last_block as usize].to_vec()
        };
        Ok(ChunkReader {
            chunk_id: id,
            pool: store.pool().clone(),
            file: Rc::new(file),
            layout,
            crcs,
            first_block,
            last_block,
            next_submit: first_block,
            next_yield: first_block,
            start: offset,
            end,
            in_flight: VecDeque::new(),
            max_in_flight: store.config().reads_in_flight,
            done: len == 0,
        })
    }

    /// Body bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        if self.done {
            return 0;
        }
        self.end - self.start.max(self.next_yield * BLOCK_SIZE)
    }

    /// The next verified piece, `None` at the end. After an error (`ChecksumMismatch{block}`,
    /// `Corrupt`, `Io`) the reader is finished: no byte of a bad block is ever returned.
    pub async fn next(&mut self) -> Option<Result<Bytes, BlockError>> {
        if self.done {
            return None;
        }
        if self.in_flight.is_empty() {
            // Nothing in flight: wait for one buffer (this is where readers queue for memory).
            let buf = self.pool.acquire().await;
            self.submit(buf);
        }
        self.submit_ready();
        // Awaited in place and popped only once complete, so a cancelled `next` loses nothing.
        let piece = match self.in_flight.front_mut() {
            Some(h) => h.await,
            None => return None,
        };
        self.in_flight.pop_front();
        self.next_yield += 1;
        if piece.is_err() || self.next_yield > self.last_block {
            self.done = true;
        } else {
            // Keep the read-ahead going while the caller sends this piece.
            self.submit_ready();
        }
        Some(piece)
    }

    /// Submits read-ahead with buffers that are free right now. Never waits while holding
    /// buffers, so readers cannot deadlock each other on the pool.
    fn submit_ready(&mut self) {
        while self.in_flight.len() < self.max_in_flight && self.next_submit <= self.last_block {
            match self.pool.try_acquire() {
                Some(buf) => self.submit(buf),
                None => break,
            }
        }
    }

    fn submit(&mut self, buf: PooledBuf) {
        let block = self.next_submit;
        self.next_submit += 1;
        let check = BlockCheck {
            chunk_id: self.chunk_id,
            block,
            block_len: self.layout.block_len(block) as usize,
            expected: self.crcs[(block - self.first_block) as usize],
            start: self.start,
            end: self.end,
        };
        let aligned = format::round_up(check.block_len as u64, ALIGN) as usize;
        let pos = self.layout.body_offset + block * BLOCK_SIZE;
        let file = self.file.clone();
        self.in_flight.push_back(monoio::spawn(async move {
            let (res, buf) =
                chunk_file::read_exact_direct(&file, buf, pos, check.block_len, aligned).await;
            let wanted = check.verify(res, &buf)?;
            Ok(buf.lend(wanted))
        }));
    }
}

/// What a finished block read is checked against, and which of its bytes are wanted.
struct BlockCheck {
    chunk_id: ChunkId,
    block: u64,
    block_len: usize,
    expected: u32,
    /// Requested body range `[start, end)`.
    start: u64,
    end: u64,
}

impl BlockCheck {
    /// The range of `buf` the caller asked for, once the read succeeded and the block's bytes
    /// match its crc32c.
    fn verify(&self, res: io::Result<()>, buf: &PooledBuf) -> Result<Range<usize>, BlockError> {
        res.map_err(|e| chunk_file::short_read_is_corrupt(e, "body"))?;
        let block = self.block;
        let data = &buf.as_slice()[..self.block_len];
        if sixfold_wire::crc::crc32c(data) != self.expected {
            tracing::warn!(chunk = %self.chunk_id, block, "chunk block checksum mismatch; not served");
            return Err(BlockError::ChecksumMismatch { block });
        }
        let block_start = block * BLOCK_SIZE;
        let lo = (self.start.max(block_start) - block_start) as usize;
        let hi = (self.end.min(block_start + self.block_len as u64) - block_start) as usize;
        Ok(lo..hi)
    }
}
