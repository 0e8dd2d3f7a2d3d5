//! Damaged files (see `crate::meta::damaged`).

use std::ops::Bound;

use uuid::Uuid;

use super::files::decode_file;
use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::tables::{DAMAGED_NAME, chunk_key};
use crate::meta::{ChunkDamage, DamageOutcome, DamagedFile, DamagedPart, MetaError};

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
                let Some(owner) = tx
                    .get(Table::ChunkRefs, &chunk_key(node_id, &report.chunk_id))
                    .await?
                else {
                    out.push(DamageOutcome::Unreferenced);
                    continue;
                };
                let owner = Uuid::from_slice(&owner).map_err(|_| {
                    MetaError::InvalidRecord("a chunk reference is not 16 bytes".into())
                })?;
                let Some(file) = tx.get(Table::Files, owner.as_bytes()).await? else {
                    out.push(DamageOutcome::InUpload);
                    continue;
                };
                let file = decode_file(&file)?;
                let Some(part) = file
                    .parts
                    .iter()
                    .find(|p| p.node_id == *node_id && p.chunk_id == report.chunk_id)
                else {
                    out.push(DamageOutcome::Unreferenced);
                    continue;
                };
                let mut entry = match tx.get(Table::Damaged, owner.as_bytes()).await? {
                    Some(v) => decode_damage(&v)?,
                    None => DamagedFile {
                        file_id: owner,
                        parts: Vec::new(),
                    },
                };
                if entry.has_part(part.index) {
                    out.push(DamageOutcome::AlreadyMarked {
                        file_id: owner,
                        index: part.index,
                    });
                    continue;
                }
                entry.parts.push(DamagedPart {
                    index: part.index,
                    node_id: *node_id,
                    chunk_id: report.chunk_id,
                    damage: report.damage,
                    block: report.block,
                    found_by: report.found_by,
                    found_unix_ms: report.found_unix_ms,
                    marked_unix_ms: now_unix_ms,
                });
                entry.parts.sort_by_key(|p| p.index);
                let value = encode(&entry).map_err(MetaError::corrupt(DAMAGED_NAME))?;
                tx.put(Table::Damaged, owner.as_bytes(), &value).await?;
                out.push(DamageOutcome::Marked {
                    file_id: owner,
                    index: part.index,
                });
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
