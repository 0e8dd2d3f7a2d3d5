//! The id of the cluster this node joined, kept in `<data-dir>/cluster_id` (one hyphenated
//! UUID and a newline). The gateway tells it at the first registration that finds the node new
//! and empty (or known to it); the node reports it ever after, so that a gateway whose metadata
//! is not the one this node's chunks were written under (lost, re-created, another cluster's)
//! knows not to touch them. Once stored it is never replaced by the node itself.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

pub const CLUSTER_ID_FILE: &str = "cluster_id";

/// The stored id, shared by the registration thread and the report builder.
#[derive(Debug)]
pub struct ClusterId {
    path: PathBuf,
    id: Mutex<Option<Uuid>>,
}

impl ClusterId {
    /// Reads the data dir's id, if any. A file that does not hold a UUID is an error: the node
    /// must not guess which cluster its chunks belong to.
    pub fn load(data_dir: &Path) -> io::Result<ClusterId> {
        let path = data_dir.join(CLUSTER_ID_FILE);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(Uuid::parse_str(text.trim()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a cluster id: {e}", path.display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(ClusterId {
            path,
            id: Mutex::new(id),
        })
    }

    pub fn get(&self) -> Option<Uuid> {
        *self.id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `id` if the node has none yet (durably: temp file, fsync, rename, fsync of the
    /// directory). Returns whether it was stored; an id already kept stays.
    pub fn adopt(&self, id: Uuid) -> io::Result<bool> {
        let mut current = self.id.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_some() {
            return Ok(false);
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{}", id.hyphenated())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        *current = Some(id);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_is_kept_across_loads_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = ClusterId::load(dir.path()).unwrap();
        assert_eq!(c.get(), None);
        let a = Uuid::from_u128(1);
        assert!(c.adopt(a).unwrap());
        assert!(!c.adopt(Uuid::from_u128(2)).unwrap());
        assert_eq!(c.get(), Some(a));
        assert_eq!(ClusterId::load(dir.path()).unwrap().get(), Some(a));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "not an id\n").unwrap();
        assert!(ClusterId::load(dir.path()).is_err());
    }
}
