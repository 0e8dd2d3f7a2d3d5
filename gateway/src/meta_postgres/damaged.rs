//! Damaged files (see `crate::meta::damaged`).

use std::ops::Bound;

use uuid::Uuid;

use super::files::decode_file;
use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::tables::{DAMAGED_NAME, chunk_key};
use crate::meta::{ChunkDamage, DamageOutcome, DamagedFile, MetaError, mark_report};

fn decode_damage(bytes: &[u8]) -> Result<DamagedFile, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(DAMAGED_NAME))
}

/// Drops file `id`'s damage mark inside `tx` (the file is being removed).
pub(super) async fn forget_in(tx: &Tx<'_>, id: &Uuid) -> Result<(), MetaError> {
    tx.delete(Table::Damaged, id.as_bytes()).await?;
    Ok(())
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::mark_damaged`].
    pub async fn mark_damaged(
        &self,
        node_id: &Uuid,
        reports: &[ChunkDamage],
        now_unix_ms: u64,
    ) -> Result<Vec<DamageOutcome>, MetaError> {
        pg_write!(self, MetaError, |tx| {
            let mut out = Vec::with_capacity(reports.len());
            for report in reports {
                let owner = match tx
                    .get(Table::ChunkRefs, &chunk_key(node_id, &report.chunk_id))
                    .await?
                {
                    Some(o) => Some(Uuid::from_slice(&o).map_err(|_| {
                        MetaError::InvalidRecord("a chunk reference is not 16 bytes".into())
                    })?),
                    None => None,
                };
                let file = match &owner {
                    Some(o) => match tx.get(Table::Files, o.as_bytes()).await? {
                        Some(v) => Some(decode_file(&v)?),
                        None => None,
                    },
                    None => None,
                };
                let marked = match (&owner, &file) {
                    (Some(o), Some(_)) => match tx.get(Table::Damaged, o.as_bytes()).await? {
                        Some(v) => Some(decode_damage(&v)?),
                        None => None,
                    },
                    _ => None,
                };
                let (outcome, store) =
                    mark_report(node_id, report, owner, file.as_ref(), marked, now_unix_ms);
                if let (Some(entry), Some(o)) = (store, owner) {
                    let value = encode(&entry).map_err(MetaError::corrupt(DAMAGED_NAME))?;
                    tx.put(Table::Damaged, o.as_bytes(), &value).await?;
                }
                out.push(outcome);
            }
            Ok(out)
        })
    }

    /// See [`crate::meta::Meta::get_damage`].
    pub async fn get_damage(&self, id: &Uuid) -> Result<Option<DamagedFile>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            match tx.get(Table::Damaged, id.as_bytes()).await? {
                Some(v) => Ok(Some(decode_damage(&v)?)),
                None => Ok(None),
            }
        })
    }

    /// See [`crate::meta::Meta::list_damaged`].
    pub async fn list_damaged(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DamagedFile>, MetaError> {
        let after = after.map(Uuid::into_bytes);
        let lo = after
            .as_ref()
            .map_or(Bound::Unbounded, |a| Bound::Excluded(&a[..]));
        pg_read!(self, MetaError, |tx| {
            tx.range(Table::Damaged, lo, Bound::Unbounded, Some(limit))
                .await?
                .iter()
                .map(|(_, v)| decode_damage(v))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::damaged_count`].
    pub async fn damaged_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::Damaged).await?)
        })
    }
}
