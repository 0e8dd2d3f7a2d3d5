//! The disk's own limit, measured the way `fio --direct=1 --ioengine=io_uring --bs=1M
//! --iodepth=16 --rw=write|read` does: a sequential O_DIRECT write of a temporary file with 16
//! 1 MiB writes in flight (and a data sync at the end, as a node syncs before it acknowledges a
//! part), then the same file read back the same way, then deleted.
//!
//! It runs on a thread of its own with a tokio-uring runtime, before the load starts. Machines
//! are shared and noisy, so only a ratio to a limit measured in the same run means anything.

use crate::datagen::DataGen;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Instant;

/// Block size of every write and read.
pub const BLOCK: usize = 1 << 20;
/// Operations in flight.
pub const QUEUE_DEPTH: usize = 16;
/// O_DIRECT buffer alignment (covers 512-byte and 4 KiB logical blocks).
const ALIGN: usize = 4096;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BaselineConfig {
    /// A directory on the filesystem the nodes write to.
    pub dir: PathBuf,
    /// Bytes written and read (rounded up to whole 1 MiB blocks).
    pub size: u64,
}

/// One direction's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
}

impl Measured {
    fn new(bytes: u64, seconds: f64) -> Self {
        Measured {
            bytes,
            seconds,
            mb_per_s: mb_per_s(bytes, seconds),
        }
    }
}

/// Decimal megabytes per second (as fio's MB/s); 0 when no time passed.
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e6
    } else {
        0.0
    }
}

/// The baseline as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineReport {
    pub dir: String,
    /// Filesystem type of `dir` (e.g. ext4, xfs, tmpfs), as far as it is known.
    pub filesystem: Option<String>,
    pub method: String,
    pub block_size: u64,
    pub queue_depth: u64,
    pub write: Option<Measured>,
    pub read: Option<Measured>,
    pub write_mb_per_s: Option<f64>,
    pub read_mb_per_s: Option<f64>,
    /// Why the baseline could not be measured (e.g. the filesystem refuses O_DIRECT).
    pub error: Option<String>,
    /// Caveats about the figures, e.g. a memory-backed filesystem.
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(
        "the filesystem of {dir} refuses O_DIRECT ({source}); the disk's limit cannot be measured \
         there: give --baseline a directory on the disk the nodes use"
    )]
    DirectIoRefused { dir: String, source: io::Error },
    #[error("cannot create the baseline file {path}: {source}")]
    Create { path: String, source: io::Error },
    #[error("io_uring is not available ({0}); the baseline needs it")]
    Uring(io::Error),
    #[error("O_DIRECT write failed at byte {offset}: {source}")]
    Write { offset: u64, source: io::Error },
    #[error("data sync failed: {0}")]
    Sync(io::Error),
    #[error("O_DIRECT read failed at byte {offset}: {source}")]
    Read { offset: u64, source: io::Error },
    #[error("cannot allocate aligned buffers")]
    Alloc,
    #[error("the baseline thread failed: {0}")]
    Thread(String),
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len, ALIGN).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let ptr = unsafe { alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| AlignedBuf { ptr, len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation) bytes owned by self,
        // and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this size and alignment, freed once.
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, ALIGN),
            )
        }
    }
}

// SAFETY: AlignedBuf owns its allocation exclusively (like a Vec<u8>), so moving it to another
// thread is sound.
unsafe impl Send for AlignedBuf {}

// SAFETY: the pointer is a heap allocation that does not move when the AlignedBuf value moves,
// stays valid until drop, and all `len` bytes are initialised from allocation on.
unsafe impl tokio_uring::buf::IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.len
    }
}

// SAFETY: as for IoBuf; the buffer is always fully initialised so `set_init` has nothing to
// record.
unsafe impl tokio_uring::buf::IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    unsafe fn set_init(&mut self, _pos: usize) {}
}

/// Removes the temporary file however the measurement ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove baseline file {}: {e}", self.0.display());
        }
    }
}

/// The filesystem type of `dir`, from statfs's magic number.
pub fn filesystem_type(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the
    // right type for statfs to fill.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statfs returned 0, so it filled the struct (which was zeroed before anyway).
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    let name = match magic {
        0xEF53 => "ext2/3/4".to_string(),
        0x5846_5342 => "xfs".to_string(),
        0x9123_683E => "btrfs".to_string(),
        0x0102_1994 => "tmpfs".to_string(),
        0x794C_7630 => "overlayfs".to_string(),
        0x2FC1_2FC1 => "zfs".to_string(),
        0xF2F5_2010 => "f2fs".to_string(),
        0x6969 => "nfs".to_string(),
        0x6573_5546 => "fuse".to_string(),
        0x0102_1997 => "9p".to_string(),
        other => format!("unknown (magic {other:#x})"),
    };
    Some(name)
}

/// Measures on a dedicated thread and returns the report; never fails, errors are in it.
pub async fn measure(cfg: BaselineConfig) -> BaselineReport {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_cfg = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name("baseline".into())
        .spawn(move || {
            let _ = tx.send(measure_blocking(&thread_cfg));
        });
    let result = match spawned {
        Ok(_) => rx
            .await
            .unwrap_or_else(|_| Err(BaselineError::Thread("it ended without a result".into()))),
        Err(e) => Err(BaselineError::Thread(e.to_string())),
    };
    report_of(&cfg, result)
}

