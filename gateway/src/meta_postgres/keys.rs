//! Access keys (see `crate::meta::keys`).

use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::auth::{AccessKey, KeyId};
use crate::meta::MetaError;
use crate::meta::codec::{decode, encode};
use crate::meta::tables::ACCESS_KEYS_NAME;

fn decode_key(bytes: &[u8]) -> Result<AccessKey, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::insert_key`].
    pub async fn insert_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        let value = encode(key).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?;
        pg_write!(self, MetaError, |tx| {
            if !tx
                .insert_new(Table::AccessKeys, key.id.as_str().as_bytes(), &value)
                .await?
            {
                return Err(MetaError::Conflict(format!("access key {} exists", key.id)));
            }
            Ok(())
        })
    }

    /// See [`crate::meta::Meta::insert_first_key`].
    pub async fn insert_first_key(&self, key: &AccessKey) -> Result<bool, MetaError> {
        let value = encode(key).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?;
        pg_write!(self, MetaError, |tx| {
            if !tx.is_empty(Table::AccessKeys).await? {
                return Ok(false);
            }
            tx.put(Table::AccessKeys, key.id.as_str().as_bytes(), &value)
                .await?;
            Ok(true)
        })
    }

    /// See [`crate::meta::Meta::get_key`].
    pub async fn get_key(&self, id: &KeyId) -> Result<Option<AccessKey>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            match tx.get(Table::AccessKeys, id.as_str().as_bytes()).await? {
                Some(v) => Ok(Some(decode_key(&v)?)),
                None => Ok(None),
            }
        })
    }

    /// See [`crate::meta::Meta::list_keys`].
    pub async fn list_keys(&self) -> Result<Vec<AccessKey>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            tx.all(Table::AccessKeys)
                .await?
                .iter()
                .map(|(_, v)| decode_key(v))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::key_count`].
    pub async fn key_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::AccessKeys).await?)
        })
    }

    /// See [`crate::meta::Meta::revoke_key`].
    pub async fn revoke_key(
        &self,
        id: &KeyId,
        at_unix_ms: u64,
    ) -> Result<Option<AccessKey>, MetaError> {
        pg_write!(self, MetaError, |tx| {
            let mut key = match tx.get(Table::AccessKeys, id.as_str().as_bytes()).await? {
                None => return Ok(None),
                Some(v) => decode_key(&v)?,
            };
            if key.revoked_unix_ms.is_none() {
                key.revoked_unix_ms = Some(at_unix_ms);
                let value = encode(&key).map_err(MetaError::corrupt(ACCESS_KEYS_NAME))?;
                tx.put(Table::AccessKeys, id.as_str().as_bytes(), &value)
                    .await?;
            }
            Ok(Some(key))
        })
    }
}
