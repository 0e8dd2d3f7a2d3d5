//! Periodic snapshots to `backup_dir`: one every `backup_interval`, named
//! `meta-<UTC time>.redb` (so names sort by time), the newest `backup_keep` kept. A failed
//! round is logged and counted (`sixfold_backups_total{result="failed"}`) and the next one
//! tries again; nothing here stops the gateway.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::settings::BackupSettings;
use super::{BackupError, Backups, TEMP_SUFFIX};

const PREFIX: &str = "meta-";
const SUFFIX: &str = ".redb";
/// `20261201T134512Z`.
const STAMP_LEN: usize = 16;
/// How long a shutdown waits for the backup task to notice; a snapshot being written then
/// finishes on the blocking pool by itself.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The running periodic backup task.
pub struct PeriodicBackups {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PeriodicBackups {
    /// Starts the task if `settings` name a directory.
    pub fn start(backups: Backups, settings: &BackupSettings) -> Option<PeriodicBackups> {
        let dir = settings.dir.clone()?;
        let (stop, stopped) = watch::channel(false);
        tracing::info!(
            dir = %dir.display(),
            interval = %humantime::format_duration(settings.interval),
            keep = settings.keep,
            "periodic metadata backups on"
        );
        let task = tokio::spawn(run(backups, dir, settings.interval, settings.keep, stopped));
        Some(PeriodicBackups { stop, task })
    }

    /// Stops the task (bounded by [`STOP_WAIT`]).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_WAIT, self.task).await.is_err() {
            tracing::warn!("the periodic backup task did not stop in time");
        }
    }
}

async fn run(
    backups: Backups,
    dir: PathBuf,
    interval: Duration,
    keep: usize,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = round(&backups, &dir, keep) => {}
        }
    }
}

/// One snapshot, then the pruning of old ones.
async fn round(backups: &Backups, dir: &Path, keep: usize) {
    if let Err(e) = tokio::fs::create_dir_all(dir).await {
        // The snapshot below fails too, and is counted.
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the backup directory");
    }
    let dest = dir.join(file_name(SystemTime::now()));
    match backups.to_file(dest.clone()).await {
        Ok(_) => {}
        Err(BackupError::Busy) => {
            tracing::info!("periodic backup skipped: another backup is being taken");
            return;
        }
        Err(e) => {
            tracing::error!(path = %dest.display(), error = %e, "periodic metadata backup failed");
            return;
        }
    }
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || prune(&dir, keep)).await {
        Ok(Ok(removed)) if removed > 0 => {
            tracing::info!(removed, keep, "removed old metadata backups")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove old metadata backups"),
        Err(e) => tracing::warn!(error = %e, "backup pruning task failed"),
    }
}

/// `meta-20261201T134512Z.redb` for `at` (UTC, to the second).
pub fn file_name(at: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{PREFIX}{stamp}{SUFFIX}")
}

/// Whether `name` is one of the periodic snapshots (nothing else in the directory is touched).
fn is_snapshot_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    else {
        return false;
    };
    stamp.len() == STAMP_LEN
        && stamp.char_indices().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        })
}

/// A temp file of an interrupted snapshot (see [`super::temp_path_for`]).
fn is_stale_temp(name: &str) -> bool {
    name.strip_prefix('.').is_some_and(|rest| {
        rest.starts_with(PREFIX) && rest.ends_with(TEMP_SUFFIX) && rest.contains(SUFFIX)
    })
}

/// Removes all but the newest `keep` snapshots in `dir`, and temp files of interrupted ones.
/// Returns how many snapshots were removed. Runs between rounds, so no temp file is in use.
fn prune(dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut snapshots = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_snapshot_name(&name) {
            snapshots.push(name);
        } else if is_stale_temp(&name) {
            std::fs::remove_file(entry.path())?;
            tracing::info!(path = %entry.path().display(), "removed a stale backup temp file");
        }
    }
    // The stamps sort as the times do.
    snapshots.sort_unstable();
    let excess = snapshots.len().saturating_sub(keep);
    for name in &snapshots[..excess] {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_only_they_are_pruned() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_132_712);
        assert_eq!(file_name(at), "meta-20261201T134512Z.redb");
        assert!(is_snapshot_name(&file_name(at)));
        for other in [
            "meta.redb",
            "meta-20261201T134512Z.redb.bak",
            "meta-2026120xT134512Z.redb",
            "meta-20261201T134512.redb",
            ".meta-20261201T134512Z.redb.12.tmp",
        ] {
            assert!(!is_snapshot_name(other), "{other}");
        }
        assert!(is_stale_temp(".meta-20261201T134512Z.redb.12.tmp"));
        assert!(!is_stale_temp(".bashrc"));

        let dir = tempfile::tempdir().expect("tempdir");
        let mut names: Vec<String> = (0..5)
            .map(|i| file_name(at + Duration::from_secs(i * 3600)))
            .collect();
        for name in names.iter().chain(["notes.txt".to_owned()].iter()) {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let temp = ".meta-20261201T134512Z.redb.99.tmp";
        std::fs::write(dir.path().join(temp), b"x").expect("write");
        assert_eq!(prune(dir.path(), 2).expect("prune"), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let newest = names.split_off(3);
        let mut want = newest;
        want.push("notes.txt".to_owned());
        want.sort();
        assert_eq!(left, want);
    }
}