fn report_of(
    cfg: &BaselineConfig,
    result: Result<(Measured, Measured), BaselineError>,
) -> BaselineReport {
    let filesystem = filesystem_type(&cfg.dir);
    let warning = match filesystem.as_deref() {
        Some("tmpfs") => Some("tmpfs is memory: these figures are not a disk's".to_string()),
        Some("overlayfs") | Some("fuse") | Some("nfs") | Some("9p") => Some(
            "not a local block filesystem: figures may not reflect the disk the nodes use".into(),
        ),
        _ => None,
    };
    let (write, read, error) = match result {
        Ok((w, r)) => (Some(w), Some(r), None),
        Err(e) => (None, None, Some(e.to_string())),
    };
    BaselineReport {
        dir: cfg.dir.display().to_string(),
        filesystem,
        method: "O_DIRECT io_uring sequential, fdatasync after the write".into(),
        block_size: BLOCK as u64,
        queue_depth: QUEUE_DEPTH as u64,
        write_mb_per_s: write.as_ref().map(|m| m.mb_per_s),
        read_mb_per_s: read.as_ref().map(|m| m.mb_per_s),
        write,
        read,
        error,
        warning,
    }
}

/// The measurement itself, on the calling thread (which it turns into a tokio-uring runtime).
pub fn measure_blocking(cfg: &BaselineConfig) -> Result<(Measured, Measured), BaselineError> {
    let blocks = cfg.size.div_ceil(BLOCK as u64).max(1);
    let size = blocks * BLOCK as u64;
    let path = cfg.dir.join(format!(
        ".sixfold-bench-baseline-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let std_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                BaselineError::DirectIoRefused {
                    dir: cfg.dir.display().to_string(),
                    source: e,
                }
            } else {
                BaselineError::Create {
                    path: path.display().to_string(),
                    source: e,
                }
            }
        })?;
    let _cleanup = RemoveOnDrop(path);

    let mut bufs = Vec::with_capacity(QUEUE_DEPTH);
    for i in 0..QUEUE_DEPTH {
        let mut b = AlignedBuf::zeroed(BLOCK).ok_or(BaselineError::Alloc)?;
        // Incompressible data, so a disk or a virtual disk that compresses or deduplicates
        // cannot flatter the figure.
        DataGen::new(0xba5e_11fe ^ i as u64).fill(0, b.as_mut_slice());
        bufs.push(b);
    }

    let runtime = tokio_uring::Runtime::new(tokio_uring::builder().entries(64))
        .map_err(BaselineError::Uring)?;
    runtime.block_on(async move {
        let file = tokio_uring::fs::File::from_std(std_file);
        // Reserve the space first, as a node does when the part length is known. Not every
        // filesystem can; that is fine.
        if let Err(e) = file.fallocate(0, size, 0).await {
            tracing::debug!("fallocate refused, writing without preallocation: {e}");
        }

        let file = &file;
        let start = Instant::now();
        let bufs = run_queue(blocks, bufs, |buf, offset| async move {
            let (res, buf) = file.write_all_at(buf, offset).await;
            (
                res.map_err(|source| BaselineError::Write { offset, source }),
                buf,
            )
        })
        .await?;
        file.sync_data().await.map_err(BaselineError::Sync)?;
        let write = Measured::new(size, start.elapsed().as_secs_f64());

        let start = Instant::now();
        run_queue(blocks, bufs, |buf, offset| async move {
            let (res, buf) = file.read_exact_at(buf, offset).await;
            (
                res.map_err(|source| BaselineError::Read { offset, source }),
                buf,
            )
        })
        .await?;
        let read = Measured::new(size, start.elapsed().as_secs_f64());
        Ok((write, read))
    })
}

/// Runs one operation per block over `blocks` blocks with one buffer per operation in flight,
/// so the queue stays `bufs.len()` deep; returns the buffers.
async fn run_queue<F, Fut>(
    blocks: u64,
    mut bufs: Vec<AlignedBuf>,
    op: F,
) -> Result<Vec<AlignedBuf>, BaselineError>
where
    F: Fn(AlignedBuf, u64) -> Fut,
    Fut: std::future::Future<Output = (Result<(), BaselineError>, AlignedBuf)>,
{
    let mut next = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let mut first_error = None;
    loop {
        while first_error.is_none() && next < blocks {
            let Some(buf) = bufs.pop() else { break };
            in_flight.push(op(buf, next * BLOCK as u64));
            next += 1;
        }
        // Drain everything in flight even after an error: the kernel owns those buffers until
        // their operations complete.
        let Some((res, buf)) = in_flight.next().await else {
            break;
        };
        bufs.push(buf);
        if let Err(e) = res {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(bufs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mb_per_s_is_decimal() {
        assert_eq!(mb_per_s(2_000_000, 1.0), 2.0);
        assert_eq!(mb_per_s(1 << 20, 0.0), 0.0);
    }

    #[test]
    fn measures_a_small_file_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BaselineConfig {
            dir: dir.path().to_path_buf(),
            size: 3 * BLOCK as u64 + 1,
        };
        match measure_blocking(&cfg) {
            Ok((w, r)) => {
                // Rounded up to whole blocks.
                assert_eq!(w.bytes, 4 * BLOCK as u64);
                assert_eq!(r.bytes, 4 * BLOCK as u64);
            }
            // Some test machines put the temp dir on tmpfs of an older kernel, or forbid
            // io_uring; that must come back as the clear error, not anything else.
            Err(BaselineError::DirectIoRefused { .. }) | Err(BaselineError::Uring(_)) => {}
            Err(e) => panic!("unexpected baseline error: {e}"),
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "file removed"
        );
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let cfg = BaselineConfig {
            dir: PathBuf::from("/nonexistent/sixfold-bench"),
            size: BLOCK as u64,
        };
        let report = report_of(&cfg, measure_blocking(&cfg));
        assert!(report.write.is_none() && report.read.is_none());
        let err = report.error.unwrap();
        assert!(err.contains("cannot create the baseline file"), "{err}");
    }
}
