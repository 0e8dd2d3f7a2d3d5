//! Upload sessions: begin (durably, before bytes move), commit into a file, abort, expire.

use std::collections::HashSet;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::records::{
    DeleteEntry, DeleteReason, FileRecord, PartRecord, PlannedPart, UploadSession,
};
use super::tables::{
    CHUNK_REFS, DELETE_QUEUE, FILES, FILES_NAME, SESSIONS, SESSIONS_NAME, chunk_key,
};
use super::{Meta, MetaError};

/// Checks that planned parts are numbered 0.., tile `[0, total)` without gaps, sit on distinct
/// nodes and use distinct chunk ids; returns `total`.
pub(crate) fn check_plan(parts: &[PlannedPart]) -> Result<u64, String> {
    let mut offset = 0u64;
    let mut nodes = HashSet::with_capacity(parts.len());
    let mut chunks = HashSet::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        if p.index as usize != i {
            return Err(format!("part at position {i} has index {}", p.index));
        }
        if p.offset != offset {
            return Err(format!(
                "part {i} starts at {}, expected {offset}",
                p.offset
            ));
        }
        if p.len == 0 {
            return Err(format!("part {i} is empty"));
        }
        offset = offset
            .checked_add(p.len)
            .ok_or_else(|| format!("part {i} ends past 2^64"))?;
        if !nodes.insert(p.node_id) {
            return Err(format!(
                "part {i} shares node {} with another part",
                p.node_id
            ));
        }
        if !chunks.insert(p.chunk_id) {
            return Err(format!("part {i} reuses a chunk id"));
        }
    }
    Ok(offset)
}

