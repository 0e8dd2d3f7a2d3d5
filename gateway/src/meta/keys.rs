//! Access keys in the metadata: one table, key id -> versioned record.

use redb::{ReadableTable, ReadableTableMetadata};

use super::codec::{decode, encode};
use super::tables::{ACCESS_KEYS, ACCESS_KEYS_NAME};
use super::{Meta, MetaError};
use crate::auth::{AccessKey, KeyId};

impl Meta {
    /// Stores a new key. A key id already in use is a conflict (ids are random; this never
    /// happens unless the random source is broken).
    pub fn insert_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        let value = encode(key).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?;
        self.write(|txn| {
            let mut table = txn.open_table(ACCESS_KEYS)?;
            if table.get(key.id.as_str())?.is_some() {
                return Err(MetaError::Conflict(format!("access key {} exists", key.id)));
            }
            table.insert(key.id.as_str(), value.as_slice())?;
            Ok(())
        })
    }

    /// Stores `key` only if there is no key at all, in one transaction. Returns whether it was
    /// stored.
    pub fn insert_first_key(&self, key: &AccessKey) -> Result<bool, MetaError> {
        let value = encode(key).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?;
        self.write(|txn| {
            let mut table = txn.open_table(ACCESS_KEYS)?;
            if !table.is_empty()? {
                return Ok(false);
            }
            table.insert(key.id.as_str(), value.as_slice())?;
            Ok(true)
        })
    }

    pub fn get_key(&self, id: &KeyId) -> Result<Option<AccessKey>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(ACCESS_KEYS)?;
            let Some(value) = table.get(id.as_str())? else {
                return Ok(None);
            };
            decode(value.value())
                .map(Some)
                .map_err(MetaError::corrupt(ACCESS_KEYS_NAME))
        })
    }

    /// Every key, revoked ones included, in id order.
    pub fn list_keys(&self) -> Result<Vec<AccessKey>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(ACCESS_KEYS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (_, value) = row?;
                out.push(decode(value.value()).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?);
            }
            Ok(out)
        })
    }

    /// Number of keys, revoked ones included.
    pub fn key_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(ACCESS_KEYS)?.len()?))
    }

    /// Marks a key revoked at `at_unix_ms` (a key revoked before keeps its first time). Returns
    /// the key as stored afterwards, or `None` if there is no such key.
    pub fn revoke_key(&self, id: &KeyId, at_unix_ms: u64) -> Result<Option<AccessKey>, MetaError> {
        self.write(|txn| {
            let mut table = txn.open_table(ACCESS_KEYS)?;
            let mut key: AccessKey = match table.get(id.as_str())? {
                None => return Ok(None),
                Some(value) => {
                    decode(value.value()).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?
                }
            };
            if key.revoked_unix_ms.is_none() {
                key.revoked_unix_ms = Some(at_unix_ms);
                let value = encode(&key).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?;
                table.insert(id.as_str(), value.as_slice())?;
            }
            Ok(Some(key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Scope, Secret};
    use std::os::unix::fs::PermissionsExt;

    fn open() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("meta.redb")).expect("meta");
        (dir, meta)
    }

    #[test]
    fn keys_are_stored_listed_and_revoked() {
        let (_dir, meta) = open();
        assert_eq!(meta.key_count().expect("count"), 0);
        let a = AccessKey::generate("a", Scope::Read, 10).expect("key");
        let b = AccessKey::generate("b", Scope::Admin, 11).expect("key");
        meta.insert_key(&a).expect("insert");
        assert!(matches!(meta.insert_key(&a), Err(MetaError::Conflict(_))));
        assert!(!meta.insert_first_key(&b).expect("first"));
        meta.insert_key(&b).expect("insert");
        assert_eq!(meta.get_key(&a.id).expect("get"), Some(a.clone()));
        let mut listed = meta.list_keys().expect("list");
        listed.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(listed, vec![a.clone(), b.clone()]);

        let revoked = meta.revoke_key(&a.id, 20).expect("revoke").expect("known");
        assert_eq!(revoked.revoked_unix_ms, Some(20));
        let again = meta.revoke_key(&a.id, 30).expect("revoke").expect("known");
        assert_eq!(
            again.revoked_unix_ms,
            Some(20),
            "first revocation time kept"
        );
        assert!(
            meta.get_key(&a.id)
                .expect("get")
                .expect("kept")
                .is_revoked()
        );
        let unknown = KeyId::generate().expect("id");
        assert_eq!(meta.revoke_key(&unknown, 1).expect("revoke"), None);
        assert_eq!(meta.get_key(&unknown).expect("get"), None);
        assert_eq!(meta.key_count().expect("count"), 2);
    }

    #[test]
    fn first_key_only_into_an_empty_table() {
        let (_dir, meta) = open();
        let a = AccessKey::generate("a", Scope::Admin, 1).expect("key");
        assert!(meta.insert_first_key(&a).expect("first"));
        let b = AccessKey::generate("b", Scope::Admin, 1).expect("key");
        assert!(!meta.insert_first_key(&b).expect("second"));
        assert_eq!(meta.key_count().expect("count"), 1);
    }

    /// The record as this release writes it: the next release must keep decoding these bytes.
    #[test]
    fn key_record_codec_round_trips_and_is_pinned() {
        let key = AccessKey {
            id: KeyId::parse("SFAAAAAAAAAAAAAAAAAA").expect("id"),
            name: "ci ✓".into(),
            scope: Scope::Write,
            secret: Secret::parse(&"s".repeat(40)).expect("secret"),
            created_unix_ms: 1_700_000_000_000,
            revoked_unix_ms: None,
        };
        let bytes = encode(&key).expect("encode");
        let pinned = "\u{1}{\"id\":\"SFAAAAAAAAAAAAAAAAAA\",\"name\":\"ci ✓\",\"scope\":\"write\",\
            \"secret\":\"ssssssssssssssssssssssssssssssssssssssss\",\"created_unix_ms\":1700000000000}";
        assert_eq!(std::str::from_utf8(&bytes).expect("utf8"), pinned);
        assert_eq!(decode::<AccessKey>(&bytes).expect("decode"), key);
        let revoked = AccessKey {
            revoked_unix_ms: Some(1_700_000_000_001),
            ..key
        };
        let back: AccessKey = decode(&encode(&revoked).expect("encode")).expect("decode");
        assert_eq!(back, revoked);
        // Unknown fields (from a later release) are ignored; a bad id or scope is corrupt.
        let later = pinned.replace("\"scope\"", "\"note\":\"x\",\"scope\"");
        assert!(decode::<AccessKey>(later.as_bytes()).is_ok());
        for bad in [
            pinned.replace("SFAAAAAAAAAAAAAAAAAA", "short"),
            pinned.replace("\"write\"", "\"root\""),
            pinned.replace(&"s".repeat(40), "s"),
        ] {
            assert!(decode::<AccessKey>(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_database_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        drop(Meta::open(&path).expect("meta"));
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(Meta::open(&path).expect("reopen"));
        assert_eq!(mode(&path), 0o600);
    }

    /// A database written before access keys existed has no `access_keys` table: it opens,
    /// and gets one.
    #[test]
    fn a_database_without_the_keys_table_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        {
            let db = redb::Database::create(&path).expect("db");
            let txn = db.begin_write().expect("txn");
            txn.open_table(super::super::tables::SCHEMA)
                .expect("schema")
                .insert("version", 1u64)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let meta = Meta::open(&path).expect("old database opens");
        assert_eq!(meta.key_count().expect("count"), 0);
        assert!(meta.list_keys().expect("list").is_empty());
    }
}
