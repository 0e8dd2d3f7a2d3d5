//! The gateway's persistent identity: a UUID in `<data-dir>/gateway-id`, made on first start.
//! With several gateways over one shared metadata store it names the gateway in its liveness
//! record, its job leases and the upload sessions it writes, so that a restart of the same
//! gateway is recognised as such (its old sessions are its own leftovers) and the others know
//! whose sessions to leave alone. A file that exists but does not hold a UUID is an error, not
//! a reason to make a new identity.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// File name of the gateway id inside the data dir.
pub const GATEWAY_ID_FILE: &str = "gateway-id";

#[derive(Debug, thiserror::Error)]
pub enum GatewayIdError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} does not hold a gateway id (a UUID); it is kept as is so the gateway's identity \
         cannot change by accident — fix or remove it",
        path.display()
    )]
    Invalid { path: PathBuf },
}

/// The id in `data_dir`'s `gateway-id` file, written (exclusively, then synced) if there is
/// none yet.
pub fn load_or_create(data_dir: &Path) -> Result<Uuid, GatewayIdError> {
    let path = data_dir.join(GATEWAY_ID_FILE);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| GatewayIdError::Io {
            action,
            path,
            source,
        }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            return match Uuid::parse_str(text.trim()) {
                Ok(id) if !id.is_nil() => Ok(id),
                _ => Err(GatewayIdError::Invalid { path }),
            };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", &path)(e)),
    }
    let id = Uuid::new_v4();
    // Written under a temporary name and linked into place, so a crash leaves either no file
    // or a whole one; of two starts racing, the first link wins and both read it.
    let tmp = data_dir.join(format!("{GATEWAY_ID_FILE}.{}.tmp", Uuid::new_v4()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(format!("{id}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(dir) = fs::File::open(data_dir) {
                let _ = dir.sync_all();
            }
            Ok(id)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(data_dir),
        Err(e) => Err(io("link", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("first");
        assert_eq!(load_or_create(dir.path()).expect("again"), first);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(GATEWAY_ID_FILE)]);
    }

    #[test]
    fn a_file_that_is_not_an_id_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(GATEWAY_ID_FILE), "garbage").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(GatewayIdError::Invalid { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.path().join(GATEWAY_ID_FILE)).expect("read"),
            "garbage"
        );
    }
}
