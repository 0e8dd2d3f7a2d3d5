//! Holding a body whose length is unknown until its end: the first `memory_limit` bytes stay in
//! memory as the frames that arrived (no copy), as far as the gateway-wide [`SpoolBudget`]
//! allows; the rest goes to a temp file under the spool dir. Once complete, any section of it
//! can be read back, from several tasks at once.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::spool_budget::{Reservation, SpoolBudget};

/// Size of one read from the spool file (and of the write buffer in front of it).
const FILE_IO_SIZE: usize = 256 * 1024;

/// Removes a file when dropped: a spool never outlives its upload.
#[derive(Debug)]
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove spool file");
        }
    }
}

/// A body being spooled.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    name: String,
    memory_limit: u64,
    memory: Vec<Bytes>,
    /// Offset of each memory frame in the body.
    starts: Vec<u64>,
    memory_len: u64,
    /// The share of the gateway's spool memory the frames in `memory` hold.
    reservation: Reservation,
    file: Option<(BufWriter<tokio::fs::File>, RemoveOnDrop)>,
    len: u64,
}

impl Spool {
    /// A spool whose file, if one is needed, is `dir/<name>.spool`; it keeps at most
    /// `memory_limit` bytes in memory, drawn from `budget`.
    pub fn new(dir: &Path, name: &str, memory_limit: u64, budget: Arc<SpoolBudget>) -> Self {
        Spool {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            memory_limit,
            reservation: Reservation::new(budget),
            memory: Vec::new(),
            starts: Vec::new(),
            memory_len: 0,
            file: None,
            len: 0,
        }
    }

    /// Bytes spooled so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the spool has moved on to its file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Appends a frame. Frames stay in memory while this upload's share and the gateway's
    /// budget allow; from the first frame that does not fit on, everything goes to the file.
    pub async fn push(&mut self, frame: Bytes) -> io::Result<()> {
        if frame.is_empty() {
            return Ok(());
        }
        let n = frame.len() as u64;
        if self.file.is_none()
            && self.memory_len + n <= self.memory_limit
            && self.reservation.try_grow(n)
        {
            self.starts.push(self.memory_len);
            self.memory.push(frame);
            self.memory_len += n;
        } else {
            if self.file.is_none() {
                self.file = Some(self.create_file().await?);
            }
            if let Some((writer, _)) = &mut self.file {
                writer.write_all(&frame).await?;
            }
        }
        self.len += n;
        Ok(())
    }

    async fn create_file(&self) -> io::Result<(BufWriter<tokio::fs::File>, RemoveOnDrop)> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let path = self.dir.join(format!("{}.spool", self.name));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let guard = RemoveOnDrop(path);
        Ok((BufWriter::with_capacity(FILE_IO_SIZE, file), guard))
    }

    /// Flushes the file and gives the complete body for reading.
    pub async fn finish(self) -> io::Result<SpooledBody> {
        let file = match self.file {
            Some((mut writer, guard)) => {
                writer.flush().await?;
                let file = writer.into_inner().into_std().await;
                Some((Arc::new(file), guard))
            }
            None => None,
        };
        Ok(SpooledBody {
            memory: self.memory,
            starts: self.starts,
            memory_len: self.memory_len,
            _reservation: self.reservation,
            file,
            len: self.len,
        })
    }
}

/// A complete spooled body. Dropping it removes its file.
#[derive(Debug)]
pub struct SpooledBody {
    memory: Vec<Bytes>,
    starts: Vec<u64>,
    memory_len: u64,
    /// Given back to the budget when the last section reader is done with the body.
    _reservation: Reservation,
    file: Option<(Arc<std::fs::File>, RemoveOnDrop)>,
    len: u64,
}

impl SpooledBody {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader of bytes `[offset, offset + len)`, cut at the end of the body.
    pub fn section(self: &Arc<Self>, offset: u64, len: u64) -> SectionReader {
        let end = offset.saturating_add(len).min(self.len);
        SectionReader {
            body: Arc::clone(self),
            position: offset.min(end),
            end,
        }
    }
}

/// Reads one section of a [`SpooledBody`] as `Bytes`: memory frames are sliced, the file is
/// read in [`FILE_IO_SIZE`] pieces on the blocking pool.
#[derive(Debug)]
pub struct SectionReader {
    body: Arc<SpooledBody>,
    position: u64,
    end: u64,
}

impl SectionReader {
    /// The next piece of the section, `None` at its end.
    pub async fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.position >= self.end {
            return None;
        }
        let body = &self.body;
        if self.position < body.memory_len {
            let i = body.starts.partition_point(|&s| s <= self.position) - 1;
            let frame = &body.memory[i];
            let from = (self.position - body.starts[i]) as usize;
            let to = ((self.end - body.starts[i]) as usize).min(frame.len());
            self.position += (to - from) as u64;
            return Some(Ok(frame.slice(from..to)));
        }
        let Some((file, _)) = &body.file else {
            return Some(Err(io::Error::other("spool file missing")));
        };
        let file = Arc::clone(file);
        let at = self.position - body.memory_len;
        let want =
            usize::try_from(self.end - self.position).map_or(FILE_IO_SIZE, |l| l.min(FILE_IO_SIZE));
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("spool read task failed: {e}"))));
        if let Ok(bytes) = &read {
            self.position += bytes.len() as u64;
        }
        Some(read)
    }
}

