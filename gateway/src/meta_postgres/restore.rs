//! Files brought back by a rebuild from the nodes (see `crate::meta::restore`).

use uuid::Uuid;

use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::meta::codec::encode;
use crate::meta::tables::{FILES_NAME, chunk_key};
use crate::meta::{FileRecord, MetaError, Restored};

impl PostgresMeta {
    /// See [`crate::meta::Meta::restore_file`].
    pub async fn restore_file(&self, file: &FileRecord) -> Result<Restored, MetaError> {
        let key = file.id.as_bytes();
        let value = encode(file).map_err(MetaError::corrupt(FILES_NAME))?;
        pg_write!(self, MetaError, |tx| {
            if tx.contains(Table::Files, key).await? || tx.contains(Table::Sessions, key).await? {
                return Ok(Restored::AlreadyKnown);
            }
            for p in &file.parts {
                let k = chunk_key(&p.node_id, &p.chunk_id);
                if tx.contains(Table::ChunkRefs, &k).await?
                    || tx.contains(Table::DeleteQueue, &k).await?
                {
                    return Ok(Restored::ChunkTaken);
                }
            }
            for p in &file.parts {
                let k = chunk_key(&p.node_id, &p.chunk_id);
                tx.put(Table::ChunkRefs, &k, key).await?;
                tx.delete(Table::Quarantine, &k).await?;
            }
            tx.put(Table::Files, key, &value).await?;
            super::marks::record_for_commit(&tx, file).await?;
            Ok(Restored::Added)
        })
    }

    /// See [`crate::meta::Meta::knows_file_id`].
    pub async fn knows_file_id(&self, id: &Uuid) -> Result<bool, MetaError> {
        let key = id.as_bytes();
        pg_read!(self, MetaError, |tx| {
            Ok(tx.contains(Table::Files, key).await? || tx.contains(Table::Sessions, key).await?)
        })
    }
}