/// xxh3-128 as 32 lowercase hex digits.
pub(crate) fn is_checksum(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why `acked` cannot commit `session` as a file of `size` bytes, if it cannot.
///
/// Every acknowledged part must be its planned part, stored whole (`stored_len` the planned
/// length) and described as holding the file's bytes in it: all of them for a file of the
/// planned size, fewer for a streamed form (`session.multipart`), whose file may end before the
/// planned bytes do ([`PartRecord::clipped_to`]).
pub(crate) fn check_commit(
    session: &UploadSession,
    acked: &[PartRecord],
    size: u64,
) -> Result<(), String> {
    if acked.len() != session.parts.len() {
        return Err(format!(
            "{} parts acknowledged, {} planned",
            acked.len(),
            session.parts.len()
        ));
    }
    for (a, p) in acked.iter().zip(&session.parts) {
        if a.index != p.index {
            return Err(format!(
                "part {} acknowledged where part {} was planned",
                a.index, p.index
            ));
        }
        if a.stored_len() != p.len {
            return Err(format!(
                "part {}: {} bytes stored, {} planned",
                a.index,
                a.stored_len(),
                p.len
            ));
        }
        let file_start = p.offset.min(size);
        let file_len = p.offset.saturating_add(p.len).min(size) - file_start;
        if (a.offset, a.len) != (file_start, file_len) {
            return Err(format!(
                "part {}: acknowledged [{}, +{}), planned [{}, +{}) of a {size}-byte file",
                a.index, a.offset, a.len, file_start, file_len
            ));
        }
        if a.node_id != p.node_id || a.chunk_id != p.chunk_id {
            return Err(format!(
                "part {}: node or chunk differs from the plan",
                a.index
            ));
        }
    }
    let planned: u64 = session.parts.iter().map(|p| p.len).sum();
    if session.multipart {
        if size > planned {
            return Err(format!("size {size} but the parts hold {planned} bytes"));
        }
        return Ok(());
    }
    if size != planned {
        return Err(format!("size {size} but the parts hold {planned} bytes"));
    }
    if let Some(announced) = session.size
        && announced != size
    {
        return Err(format!("size {size} but {announced} was announced"));
    }
    Ok(())
}

/// The checks of a new session before its transaction: the plan must tile the file and cover
/// the announced size, if any.
pub(crate) fn check_session(session: &UploadSession) -> Result<(), MetaError> {
    let total = check_plan(&session.parts).map_err(MetaError::InvalidRecord)?;
    if let Some(size) = session.size
        && size != total
    {
        return Err(MetaError::InvalidRecord(format!(
            "session size {size} but the plan covers {total} bytes"
        )));
    }
    Ok(())
}

fn invalid_commit(file_id: &Uuid, reason: String) -> MetaError {
    MetaError::InvalidCommit {
        file_id: *file_id,
        reason,
    }
}

/// The checks of a commit before its transaction: `checksum` must be 32 lowercase hex digits.
/// Gives the acknowledged parts in part order.
pub(crate) fn commit_parts(
    file_id: &Uuid,
    mut acked: Vec<PartRecord>,
    checksum: &str,
) -> Result<Vec<PartRecord>, MetaError> {
    if !is_checksum(checksum) {
        return Err(invalid_commit(
            file_id,
            format!("checksum {checksum:?} is not 32 lowercase hex digits"),
        ));
    }
    acked.sort_by_key(|p| p.index);
    Ok(acked)
}

/// Inside a commit's transaction: the file that `session` (the one stored under `file_id`, if
/// any) becomes with the acknowledged parts `acked` (from [`commit_parts`]), `checksum` and
/// `size`, committed at `now`. Refused when there is no session ([`MetaError::NotFound`]), the
/// parts do not commit it ([`check_commit`], [`MetaError::InvalidCommit`]) or a file of that id
/// exists (`file_exists`, [`MetaError::Conflict`]).
pub(crate) fn committed_file(
    file_id: &Uuid,
    session: Option<UploadSession>,
    file_exists: bool,
    acked: Vec<PartRecord>,
    checksum: String,
    size: u64,
    now: u64,
) -> Result<FileRecord, MetaError> {
    let Some(session) = session else {
        return Err(MetaError::NotFound {
            kind: "upload session",
            id: *file_id,
        });
    };
    check_commit(&session, &acked, size).map_err(|reason| invalid_commit(file_id, reason))?;
    if file_exists {
        return Err(MetaError::Conflict(format!(
            "file {file_id} already exists"
        )));
    }
    Ok(FileRecord {
        id: *file_id,
        name: session.name,
        content_type: session.content_type,
        size,
        created_unix_ms: now,
        checksum,
        parts: acked,
    })
}

/// Removes the session's chunk references and queues its chunks for deletion.
fn enqueue_session_chunks(
    txn: &WriteTransaction,
    session: &UploadSession,
    reason: DeleteReason,
    now: u64,
) -> Result<Vec<(Uuid, [u8; 16])>, MetaError> {
    let entry = DeleteEntry::encoded(Some(session.file_id), reason, now)?;
    let mut refs = txn.open_table(CHUNK_REFS)?;
    let mut queue = txn.open_table(DELETE_QUEUE)?;
    let mut chunks = Vec::with_capacity(session.parts.len());
    for p in &session.parts {
        let key = chunk_key(&p.node_id, &p.chunk_id);
        refs.remove(&key)?;
        queue.insert(&key, entry.as_slice())?;
        chunks.push((p.node_id, p.chunk_id));
    }
    Ok(chunks)
}

impl Meta {
    /// Records an upload before any byte moves. The plan must tile the file (and match `size`
    /// when known); the id must be new and the chunk ids unused.
    pub fn begin_session(&self, session: &UploadSession) -> Result<(), MetaError> {
        check_session(session)?;
        let value = encode(session).map_err(MetaError::corrupt(SESSIONS_NAME))?;
        let key = session.file_id.as_bytes();
        self.write(|txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            if sessions.get(key)?.is_some() || txn.open_table(FILES)?.get(key)?.is_some() {
                return Err(MetaError::Conflict(format!(
                    "id {} is already in use",
                    session.file_id
                )));
            }
            let mut refs = txn.open_table(CHUNK_REFS)?;
            for p in &session.parts {
                let chunk = chunk_key(&p.node_id, &p.chunk_id);
                if refs.insert(&chunk, key)?.is_some() {
                    return Err(MetaError::Conflict(format!(
                        "chunk of part {} is already referenced",
                        p.index
                    )));
                }
            }
            sessions.insert(key, value.as_slice())?;
            Ok(())
        })
    }

    /// The upload session of `file_id`, if it is still open.
    pub fn get_session(&self, file_id: &Uuid) -> Result<Option<UploadSession>, MetaError> {
        self.read(|txn| {
            let sessions = txn.open_table(SESSIONS)?;
            let Some(value) = sessions.get(file_id.as_bytes())? else {
                return Ok(None);
            };
            decode(value.value())
                .map(Some)
                .map_err(MetaError::corrupt(SESSIONS_NAME))
        })
    }

    /// Turns the session into a visible file in one transaction. `acked` must match the plan
    /// part for part (index, offset, length, node, chunk; any order), `size` the planned total
    /// (and the announced size, if any), `checksum` be 32 lowercase hex digits. A streamed
    /// form's session (`multipart`) commits a `size` up to the planned total, its parts clipped
    /// to it ([`PartRecord::clipped_to`]). On any mismatch
    /// nothing changes and [`MetaError::InvalidCommit`] is returned.
    pub fn commit_session(
        &self,
        file_id: &Uuid,
        acked: Vec<PartRecord>,
        checksum: String,
        size: u64,
    ) -> Result<FileRecord, MetaError> {
        let now = self.clock.unix_ms();
        let acked = commit_parts(file_id, acked, &checksum)?;
        let key = file_id.as_bytes();
        self.write(|txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let session: Option<UploadSession> = match sessions.get(key)? {
                Some(v) => Some(decode(v.value()).map_err(MetaError::corrupt(SESSIONS_NAME))?),
                None => None,
            };
            let mut files = txn.open_table(FILES)?;
            let exists = files.get(key)?.is_some();
            let file = committed_file(file_id, session, exists, acked, checksum, size, now)?;
            let value = encode(&file).map_err(MetaError::corrupt(FILES_NAME))?;
            sessions.remove(key)?;
            files.insert(key, value.as_slice())?;
            super::marks::record_for_commit(txn, &file)?;
            // The chunk references already name this id; they now belong to the file.
            Ok(file)
        })
    }

    /// Drops the session of a failed upload and queues its chunks for deletion, in one
    /// transaction. Returns the (node, chunk) pairs to delete now if possible; an unknown or
    /// already finished session gives an empty list.
    pub fn abort_session(&self, file_id: &Uuid) -> Result<Vec<(Uuid, [u8; 16])>, MetaError> {
        let now = self.clock.unix_ms();
        self.write(|txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let Some(value) = sessions.remove(file_id.as_bytes())? else {
                return Ok(Vec::new());
            };
            let session: UploadSession =
                decode(value.value()).map_err(MetaError::corrupt(SESSIONS_NAME))?;
            drop(value);
            enqueue_session_chunks(txn, &session, DeleteReason::Aborted, now)
        })
    }

    /// Sessions whose expiry is at or before `now_ms`, for the cleanup to abort.
    pub fn expired_sessions(&self, now_ms: u64) -> Result<Vec<UploadSession>, MetaError> {
        self.read(|txn| {
            let sessions = txn.open_table(SESSIONS)?;
            let mut expired = Vec::new();
            for row in sessions.iter()? {
                let (_, value) = row?;
                let session: UploadSession =
                    decode(value.value()).map_err(MetaError::corrupt(SESSIONS_NAME))?;
                if session.expires_unix_ms <= now_ms {
                    expired.push(session);
                }
            }
            Ok(expired)
        })
    }

    /// Up to `limit` sessions after file id `after`, in file id order: the cleanup walks the
    /// table a page at a time, so its memory does not grow with the number of sessions.
    pub fn sessions_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UploadSession>, MetaError> {
        self.read(|txn| {
            let sessions = txn.open_table(SESSIONS)?;
            let mut out = Vec::with_capacity(limit.min(1024));
            let rows = match after {
                Some(id) => sessions.range::<&[u8; 16]>(id.as_bytes()..)?,
                None => sessions.range::<&[u8; 16]>(..)?,
            };
            for row in rows {
                let (key, value) = row?;
                if after.is_some_and(|id| key.value() == id.as_bytes()) {
                    continue;
                }
                out.push(decode(value.value()).map_err(MetaError::corrupt(SESSIONS_NAME))?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Number of open upload sessions.
    pub fn session_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(SESSIONS)?.len()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::records::new_chunk_id;

    fn part(index: u32, offset: u64, len: u64) -> PlannedPart {
        PlannedPart {
            index,
            offset,
            len,
            node_id: Uuid::new_v4(),
            chunk_id: new_chunk_id(),
        }
    }

    #[test]
    fn plans_must_tile() {
        assert_eq!(check_plan(&[]), Ok(0));
        assert_eq!(check_plan(&[part(0, 0, 5), part(1, 5, 3)]), Ok(8));
        assert!(check_plan(&[part(1, 0, 5)]).is_err());
        assert!(check_plan(&[part(0, 1, 5)]).is_err());
        assert!(check_plan(&[part(0, 0, 5), part(1, 6, 3)]).is_err());
        assert!(check_plan(&[part(0, 0, 0)]).is_err());
        assert!(check_plan(&[part(0, 0, u64::MAX), part(1, u64::MAX, 1)]).is_err());
        let mut same_node = [part(0, 0, 5), part(1, 5, 3)];
        same_node[1].node_id = same_node[0].node_id;
        assert!(check_plan(&same_node).is_err());
        let mut same_chunk = [part(0, 0, 5), part(1, 5, 3)];
        same_chunk[1].chunk_id = same_chunk[0].chunk_id;
        assert!(check_plan(&same_chunk).is_err());
    }

    #[test]
    fn checksums_are_32_lowercase_hex_digits() {
        assert!(is_checksum("0123456789abcdef0123456789abcdef"));
        assert!(!is_checksum("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_checksum("0123456789abcdef0123456789abcde"));
        assert!(!is_checksum("0123456789abcdef0123456789abcdeg"));
    }

    fn session() -> UploadSession {
        UploadSession {
            file_id: Uuid::from_u128(9),
            name: "f".into(),
            content_type: Some("text/plain".into()),
            size: Some(8),
            created_unix_ms: 0,
            expires_unix_ms: 10,
            parts: vec![part(0, 0, 5), part(1, 5, 3)],
            multipart: false,
            owner: None,
        }
    }

    fn acked(s: &UploadSession) -> Vec<PartRecord> {
        s.parts
            .iter()
            .rev()
            .map(|p| p.verify_ack(p.len, 7, 7).expect("ack"))
            .collect()
    }

    const SUM: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_session_must_cover_its_announced_size() {
        assert!(check_session(&session()).is_ok());
        let mut longer = session();
        longer.size = Some(9);
        assert!(matches!(
            check_session(&longer),
            Err(MetaError::InvalidRecord(_))
        ));
        let mut unknown = session();
        unknown.size = None;
        assert!(check_session(&unknown).is_ok());
    }

    #[test]
    fn a_commit_turns_the_session_into_its_file_or_says_why_not() {
        let s = session();
        let id = s.file_id;
        let parts = commit_parts(&id, acked(&s), SUM).expect("parts");
        assert_eq!(parts.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 1]);
        assert!(matches!(
            commit_parts(&id, acked(&s), "not a checksum"),
            Err(MetaError::InvalidCommit { .. })
        ));
        let file = committed_file(
            &id,
            Some(s.clone()),
            false,
            parts.clone(),
            SUM.into(),
            8,
            42,
        )
        .expect("commit");
        assert_eq!(
            (file.id, file.name.as_str(), file.content_type.as_deref()),
            (id, "f", Some("text/plain"))
        );
        assert_eq!((file.size, file.created_unix_ms), (8, 42));
        assert_eq!((file.checksum.as_str(), file.parts), (SUM, parts.clone()));
        assert!(matches!(
            committed_file(&id, None, false, parts.clone(), SUM.into(), 8, 42),
            Err(MetaError::NotFound { .. })
        ));
        // A bad commit is refused as such even when the id is taken; then the id conflicts.
        assert!(matches!(
            committed_file(&id, Some(s.clone()), true, parts.clone(), SUM.into(), 7, 42),
            Err(MetaError::InvalidCommit { .. })
        ));
        assert!(matches!(
            committed_file(&id, Some(s), true, parts, SUM.into(), 8, 42),
            Err(MetaError::Conflict(_))
        ));
    }

    #[test]
    fn sessions_page_in_file_id_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(dir.path().join("m.redb")).expect("open");
        for n in [3u128, 1, 2, 5, 4] {
            meta.begin_session(&UploadSession {
                file_id: Uuid::from_u128(n),
                name: format!("s{n}"),
                content_type: None,
                size: Some(5),
                created_unix_ms: 0,
                expires_unix_ms: 10,
                parts: vec![part(0, 0, 5)],
                multipart: false,
                owner: None,
            })
            .expect("session");
        }
        let ids =
            |page: Vec<UploadSession>| page.iter().map(|s| s.file_id.as_u128()).collect::<Vec<_>>();
        let first = meta.sessions_page(None, 2).expect("page");
        assert_eq!(ids(first), [1, 2]);
        let next = meta
            .sessions_page(Some(Uuid::from_u128(2)), 10)
            .expect("page");
        assert_eq!(ids(next), [3, 4, 5]);
        assert!(
            meta.sessions_page(Some(Uuid::from_u128(5)), 10)
                .expect("page")
                .is_empty()
        );
    }
}
