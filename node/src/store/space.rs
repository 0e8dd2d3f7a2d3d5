//! Whether a shard's filesystem has room for new chunks. A shard whose filesystem is full is
//! read-only for new puts (they answer `DiskFull` before any file is created) and still serves
//! reads and deletes; it takes puts again as soon as space comes back (a delete, or an operator
//! freeing space), found by re-measuring when a put arrives and on every stats refresh.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};

use super::format::{ALIGN, HEADER_SIZE};

/// Below this many free bytes the shard takes no new chunk: the smallest chunk file (a header,
/// a crc table and one aligned body block) would not fit.
pub const MIN_FREE_BYTES: u64 = HEADER_SIZE as u64 + 2 * ALIGN;

/// The full/not-full state of one shard's filesystem.
pub(crate) struct Space {
    dir: PathBuf,
    full: Cell<bool>,
}

impl Space {
    /// Measures `dir`'s filesystem now.
    pub(crate) fn new(dir: PathBuf) -> Space {
        let space = Space {
            dir,
            full: Cell::new(false),
        };
        space.check();
        space
    }

    /// The state as last measured.
    pub(crate) fn is_full(&self) -> bool {
        self.full.get()
    }

    /// Measures again and returns whether the filesystem is full; a change is logged. A failed
    /// measurement keeps the last state: puts still fail cleanly with `DiskFull` on ENOSPC.
    pub(crate) fn check(&self) -> bool {
        let available = match available_bytes(&self.dir) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot measure free space");
                return self.full.get();
            }
        };
        let full = is_full(available);
        if full != self.full.replace(full) {
            if full {
                tracing::warn!(
                    dir = %self.dir.display(),
                    available,
                    "disk full: read-only for new parts; reads and deletes are still served"
                );
            } else {
                tracing::info!(
                    dir = %self.dir.display(),
                    available,
                    "disk has room again: taking new parts"
                );
            }
        }
        full
    }
}

/// The rule: fewer than [`MIN_FREE_BYTES`] available.
pub(crate) fn is_full(available: u64) -> bool {
    available < MIN_FREE_BYTES
}

/// Whether an I/O error means the filesystem (or the quota) is full.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Bytes an unprivileged writer can still allocate on `path`'s filesystem.
// statvfs field widths differ between targets (u32 on some 32-bit ones).
#[allow(clippy::useless_conversion)]
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string alive for the call; `st` is a valid out
    // pointer that statvfs fills completely on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_below_the_smallest_chunk_file() {
        assert!(is_full(0));
        assert!(is_full(MIN_FREE_BYTES - 1));
        assert!(!is_full(MIN_FREE_BYTES));
        assert!(!is_full(u64::MAX));
    }

    #[test]
    fn no_space_errors_are_recognised() {
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(libc::EIO)));
    }

    #[test]
    fn a_real_directory_has_a_measure() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(available_bytes(dir.path()).is_ok());
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }
}