/// Removes spool files left by a previous run (a crash mid-upload).
pub fn clear_spool_dir(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "spool") {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    async fn read_section(body: &Arc<SpooledBody>, offset: u64, len: u64) -> Vec<u8> {
        let mut reader = body.section(offset, len);
        let mut out = Vec::new();
        while let Some(piece) = reader.next().await {
            let piece = piece.expect("read");
            assert!(!piece.is_empty());
            out.extend_from_slice(&piece);
        }
        out
    }

    async fn spool(data: &[u8], frame: usize, limit: u64, dir: &Path) -> Spool {
        let mut spool = Spool::new(dir, "upload", limit, SpoolBudget::new(u64::MAX));
        for chunk in data.chunks(frame) {
            spool
                .push(Bytes::copy_from_slice(chunk))
                .await
                .expect("push");
        }
        spool
    }

    #[tokio::test]
    async fn small_body_stays_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = body(100);
        let spool = spool(&data, 7, 1000, dir.path()).await;
        assert!(!spool.on_disk());
        assert_eq!(spool.len(), 100);
        let body = Arc::new(spool.finish().await.expect("finish"));
        assert_eq!(read_section(&body, 0, 100).await, data);
        assert_eq!(read_section(&body, 13, 30).await, &data[13..43]);
        assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none());
    }

    #[tokio::test]
    async fn memory_to_file_switch_keeps_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = body(FILE_IO_SIZE * 2 + 1234);
        // 40 bytes fit in memory: frames 0..3 of 13 bytes (39), then the file.
        let mut spool = spool(&data[..26], 13, 40, dir.path()).await;
        assert!(!spool.on_disk());
        spool
            .push(Bytes::copy_from_slice(&data[26..39]))
            .await
            .expect("push");
        assert!(!spool.on_disk(), "39 bytes still fit");
        spool
            .push(Bytes::copy_from_slice(&data[39..52]))
            .await
            .expect("push");
        assert!(spool.on_disk(), "52 bytes do not");
        for chunk in data[52..].chunks(1000) {
            spool
                .push(Bytes::copy_from_slice(chunk))
                .await
                .expect("push");
        }
        let path = dir.path().join("upload.spool");
        assert!(path.exists());
        let body = Arc::new(spool.finish().await.expect("finish"));
        assert_eq!(body.len(), data.len() as u64);
        let len = data.len() as u64;
        assert_eq!(read_section(&body, 0, len).await, data);
        // Sections across the memory/file seam, inside the file, and past the end.
        assert_eq!(read_section(&body, 30, 20).await, &data[30..50]);
        assert_eq!(read_section(&body, 39, 1).await, &data[39..40]);
        let big = FILE_IO_SIZE as u64 + 17;
        assert_eq!(
            read_section(&body, 100, big).await,
            &data[100..100 + big as usize]
        );
        assert_eq!(
            read_section(&body, len - 5, 100).await,
            &data[data.len() - 5..]
        );
        assert!(read_section(&body, len, 10).await.is_empty());
        drop(body);
        assert!(!path.exists(), "the spool file is removed with the body");
    }

    #[tokio::test]
    async fn an_empty_budget_sends_the_body_to_disk_and_drops_give_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = SpoolBudget::new(100);
        let data = body(300);
        let mut first = Spool::new(dir.path(), "first", 1000, Arc::clone(&budget));
        first
            .push(Bytes::copy_from_slice(&data[..80]))
            .await
            .expect("push");
        assert!(!first.on_disk());
        assert_eq!(budget.free(), 20);
        // The second upload's own share (1000) would allow it; the shared budget does not.
        let mut second = Spool::new(dir.path(), "second", 1000, Arc::clone(&budget));
        for chunk in data.chunks(30) {
            second
                .push(Bytes::copy_from_slice(chunk))
                .await
                .expect("push");
        }
        assert!(second.on_disk(), "30 of the 20 free bytes do not fit");
        let second = Arc::new(second.finish().await.expect("finish"));
        assert_eq!(read_section(&second, 0, 300).await, data);
        assert_eq!(budget.free(), 20, "a body on disk holds no memory");

        let first = Arc::new(first.finish().await.expect("finish"));
        let reader = first.section(0, 80);
        drop(first);
        assert_eq!(budget.free(), 20, "a reader keeps the body and its memory");
        drop(reader);
        assert_eq!(budget.free(), 100);
    }

    #[tokio::test]
    async fn leftovers_are_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.spool"), b"x").expect("write");
        std::fs::write(dir.path().join("keep.txt"), b"x").expect("write");
        assert_eq!(clear_spool_dir(dir.path()).expect("clear"), 1);
        assert!(dir.path().join("keep.txt").exists());
        assert_eq!(
            clear_spool_dir(&dir.path().join("missing")).expect("clear"),
            0
        );
    }
}
