//! The node's persistent identity: a UUID in `<data-dir>/node-id`. The node's certificate
//! names it (`urn:sixfold:node:<id>`) and is the authority; the file records which id the
//! data dir's chunks belong to. The gateway keys placement on it, so it must never change
//! silently: a file that exists but does not hold a UUID, or holds another id than the
//! certificate, is an error, not a reason to make a new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// File name of the node id inside the data dir.
pub const NODE_ID_FILE: &str = "node-id";

#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} does not hold a node id (a UUID); it is kept as is so the node's identity cannot \
         change by accident — fix or remove it",
        path.display()
    )]
    Invalid { path: PathBuf },
    #[error(
        "{} holds node id {in_file}, but the node certificate is issued for {in_cert}: this \
         data dir belongs to another node. Re-issue the certificate for this data dir's id \
         (sixfold-gateway certs issue-node --node-id {in_file} ... --force) or use the data \
         dir of node {in_cert}",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        in_file: Uuid,
        in_cert: Uuid,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NodeIdError + use<> {
    let path = path.to_owned();
    move |source| NodeIdError::Io {
        action,
        path,
        source,
    }
}

/// The id in `data_dir`'s `node-id` file, if there is one.
pub fn read(data_dir: &Path) -> Result<Option<Uuid>, NodeIdError> {
    let path = data_dir.join(NODE_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => match Uuid::parse_str(text.trim()) {
            Ok(id) if !id.is_nil() => Ok(Some(id)),
            _ => Err(NodeIdError::Invalid { path }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// Checks `data_dir`'s id against the certificate's `cert_id`, writing it (and creating
/// `data_dir`) if the data dir has none yet. Returns whether the file was just written.
pub fn adopt(data_dir: &Path, cert_id: Uuid) -> Result<bool, NodeIdError> {
    fs::create_dir_all(data_dir).map_err(io_err("create", data_dir))?;
    match read(data_dir)? {
        Some(in_file) if in_file == cert_id => Ok(false),
        Some(in_file) => Err(NodeIdError::Mismatch {
            path: data_dir.join(NODE_ID_FILE),
            in_file,
            in_cert: cert_id,
        }),
        None => {
            let path = data_dir.join(NODE_ID_FILE);
            write_atomically(
                data_dir,
                &path,
                format!("{}\n", cert_id.hyphenated()).as_bytes(),
            )?;
            Ok(true)
        }
    }
}

/// Reads the node id from `data_dir`, creating it (and `data_dir`) on first start. Returns the
/// id and whether it was just created.
pub fn load_or_create(data_dir: &Path) -> Result<(Uuid, bool), NodeIdError> {
    fs::create_dir_all(data_dir).map_err(io_err("create", data_dir))?;
    let path = data_dir.join(NODE_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = Uuid::parse_str(text.trim())
                .map_err(|_| NodeIdError::Invalid { path: path.clone() })?;
            if id.is_nil() {
                return Err(NodeIdError::Invalid { path });
            }
            Ok((id, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = Uuid::new_v4();
            write_atomically(data_dir, &path, format!("{}\n", id.hyphenated()).as_bytes())?;
            Ok((id, true))
        }
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// temp file + fsync + rename + fsync of the directory: after a crash the id file is either
/// absent or complete, never empty or torn.
fn write_atomically(dir: &Path, path: &Path, contents: &[u8]) -> Result<(), NodeIdError> {
    let tmp = dir.join(format!(".{NODE_ID_FILE}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (first, created) = load_or_create(&data).unwrap();
        assert!(created);
        let (again, created) = load_or_create(&data).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        let text = fs::read_to_string(data.join(NODE_ID_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", first.hyphenated()));
        assert!(!data.join(".node-id.tmp").exists());
    }

    #[test]
    fn hand_written_id_with_whitespace_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let id = "6f1c1d8e-34a9-4b59-9a8b-2f0a1c3d4e5f";
        fs::write(dir.path().join(NODE_ID_FILE), format!("  {id}\r\n")).unwrap();
        let (got, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(got.to_string(), id);
    }

    #[test]
    fn the_certificate_id_is_adopted_once_and_a_different_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let id = Uuid::new_v4();
        assert_eq!(read(&data).unwrap(), None);
        assert!(adopt(&data, id).unwrap(), "written on first start");
        assert!(!adopt(&data, id).unwrap());
        assert_eq!(read(&data).unwrap(), Some(id));
        let other = Uuid::new_v4();
        let err = adopt(&data, other).unwrap_err();
        assert!(
            matches!(err, NodeIdError::Mismatch { in_file, in_cert, .. } if in_file == id && in_cert == other)
        );
        assert!(
            err.to_string().contains(&format!("--node-id {id}")),
            "{err}"
        );
        assert_eq!(read(&data).unwrap(), Some(id), "the file is left alone");
    }

    #[test]
    fn garbage_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NODE_ID_FILE);
        for bad in ["", "not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
            fs::write(&path, bad).unwrap();
            assert!(
                matches!(load_or_create(dir.path()), Err(NodeIdError::Invalid { .. })),
                "{bad:?} accepted"
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
    }
}
