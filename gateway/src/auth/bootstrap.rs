//! The first admin key of a new data dir: with no key at all there is no way to call
//! `/admin/keys`, so `serve` makes one and leaves its token in a file only the gateway's user
//! can read.

use std::io;
use std::path::{Path, PathBuf};

use super::key::AccessKey;
use super::scope::Scope;
use super::secret_file;
use super::token::{KeyId, RngError};
#[cfg(test)]
use crate::meta::Meta;
use crate::meta::{MetaError, MetaStore, unix_ms_now};

/// Name of the key made on first start.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap-admin";
/// File name of the first admin key's token, in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Why the first admin key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("access keys: {0}")]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Rng(#[from] RngError),
    /// A token file from an earlier key store would be left pointing at nothing.
    #[error(
        "the metadata has no access keys but {} already exists (left from an earlier metadata \
         file?): move it away and start again to get a new first admin key",
        .0.display()
    )]
    TokenFileExists(PathBuf),
    #[error("cannot write the admin token to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What to do with a token file found while the metadata holds no key (the file belonged to a
/// metadata file that was lost or replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleToken {
    /// Refuse to start: the operator decides (`serve`).
    Refuse,
    /// Rename it `<name>.stale-<unix ms>` (kept, never deleted) and write a new one (`dev`).
    MoveAside,
}

/// If the metadata holds no access key at all, makes an admin key named `bootstrap-admin` and
/// writes its token to `token_path` (mode 0600, created exclusively, never overwritten).
/// Returns the new key's id, or `None` when keys existed.
pub async fn ensure_first_admin(
    meta: &dyn MetaStore,
    token_path: &Path,
    stale: StaleToken,
) -> Result<Option<KeyId>, BootstrapError> {
    if meta.key_count().await? > 0 {
        return Ok(None);
    }
    if token_path.exists() {
        if stale == StaleToken::Refuse {
            return Err(BootstrapError::TokenFileExists(token_path.to_path_buf()));
        }
        let mut aside = token_path.as_os_str().to_owned();
        aside.push(format!(".stale-{}", unix_ms_now()));
        let aside = PathBuf::from(aside);
        std::fs::rename(token_path, &aside).map_err(|source| BootstrapError::Write {
            path: aside.clone(),
            source,
        })?;
        tracing::warn!(
            stale = %token_path.display(),
            moved_to = %aside.display(),
            "the metadata has no access keys: the old admin token belonged to an earlier \
             metadata file and was moved aside; a new one is written"
        );
    }
    let key = AccessKey::generate(BOOTSTRAP_KEY_NAME, Scope::Admin, unix_ms_now())?;
    let text = format!("{}\n", key.token().expose());
    // The file first: a key whose token nobody has would lock the operator out for good,
    // while a file without its key is removed again below.
    secret_file::create_new(token_path, text.as_bytes()).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            BootstrapError::TokenFileExists(token_path.to_path_buf())
        } else {
            BootstrapError::Write {
                path: token_path.to_path_buf(),
                source,
            }
        }
    })?;
    match meta.insert_first_key(&key).await {
        Ok(true) => {}
        stored => {
            if let Err(e) = std::fs::remove_file(token_path) {
                tracing::warn!(path = %token_path.display(), error = %e, "cannot remove the unused admin token file");
            }
            stored?;
            // Another key appeared in between: nothing to bootstrap.
            return Ok(None);
        }
    }
    tracing::info!(
        key_id = %key.id,
        path = %token_path.display(),
        "created the first admin key; its token is in the file (mode 0600)"
    );
    Ok(Some(key.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn first_start_makes_one_admin_key_and_its_token_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("meta");
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        let id = ensure_first_admin(&meta, &path, StaleToken::Refuse)
            .await
            .expect("bootstrap")
            .expect("made");
        let text = std::fs::read_to_string(&path).expect("token file");
        let token = Token::parse(&text).expect("token");
        assert_eq!(token.id, id);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = meta.get_key(&id).expect("get").expect("stored");
        assert_eq!(key.scope, Scope::Admin);
        assert_eq!(key.name, BOOTSTRAP_KEY_NAME);
        assert!(key.secret.matches(&token.secret));

        // A second start changes nothing, even with the file gone.
        std::fs::remove_file(&path).expect("rm");
        assert_eq!(
            ensure_first_admin(&meta, &path, StaleToken::Refuse)
                .await
                .expect("again"),
            None
        );
        assert!(!path.exists());
        assert_eq!(meta.key_count().expect("count"), 1);
    }

    #[tokio::test]
    async fn a_stale_token_file_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("meta");
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        std::fs::write(&path, "old\n").expect("write");
        let err = ensure_first_admin(&meta, &path, StaleToken::Refuse)
            .await
            .expect_err("stale file");
        assert!(matches!(err, BootstrapError::TokenFileExists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old\n");
        assert_eq!(meta.key_count().expect("count"), 0);
    }

    #[tokio::test]
    async fn dev_moves_a_stale_token_file_aside_and_writes_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("meta");
        let path = dir.path().join(ADMIN_TOKEN_FILE);
        std::fs::write(&path, "old\n").expect("write");
        let id = ensure_first_admin(&meta, &path, StaleToken::MoveAside)
            .await
            .expect("bootstrap")
            .expect("a new key");
        let token = std::fs::read_to_string(&path).expect("read");
        assert!(token.starts_with(id.as_str()), "{token}");
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&format!("{ADMIN_TOKEN_FILE}.stale-")))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read_to_string(dir.path().join(&aside[0])).expect("read");
        assert_eq!(kept, "old\n", "the old token is kept, not deleted");
    }
}
