//! `<data-dir>/scrub_last_pass`: when the node's last scrub pass ended, so that the periodic
//! pass keeps its schedule over restarts. One line, `1 <unix_ms>`: format version 1, then the
//! end of the pass in milliseconds since the Unix epoch. Losing the file only moves the next
//! pass to `scrub_interval` after the start.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const LAST_PASS_FILE: &str = "scrub_last_pass";
const VERSION: &str = "1";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(LAST_PASS_FILE)
}

pub fn encode(end_unix_ms: u64) -> String {
    format!("{VERSION} {end_unix_ms}\n")
}

/// The end a file holds; why not.
pub fn parse(text: &str) -> Result<u64, String> {
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(VERSION), Some(ms), None) => ms
            .parse()
            .map_err(|e| format!("{ms:?} is not a time in ms: {e}")),
        (Some(v), _, _) if v != VERSION => Err(format!("unknown format version {v:?}")),
        _ => Err("expected \"1 <unix_ms>\"".into()),
    }
}

/// The kept end, if any. A file that cannot be read is logged and ignored.
pub fn load(path: &Path) -> Option<u64> {
    match std::fs::read_to_string(path) {
        Ok(text) => match parse(&text) {
            Ok(ms) => Some(ms),
            Err(why) => {
                tracing::warn!(path = %path.display(), %why, "ignoring the scrub's last pass file");
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the scrub's last pass file");
            None
        }
    }
}

/// Writes `end_unix_ms` (temp file, fsync, rename).
pub fn store(path: &Path, end_unix_ms: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(encode(end_unix_ms).as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_round_trips_and_bad_files_are_refused() {
        assert_eq!(parse(&encode(1_234)), Ok(1_234));
        assert!(parse("2 5").unwrap_err().contains("version"));
        assert!(parse("1 x").is_err());
        assert!(parse("1").is_err());
        assert!(parse("1 5 6").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(load(&p), None);
        store(&p, 99).unwrap();
        assert_eq!(load(&p), Some(99));
        std::fs::write(&p, "junk").unwrap();
        assert_eq!(load(&p), None);
    }
}
