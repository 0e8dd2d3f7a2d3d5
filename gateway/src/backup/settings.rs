//! The periodic backup's configuration: `backup_dir`, `backup_interval`, `backup_keep`.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;

/// Default time between two periodic snapshots.
pub const DEFAULT_BACKUP_INTERVAL: Duration = Duration::from_secs(3600);
/// Default number of periodic snapshots kept.
pub const DEFAULT_BACKUP_KEEP: usize = 24;
/// Shortest interval accepted: snapshot files are named by the second.
pub const MIN_BACKUP_INTERVAL: Duration = Duration::from_secs(1);
/// Most snapshots kept: each is a whole copy of the metadata.
pub const MAX_BACKUP_KEEP: usize = 10_000;

/// Periodic snapshots of the metadata; off without a `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    pub dir: Option<PathBuf>,
    pub interval: Duration,
    pub keep: usize,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            dir: None,
            interval: DEFAULT_BACKUP_INTERVAL,
            keep: DEFAULT_BACKUP_KEEP,
        }
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl BackupSettings {
    /// From the values given (flag or file); an interval or count without a directory is
    /// refused, since it would silently take no backup.
    pub fn resolve(
        dir: Option<PathBuf>,
        interval: Option<Duration>,
        keep: Option<usize>,
    ) -> Result<BackupSettings, ConfigError> {
        if dir.is_none() {
            if interval.is_some() {
                return Err(invalid(
                    "backup_interval",
                    "is set but backup_dir is not: no periodic backup would be taken",
                ));
            }
            if keep.is_some() {
                return Err(invalid(
                    "backup_keep",
                    "is set but backup_dir is not: no periodic backup would be taken",
                ));
            }
        }
        let settings = BackupSettings {
            dir,
            interval: interval.unwrap_or(DEFAULT_BACKUP_INTERVAL),
            keep: keep.unwrap_or(DEFAULT_BACKUP_KEEP),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < MIN_BACKUP_INTERVAL {
            return Err(invalid(
                "backup_interval",
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_BACKUP_INTERVAL)
                ),
            ));
        }
        if !(1..=MAX_BACKUP_KEEP).contains(&self.keep) {
            return Err(invalid(
                "backup_keep",
                format!("must be between 1 and {MAX_BACKUP_KEEP}"),
            ));
        }
        if let Some(dir) = &self.dir
            && dir.as_os_str().is_empty()
        {
            return Err(invalid("backup_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GatewayConfig, ServeArgs};

    fn resolve(text: &str) -> Result<GatewayConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, format!("data_dir = \"/d\"\n{text}\n")).expect("write");
        GatewayConfig::resolve(&ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
    }

    #[test]
    fn off_by_default_and_read_from_the_file_and_flags() {
        let c = resolve("").expect("valid");
        assert_eq!(c.backup, BackupSettings::default());
        assert_eq!(c.backup.dir, None);
        assert_eq!(
            (c.backup.interval, c.backup.keep),
            (Duration::from_secs(3600), 24)
        );

        let c = resolve(
            "backup_dir = \"/backups/sixfold\"\nbackup_interval = \"15m\"\nbackup_keep = 96",
        )
        .expect("valid");
        assert_eq!(
            c.backup,
            BackupSettings {
                dir: Some("/backups/sixfold".into()),
                interval: Duration::from_secs(900),
                keep: 96,
            }
        );

        let args = ServeArgs {
            data_dir: Some("/d".into()),
            backup_dir: Some("/b".into()),
            backup_interval: Some(Duration::from_secs(2)),
            ..ServeArgs::default()
        };
        let c = GatewayConfig::resolve(&args).expect("valid");
        assert_eq!(c.backup.dir, Some(PathBuf::from("/b")));
        assert_eq!(c.backup.interval, Duration::from_secs(2));
        assert_eq!(c.backup.keep, DEFAULT_BACKUP_KEEP);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (text, key, says) in [
            (
                "backup_dir = \"/b\"\nbackup_interval = \"soon\"",
                "backup_interval",
                "",
            ),
            (
                "backup_dir = \"/b\"\nbackup_interval = \"0s\"",
                "backup_interval",
                "at least 1s",
            ),
            (
                "backup_dir = \"/b\"\nbackup_interval = \"500ms\"",
                "backup_interval",
                "at least",
            ),
            (
                "backup_dir = \"/b\"\nbackup_keep = 0",
                "backup_keep",
                "between 1 and",
            ),
            ("backup_dir = \"/b\"\nbackup_keep = -1", "backup_keep", ""),
            (
                "backup_dir = \"/b\"\nbackup_keep = 20000",
                "backup_keep",
                "between 1 and",
            ),
            ("backup_dir = \"\"", "backup_dir", "empty"),
            ("backup_dir = 5", "backup_dir", ""),
            (
                "backup_interval = \"1h\"",
                "backup_interval",
                "backup_dir is not",
            ),
            ("backup_keep = 3", "backup_keep", "backup_dir is not"),
        ] {
            let err = resolve(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
