//! A real file as the upload's content: read in sections with positioned reads, one reader per
//! section, concatenated in order, so no byte is read twice and the file is never held whole in
//! memory.

use crate::pool::BufPool;
use crate::verify::ExpectedStream;
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// An open source file.
#[derive(Debug)]
pub struct SourceFile {
    path: PathBuf,
    file: Arc<File>,
    size: u64,
}

impl SourceFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(SourceFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            size: meta.len(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The whole file as a stream of pool-sized pieces, read by one task per section.
    /// Must be called inside a tokio runtime.
    pub fn stream(&self, sections: usize, pool: &BufPool) -> ExpectedStream {
        let receivers: Vec<_> = split_sections(self.size, sections)
            .into_iter()
            .map(|(offset, len)| {
                // Capacity 1: each section reader runs at most one piece (plus the one being
                // read) ahead, so memory is bounded by sections x 2 pieces.
                let (tx, rx) = mpsc::channel(1);
                tokio::spawn(read_section(
                    Arc::clone(&self.file),
                    offset,
                    len,
                    pool.clone(),
                    tx,
                ));
                rx
            })
            .collect();
        Box::pin(stream::iter(receivers).flat_map(|rx| {
            stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
        }))
    }
}

/// Contiguous sections covering `size` bytes the way the gateway cuts a file into parts:
/// `ceil(size / count)` bytes each, the last one the rest; no empty sections.
pub fn split_sections(size: u64, count: usize) -> Vec<(u64, u64)> {
    let count = count.max(1) as u64;
    if size == 0 {
        return Vec::new();
    }
    let part = size.div_ceil(count);
    (0..count)
        .map(|i| i * part)
        .take_while(|&off| off < size)
        .map(|off| (off, part.min(size - off)))
        .collect()
}

async fn read_section(
    file: Arc<File>,
    mut offset: u64,
    len: u64,
    pool: BufPool,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let end = offset + len;
    while offset < end {
        let n = (end - offset).min(pool.buf_size() as u64) as usize;
        let mut buf = pool.take();
        let f = Arc::clone(&file);
        // Positioned reads are blocking syscalls: each one runs as its own short blocking task
        // (never a task that waits on the channel, which could starve the blocking pool).
        let read = tokio::task::spawn_blocking(move || {
            f.read_exact_at(&mut buf.as_mut_slice()[..n], offset)
                .map(|()| buf)
        })
        .await;
        let item = match read {
            Ok(Ok(mut buf)) => {
                buf.truncate(n);
                Ok(buf.freeze())
            }
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("reading the source at byte {offset}: {e}"),
            )),
            Err(join) => Err(io::Error::other(format!("source reader failed: {join}"))),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            // The consumer is gone (upload over) or the read failed: stop reading.
            return;
        }
        offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sections_cover_the_file_like_the_gateway_parts() {
        assert_eq!(split_sections(0, 6), vec![]);
        assert_eq!(
            split_sections(5, 6),
            vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]
        );
        assert_eq!(
            split_sections(60, 6),
            (0..6).map(|i| (i * 10, 10)).collect::<Vec<_>>()
        );
        assert_eq!(
            split_sections(61, 6),
            vec![(0, 11), (11, 11), (22, 11), (33, 11), (44, 11), (55, 6)]
        );
        assert_eq!(split_sections(10, 1), vec![(0, 10)]);
        assert_eq!(split_sections(10, 0), vec![(0, 10)]);
        for (size, n) in [(1u64 << 30, 6), (12_345_679, 6), (7, 3)] {
            let s = split_sections(size, n);
            assert_eq!(s.iter().map(|x| x.1).sum::<u64>(), size);
            for w in s.windows(2) {
                assert_eq!(w[0].0 + w[0].1, w[1].0);
            }
        }
    }

    #[test]
    fn stream_returns_the_file_in_order() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        tmp.write_all(&data).unwrap();
        tmp.flush().unwrap();
        let src = SourceFile::open(tmp.path()).unwrap();
        assert_eq!(src.size(), data.len() as u64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (sections, piece) in [(6, 4096), (1, 1 << 20), (4, 1000)] {
            let pool = BufPool::new(piece, 4);
            let got: Vec<u8> = rt.block_on(async {
                let mut s = src.stream(sections, &pool);
                let mut out = Vec::new();
                while let Some(p) = s.next().await {
                    let p = p.unwrap();
                    assert!(p.len() <= piece);
                    out.extend_from_slice(&p);
                }
                out
            });
            assert_eq!(got, data, "sections {sections}, piece {piece}");
        }
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = SourceFile::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
