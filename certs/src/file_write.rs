//! Writing small files with the right mode from the start, refusing to clobber unless asked.
//!
//! The mode is given at `open` time so a secret is never readable by others, not even for
//! the instant between create and chmod. Overwrites go through a temporary file and a rename,
//! so an existing file with a looser mode is replaced, not reused, and a crash never leaves a
//! half-written key behind in its place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{CertsError, Result};

/// Who may read a file; decides its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAccess {
    /// Certificates: mode 0644.
    Public,
    /// Private keys and the cluster token: mode 0600.
    Secret,
}

impl FileAccess {
    /// The Unix mode a file of this kind is created with.
    pub const fn mode(self) -> u32 {
        match self {
            FileAccess::Public => 0o644,
            FileAccess::Secret => 0o600,
        }
    }
}

/// Writes `contents` to `path` durably (file and directory entry synced).
///
/// Without `force` an existing file is an [`CertsError::AlreadyExists`] error and nothing is
/// written; with `force` the file is replaced atomically.
pub fn write_file(path: &Path, contents: &[u8], access: FileAccess, force: bool) -> Result<()> {
    if force {
        write_replacing(path, contents, access.mode())?;
    } else {
        write_new(path, contents, access.mode())?;
    }
    sync_parent_dir(path)
}

/// Fails with [`CertsError::AlreadyExists`] for the first of `paths` that exists.
///
/// Operations writing several files call this first so that a refusal leaves nothing
/// half-done.
pub fn ensure_absent(paths: &[&Path]) -> Result<()> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(CertsError::AlreadyExists {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CertsError::io(*path, e)),
        }
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is kept as is.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CertsError::io(dir, e))
}

/// Logs a warning when a secret file can be read by group or others.
pub(crate) fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format_args!("{mode:o}"),
                "secret file is readable by other users; expected mode 600");
        }
    }
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                CertsError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                CertsError::io(path, e)
            }
        })?;
    if let Err(e) = write_and_sync(file, contents) {
        // Leave no truncated file behind: a rerun would refuse to overwrite it.
        let _ = fs::remove_file(path);
        return Err(CertsError::io(path, e));
    }
    Ok(())
}

fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_path(path)?;
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CertsError::io(&tmp, e)),
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| CertsError::io(&tmp, e))?;
    let written = write_and_sync(file, contents)
        .map_err(|e| CertsError::io(&tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| CertsError::io(path, e)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn write_and_sync(mut file: File, contents: &[u8]) -> io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        CertsError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

fn sync_parent_dir(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| CertsError::io(parent, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secret_files_are_created_0600_and_public_0644() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("k");
        let public = dir.path().join("c");
        write_file(&secret, b"s", FileAccess::Secret, false).unwrap();
        write_file(&public, b"p", FileAccess::Public, false).unwrap();
        assert_eq!(mode_of(&secret), 0o600);
        assert_eq!(mode_of(&public), 0o644);
    }

    #[test]
    fn existing_file_is_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_file(&path, b"first", FileAccess::Secret, false).unwrap();
        let err = write_file(&path, b"second", FileAccess::Secret, false).unwrap_err();
        assert!(matches!(&err, CertsError::AlreadyExists { path: p } if p == &path));
        assert_eq!(fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn force_replaces_content_and_tightens_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_file(&path, b"old", FileAccess::Public, false).unwrap();
        write_file(&path, b"new", FileAccess::Secret, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&path), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn ensure_absent_names_the_existing_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        ensure_absent(&[&a, &b]).unwrap();
        fs::write(&b, b"x").unwrap();
        let err = ensure_absent(&[&a, &b]).unwrap_err();
        assert!(matches!(&err, CertsError::AlreadyExists { path } if path == &b));
    }

    #[test]
    fn write_into_missing_dir_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("f");
        let err = write_file(&path, b"x", FileAccess::Public, false).unwrap_err();
        assert!(matches!(&err, CertsError::Io { path: p, .. } if p == &path));
    }
}
