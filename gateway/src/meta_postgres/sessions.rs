//! Upload sessions (see `crate::meta::sessions`, whose checks these are).

use std::ops::Bound;

use uuid::Uuid;

use super::{PostgresMeta, Table, Tx, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::records::DeleteEntry;
use crate::meta::sessions::{check_session, commit_parts, committed_file};
use crate::meta::tables::{FILES_NAME, SESSIONS_NAME, chunk_key};
use crate::meta::{DeleteReason, FileRecord, MetaError, PartRecord, UploadSession};

/// Removes the session's chunk references and queues its chunks for deletion.
async fn enqueue_session_chunks(
    tx: &Tx<'_>,
    session: &UploadSession,
    reason: DeleteReason,
    now: u64,
) -> Result<Vec<(Uuid, [u8; 16])>, MetaError> {
    let entry = DeleteEntry::encoded(Some(session.file_id), reason, now)?;
    let mut chunks = Vec::with_capacity(session.parts.len());
    for p in &session.parts {
        let key = chunk_key(&p.node_id, &p.chunk_id);
        tx.delete(Table::ChunkRefs, &key).await?;
        tx.put(Table::DeleteQueue, &key, &entry).await?;
        chunks.push((p.node_id, p.chunk_id));
    }
    Ok(chunks)
}

pub(super) fn decode_session(bytes: &[u8]) -> Result<UploadSession, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(SESSIONS_NAME))
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::begin_session`].
    pub async fn begin_session(&self, session: &UploadSession) -> Result<(), MetaError> {
        check_session(session)?;
        let value = encode(session).map_err(MetaError::corrupt(SESSIONS_NAME))?;
        let key = session.file_id.as_bytes();
        pg_write!(self, MetaError, |tx| {
            if tx.contains(Table::Sessions, key).await? || tx.contains(Table::Files, key).await? {
                return Err(MetaError::Conflict(format!(
                    "id {} is already in use",
                    session.file_id
                )));
            }
            for p in &session.parts {
                let chunk = chunk_key(&p.node_id, &p.chunk_id);
                if tx.insert(Table::ChunkRefs, &chunk, key).await?.is_some() {
                    return Err(MetaError::Conflict(format!(
                        "chunk of part {} is already referenced",
                        p.index
                    )));
                }
            }
            tx.put(Table::Sessions, key, &value).await?;
            Ok(())
        })
    }

    /// See [`crate::meta::Meta::get_session`].
    pub async fn get_session(&self, file_id: &Uuid) -> Result<Option<UploadSession>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            match tx.get(Table::Sessions, file_id.as_bytes()).await? {
                Some(v) => Ok(Some(decode_session(&v)?)),
                None => Ok(None),
            }
        })
    }

    /// See [`crate::meta::Meta::commit_session`].
    pub async fn commit_session(
        &self,
        file_id: &Uuid,
        acked: Vec<PartRecord>,
        checksum: String,
        size: u64,
    ) -> Result<FileRecord, MetaError> {
        let acked = commit_parts(file_id, acked, &checksum)?;
        let key = file_id.as_bytes();
        let now = self.now();
        pg_write!(self, MetaError, |tx| {
            let session = match tx.get(Table::Sessions, key).await? {
                Some(v) => Some(decode_session(&v)?),
                None => None,
            };
            let exists = tx.contains(Table::Files, key).await?;
            let file = committed_file(
                file_id,
                session,
                exists,
                acked.clone(),
                checksum.clone(),
                size,
                now,
            )?;
            let value = encode(&file).map_err(MetaError::corrupt(FILES_NAME))?;
            tx.delete(Table::Sessions, key).await?;
            tx.put(Table::Files, key, &value).await?;
            super::marks::record_for_commit(&tx, &file).await?;
            // The chunk references already name this id; they now belong to the file.
            Ok(file)
        })
    }

    /// See [`crate::meta::Meta::abort_session`].
    pub async fn abort_session(&self, file_id: &Uuid) -> Result<Vec<(Uuid, [u8; 16])>, MetaError> {
        let now = self.now();
        pg_write!(self, MetaError, |tx| {
            let Some(value) = tx.remove(Table::Sessions, file_id.as_bytes()).await? else {
                return Ok(Vec::new());
            };
            let session = decode_session(&value)?;
            enqueue_session_chunks(&tx, &session, DeleteReason::Aborted, now).await
        })
    }

    /// See [`crate::meta::Meta::expired_sessions`].
    pub async fn expired_sessions(&self, now_ms: u64) -> Result<Vec<UploadSession>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            let mut expired = Vec::new();
            for (_, v) in tx.all(Table::Sessions).await? {
                let session = decode_session(&v)?;
                if session.expires_unix_ms <= now_ms {
                    expired.push(session);
                }
            }
            Ok(expired)
        })
    }

    /// See [`crate::meta::Meta::sessions_page`].
    pub async fn sessions_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UploadSession>, MetaError> {
        let after = after.map(Uuid::into_bytes);
        let lo = after
            .as_ref()
            .map_or(Bound::Unbounded, |a| Bound::Excluded(&a[..]));
        pg_read!(self, MetaError, |tx| {
            tx.range(Table::Sessions, lo, Bound::Unbounded, Some(limit))
                .await?
                .iter()
                .map(|(_, v)| decode_session(v))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::session_count`].
    pub async fn session_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::Sessions).await?)
        })
    }
}
