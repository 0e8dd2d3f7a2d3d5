//! I/O on one chunk file: naming, O_DIRECT open, preallocation, header and crc table blocks,
//! and exact aligned reads.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use monoio::buf::IoBufMut;
use monoio::fs::{File, OpenOptions};

use super::buffer_pool::{BufferPool, PooledBuf};
use super::error::{FileError, PutError};
use super::format::{self, ALIGN, ChunkHeader, HEADER_SIZE, Layout};
use super::types::ChunkId;

const CHUNK_SUFFIX: &str = ".chunk";

pub(crate) fn chunk_path(chunks_dir: &Path, id: &ChunkId) -> PathBuf {
    chunks_dir.join(format!("{}{CHUNK_SUFFIX}", id.to_hex()))
}

/// The chunk id of a chunk file name, or None for any other file.
pub(crate) fn parse_chunk_name(name: &str) -> Option<ChunkId> {
    ChunkId::from_hex(name.strip_suffix(CHUNK_SUFFIX)?)
}

/// Creates (or truncates) a chunk file for O_DIRECT reads and writes.
pub(crate) async fn create_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .await
}

pub(crate) async fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .await
}

/// Opens a directory so it can be fsynced after entries in it change.
pub(crate) async fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .await
}

/// Reserves `len` bytes for the file (and sets its size), so later writes cannot hit ENOSPC
/// and the extents are allocated in one go. Filesystems without fallocate are tolerated.
///
/// This is a plain syscall on the shard thread: monoio 0.2 has no fallocate op. It runs once
/// per chunk and only allocates (unwritten) extents.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate only reads its integer arguments; the fd is open for the call's duration
    // because `file` is borrowed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            tracing::debug!("fallocate unsupported here; chunk not preallocated");
            Ok(())
        }
        _ => Err(e),
    }
}

/// Sets the file size (drops the alignment padding of the last block).
pub(crate) fn set_len(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: ftruncate only reads its integer arguments; `file` keeps the fd open.
    let rc = unsafe { libc::ftruncate(file.as_raw_fd(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) async fn write_header(
    file: &File,
    pool: &BufferPool,
    header: &ChunkHeader,
) -> Result<(), PutError> {
    let mut buf = pool.acquire().await;
    buf.set_len(HEADER_SIZE);
    // Only a put writes headers, and what cannot be encoded is what it was asked to store.
    format::encode_header(header, buf.as_mut_slice())
        .map_err(|e| PutError::BadRequest(e.to_string()))?;
    let (res, _buf) = file.write_all_at(buf, 0).await;
    res?;
    Ok(())
}

pub(crate) async fn read_header(file: &File, pool: &BufferPool) -> Result<ChunkHeader, FileError> {
    let buf = pool.acquire().await;
    let (res, buf) = read_exact_direct(file, buf, 0, HEADER_SIZE, HEADER_SIZE).await;
    res?;
    Ok(format::decode_header(buf.as_slice())?)
}

/// Writes the table entries `crcs` (the pages holding them; the rest of the region is left).
pub(crate) async fn write_table(
    file: &File,
    pool: &BufferPool,
    layout: &Layout,
    crcs: &[u32],
) -> io::Result<()> {
    if crcs.is_empty() {
        return Ok(());
    }
    let mut buf = pool.acquire().await;
    let bytes = format::round_up(crcs.len() as u64 * 4, ALIGN) as usize;
    buf.set_len(bytes);
    buf.as_mut_slice().fill(0);
    format::encode_table(crcs, buf.as_mut_slice());
    let (res, _buf) = file.write_all_at(buf, layout.table_offset).await;
    res
}

/// Reads the first `count` table entries and checks them against the header's table crc.
pub(crate) async fn read_table(
    file: &File,
    pool: &BufferPool,
    layout: &Layout,
    count: u64,
    expected_crc: u32,
) -> Result<Vec<u32>, FileError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let bytes = format::round_up(count * 4, ALIGN) as usize;
    let buf = pool.acquire().await;
    let (res, buf) = read_exact_direct(file, buf, layout.table_offset, bytes, bytes).await;
    res.map_err(|e| short_read_is_corrupt(e, "crc table"))?;
    Ok(format::decode_table(
        buf.as_slice(),
        count as usize,
        expected_crc,
    )?)
}

/// Reads at least `need` bytes at the aligned position `pos` into `buf` (cleared first),
/// submitting aligned reads of up to `aligned_len` bytes. A short read is only accepted at end
/// of file (the last, truncated block); anything shorter than `need` is UnexpectedEof.
pub(crate) async fn read_exact_direct(
    file: &File,
    mut buf: PooledBuf,
    pos: u64,
    need: usize,
    aligned_len: usize,
) -> (io::Result<()>, PooledBuf) {
    buf.clear();
    let mut got = 0usize;
    while got < need {
        let (res, slice) = file
            .read_at(buf.slice_mut(got..aligned_len), pos + got as u64)
            .await;
        buf = slice.into_inner();
        match res {
            Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
            Ok(n) => {
                got += n;
                // A short read that ends mid-page is end of file: the next read would be
                // unaligned, and there is nothing left to read anyway.
                if got < need && !got.is_multiple_of(ALIGN as usize) {
                    return (Err(io::ErrorKind::UnexpectedEof.into()), buf);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// A chunk file shorter than its header promises is damaged, not an I/O failure.
pub(crate) fn short_read_is_corrupt(e: io::Error, what: &str) -> FileError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FileError::Corrupt(format!("chunk file ends inside its {what}"))
    } else {
        FileError::Io(e)
    }
}
