//! The metadata port: every operation the gateway asks of its durable metadata, as one async
//! trait over domain types, so that the upload, download, cleanup, recovery and S3 code never
//! sees which database answers.
//!
//! Implementations: redb ([`Meta`], the embedded default; also in memory through
//! [`Meta::open_in_memory`] for simulations) and PostgreSQL. Every implementation runs the same
//! conformance suite (`conformance.rs`).
//!
//! What the trait promises, whatever the backend:
//! - every write is one transaction: it happens whole or not at all, and a returned `Ok` is
//!   durable;
//! - the invariants are the same pure functions for all (the plan check and the commit check in
//!   `sessions.rs`, the multipart completion check in `multipart.rs`), so no backend can accept a
//!   commit another would refuse;
//! - background work reads in pages (`sessions_page`, `pending_deletes`, `quarantined`, ...)
//!   and asks bounded questions (`referenced_among`, `referenced_count`), so its memory does not
//!   grow with the number of files;
//! - errors are domain errors ([`MetaError`] for the native store, [`ObjectStoreError`] for S3),
//!   with the backend's own error boxed in [`MetaError::Storage`].

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    BeginOutcome, BucketRecord, ChunkDamage, ChunkId, CompletedPartRef, DamageOutcome, DamagedFile,
    DeleteReason, FileRecord, ListPage, ListQuery, Meta, MetaError, MoveRecord, MultipartRecord,
    NodeRecord, NodeState, ObjectById, ObjectRecord, ObjectStoreError, PartRecord, PendingDelete,
    PendingMark, QuarantineMark, Restored, SwapOutcome, UnaccountedNode, UploadSession,
    UploadedPart,
};
use crate::auth::{AccessKey, KeyId};

/// How the rest of the gateway holds its metadata.
pub type SharedMeta = Arc<dyn MetaStore>;

/// Computes a completed multipart object's ETag from its parts, in order.
pub type MultipartEtag = fn(&[&UploadedPart]) -> String;

/// The gateway's metadata operations. See the module doc for what every implementation owes.
#[async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and errors: "redb", "postgres".
    fn backend(&self) -> &'static str;

    /// The shared side of a store several gateways open at once (PostgreSQL); `None` for a
    /// store one process owns (redb), whose gateway is alone.
    fn coordination(&self) -> Option<&dyn super::coordination::Coordination> {
        None
    }

    // ---- cluster identity ----

    /// The identity of the cluster this metadata describes (cached; no I/O).
    fn cluster_id(&self) -> Uuid;
    /// Takes `id` as the cluster's identity (a rebuild from nodes that keep `id`).
    async fn adopt_cluster_id(&self, id: Uuid) -> Result<(), MetaError>;

    // ---- upload sessions and the commit ----

    /// Records a new upload session; its plan must tile the file.
    async fn begin_session(&self, session: &UploadSession) -> Result<(), MetaError>;
    async fn get_session(&self, file_id: &Uuid) -> Result<Option<UploadSession>, MetaError>;
    /// In one transaction: checks the acknowledged parts against the session, turns the session
    /// into a file, and records the commit marks owed to the nodes.
    async fn commit_session(
        &self,
        file_id: &Uuid,
        acked: Vec<PartRecord>,
        checksum: String,
        size: u64,
    ) -> Result<FileRecord, MetaError>;
    /// Drops the session and queues its chunks for deletion; returns them (node, chunk).
    async fn abort_session(&self, file_id: &Uuid) -> Result<Vec<(Uuid, ChunkId)>, MetaError>;
    /// Up to `limit` sessions in id order, after `after`.
    async fn sessions_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UploadSession>, MetaError>;
    async fn session_count(&self) -> Result<u64, MetaError>;

    // ---- files ----

    async fn get_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError>;
    /// Every file (hidden ones too), in id order, after `after`.
    async fn list_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError>;
    /// The files `GET /files` shows (not the hidden S3 multipart parts).
    async fn list_listed_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError>;
    /// Removes the file and queues its chunks for deletion; returns what was removed.
    async fn delete_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError>;
    async fn file_count(&self) -> Result<u64, MetaError>;
    /// Puts back a file found on the nodes (a rebuild).
    async fn restore_file(&self, file: &FileRecord) -> Result<Restored, MetaError>;
    /// Whether a file or an upload session has this id.
    async fn knows_file_id(&self, id: &Uuid) -> Result<bool, MetaError>;

    // ---- nodes ----

    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError>;
    async fn get_node(&self, id: &Uuid) -> Result<Option<NodeRecord>, MetaError>;
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, MetaError>;
    async fn set_node_state(&self, id: &Uuid, state: NodeState) -> Result<NodeRecord, MetaError>;
    async fn remove_node(&self, id: &Uuid) -> Result<bool, MetaError>;
    async fn mark_unaccounted(&self, node: &UnaccountedNode) -> Result<(), MetaError>;
    async fn is_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError>;
    async fn unaccounted_nodes(&self) -> Result<Vec<UnaccountedNode>, MetaError>;
    async fn unaccounted_count(&self) -> Result<u64, MetaError>;
    async fn clear_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError>;

    // ---- chunk references and the delete queue ----

    async fn pending_deletes(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError>;
    async fn complete_delete(&self, node_id: &Uuid, chunk_id: &ChunkId) -> Result<bool, MetaError>;
    /// Queues the chunks that nothing references; returns how many were queued.
    async fn enqueue_deletes(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
        reason: DeleteReason,
    ) -> Result<usize, MetaError>;
    async fn delete_queue_len(&self) -> Result<u64, MetaError>;
    /// Which of `chunk_ids` on `node_id` a file or a live session references.
    async fn referenced_among(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<HashSet<ChunkId>, MetaError>;
    /// How many chunks on `node_id` a file or a live session references.
    async fn referenced_count(&self, node_id: &Uuid) -> Result<u64, MetaError>;

    // ---- commit marks ----

    async fn pending_marks(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingMark>, MetaError>;
    async fn marks_delivered(&self, delivered: &[(Uuid, ChunkId)]) -> Result<(), MetaError>;
    async fn pending_mark_count(&self) -> Result<u64, MetaError>;

    // ---- quarantine (chunks a rebuild could not account for) ----

    async fn quarantined(
        &self,
        node_id: &Uuid,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError>;
    async fn update_quarantine(
        &self,
        node_id: &Uuid,
        add: &[(ChunkId, QuarantineMark)],
        release: &[ChunkId],
    ) -> Result<usize, MetaError>;
    async fn delete_quarantined(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError>;
    async fn quarantine_len(&self) -> Result<u64, MetaError>;

    // ---- damaged files (chunks the nodes found corrupt or unreadable) ----

    /// In one transaction: marks the files owning `reports` (chunks of `node_id`) damaged;
    /// says per report what came of it.
    async fn mark_damaged(
        &self,
        node_id: &Uuid,
        reports: &[ChunkDamage],
        now_unix_ms: u64,
    ) -> Result<Vec<DamageOutcome>, MetaError>;
    /// The damage of one file, if it is marked.
    async fn get_damage(&self, id: &Uuid) -> Result<Option<DamagedFile>, MetaError>;
    /// Damaged files in id order, after `after`.
    async fn list_damaged(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DamagedFile>, MetaError>;
    async fn damaged_count(&self) -> Result<u64, MetaError>;

    // ---- part moves of the rebalancer (`moves.rs`) ----

    /// Step 1 of a move: records it and protects the target chunk id, if the file still has
    /// part `part_index` on `from_node`.
    async fn begin_move(
        &self,
        file_id: &Uuid,
        part_index: u32,
        from_node: &Uuid,
        to_node: &Uuid,
        to_chunk: ChunkId,
        now_unix_ms: u64,
    ) -> Result<BeginOutcome, MetaError>;
    /// In one transaction: the file names the verified copy (compare-and-swap of the part's
    /// location), or, the file deleted or changed, the copy is queued for deletion.
    async fn swap_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        mark_delivered: bool,
        release_after_unix_ms: u64,
        now_unix_ms: u64,
    ) -> Result<SwapOutcome, MetaError>;
    /// A move that failed before its swap: its copy is queued for deletion.
    async fn abandon_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        now_unix_ms: u64,
    ) -> Result<bool, MetaError>;
    /// On start: every move still copying is rolled back.
    async fn roll_back_unfinished_moves(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<MoveRecord>, MetaError>;
    /// Sources of swapped moves past their grace period go to the delete queue.
    async fn release_moved_sources(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<(Uuid, ChunkId)>, MetaError>;
    async fn list_moves(&self) -> Result<Vec<MoveRecord>, MetaError>;
    async fn move_count(&self) -> Result<u64, MetaError>;

    // ---- access keys ----

    async fn insert_key(&self, key: &AccessKey) -> Result<(), MetaError>;
    /// Inserts `key` only if there is no key at all; returns whether it did.
    async fn insert_first_key(&self, key: &AccessKey) -> Result<bool, MetaError>;
    async fn get_key(&self, id: &KeyId) -> Result<Option<AccessKey>, MetaError>;
    async fn list_keys(&self) -> Result<Vec<AccessKey>, MetaError>;
    async fn key_count(&self) -> Result<u64, MetaError>;
    async fn revoke_key(&self, id: &KeyId, at_unix_ms: u64)
    -> Result<Option<AccessKey>, MetaError>;

    // ---- S3 buckets, objects, multipart uploads ----

    async fn create_bucket(
        &self,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<BucketRecord, ObjectStoreError>;
    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, ObjectStoreError>;
    async fn list_buckets(&self) -> Result<Vec<BucketRecord>, ObjectStoreError>;
    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectStoreError>;
    /// Stores `record` under `key`; returns the object it replaced.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Option<ObjectRecord>, ObjectStoreError>;
    /// The object and the files of its segments, in order.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Vec<FileRecord>), ObjectStoreError>;
    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectStoreError>;
    /// The object whose own file id is `id` (one of several segments), with its files.
    async fn object_by_id(&self, id: &Uuid) -> Result<Option<ObjectById>, ObjectStoreError>;
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError>;
    async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage<ObjectRecord>, ObjectStoreError>;
    async fn create_multipart(&self, record: &MultipartRecord) -> Result<(), ObjectStoreError>;
    async fn get_multipart(
        &self,
        upload_id: &Uuid,
    ) -> Result<Option<MultipartRecord>, ObjectStoreError>;
    async fn put_part(&self, upload_id: &Uuid, part: &UploadedPart)
    -> Result<(), ObjectStoreError>;
    async fn list_parts(
        &self,
        upload_id: &Uuid,
    ) -> Result<(MultipartRecord, Vec<UploadedPart>), ObjectStoreError>;
    async fn list_multipart_uploads(
        &self,
        bucket: &str,
    ) -> Result<Vec<MultipartRecord>, ObjectStoreError>;
    async fn abort_multipart(&self, upload_id: &Uuid) -> Result<usize, ObjectStoreError>;
    async fn multipart_started_before(
        &self,
        before_unix_ms: u64,
    ) -> Result<Vec<Uuid>, ObjectStoreError>;
    /// In one transaction: checks the listed parts and turns them into the object's segments.
    async fn complete_multipart(
        &self,
        upload_id: &Uuid,
        bucket: &str,
        key: &str,
        listed: &[CompletedPartRef],
        now_unix_ms: u64,
        etag: MultipartEtag,
    ) -> Result<ObjectRecord, ObjectStoreError>;
}

/// The background task running a blocking redb call went away (panicked or was cancelled at
/// shutdown): reported as a storage failure, never as a bad record.
#[derive(Debug, thiserror::Error)]
#[error("the metadata task did not finish: {0}")]
pub struct TaskLost(String);

/// Runs a blocking redb call off the async threads.
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<MetaError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(E::from(MetaError::Storage(Box::new(TaskLost(
            e.to_string(),
        ))))),
    }
}

/// `meta!(self, |m| m.call(..))`: clones the handle into a blocking call. Arguments the call
/// borrows are copied into owned values by the caller first.
macro_rules! on_redb {
    ($self:ident, |$m:ident| $body:expr) => {{
        let $m = $self.clone();
        blocking(move || $body).await
    }};
}

#[async_trait]
impl MetaStore for Meta {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn cluster_id(&self) -> Uuid {
        Meta::cluster_id(self)
    }

    async fn adopt_cluster_id(&self, id: Uuid) -> Result<(), MetaError> {
        on_redb!(self, |m| m.adopt_cluster_id(id))
    }

    async fn begin_session(&self, session: &UploadSession) -> Result<(), MetaError> {
        let session = session.clone();
        on_redb!(self, |m| m.begin_session(&session))
    }

    async fn get_session(&self, file_id: &Uuid) -> Result<Option<UploadSession>, MetaError> {
        let id = *file_id;
        on_redb!(self, |m| m.get_session(&id))
    }

    async fn commit_session(
        &self,
        file_id: &Uuid,
        acked: Vec<PartRecord>,
        checksum: String,
        size: u64,
    ) -> Result<FileRecord, MetaError> {
        let id = *file_id;
        on_redb!(self, |m| m.commit_session(&id, acked, checksum, size))
    }

    async fn abort_session(&self, file_id: &Uuid) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        let id = *file_id;
        on_redb!(self, |m| m.abort_session(&id))
    }

    async fn sessions_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UploadSession>, MetaError> {
        on_redb!(self, |m| m.sessions_page(after, limit))
    }

    async fn session_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.session_count())
    }

    async fn get_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.get_file(&id))
    }

    async fn list_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        on_redb!(self, |m| m.list_files(after, limit))
    }

    async fn list_listed_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        on_redb!(self, |m| m.list_listed_files(after, limit))
    }

    async fn delete_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.delete_file(&id))
    }

    async fn file_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.file_count())
    }

    async fn restore_file(&self, file: &FileRecord) -> Result<Restored, MetaError> {
        let file = file.clone();
        on_redb!(self, |m| m.restore_file(&file))
    }

    async fn knows_file_id(&self, id: &Uuid) -> Result<bool, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.knows_file_id(&id))
    }

    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        let node = node.clone();
        on_redb!(self, |m| m.upsert_node(&node))
    }

    async fn get_node(&self, id: &Uuid) -> Result<Option<NodeRecord>, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.get_node(&id))
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        on_redb!(self, |m| m.list_nodes())
    }

    async fn set_node_state(&self, id: &Uuid, state: NodeState) -> Result<NodeRecord, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.set_node_state(&id, state))
    }

    async fn remove_node(&self, id: &Uuid) -> Result<bool, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.remove_node(&id))
    }

    async fn mark_unaccounted(&self, node: &UnaccountedNode) -> Result<(), MetaError> {
        let node = node.clone();
        on_redb!(self, |m| m.mark_unaccounted(&node))
    }

    async fn is_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.is_unaccounted(&id))
    }

    async fn unaccounted_nodes(&self) -> Result<Vec<UnaccountedNode>, MetaError> {
        on_redb!(self, |m| m.unaccounted_nodes())
    }

    async fn unaccounted_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.unaccounted_count())
    }

    async fn clear_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.clear_unaccounted(&id))
    }

    async fn pending_deletes(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError> {
        let id = *node_id;
        on_redb!(self, |m| m.pending_deletes(&id, limit))
    }

    async fn complete_delete(&self, node_id: &Uuid, chunk_id: &ChunkId) -> Result<bool, MetaError> {
        let (id, chunk) = (*node_id, *chunk_id);
        on_redb!(self, |m| m.complete_delete(&id, &chunk))
    }

    async fn enqueue_deletes(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
        reason: DeleteReason,
    ) -> Result<usize, MetaError> {
        let (id, chunks) = (*node_id, chunk_ids.to_vec());
        on_redb!(self, |m| m.enqueue_deletes(&id, &chunks, reason))
    }

    async fn delete_queue_len(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.delete_queue_len())
    }

    async fn referenced_among(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<HashSet<ChunkId>, MetaError> {
        let (id, chunks) = (*node_id, chunk_ids.to_vec());
        on_redb!(self, |m| m.referenced_among(&id, &chunks))
    }

    async fn referenced_count(&self, node_id: &Uuid) -> Result<u64, MetaError> {
        let id = *node_id;
        on_redb!(self, |m| m.referenced_count(&id))
    }

    async fn pending_marks(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingMark>, MetaError> {
        let id = *node_id;
        on_redb!(self, |m| m.pending_marks(&id, limit))
    }

    async fn marks_delivered(&self, delivered: &[(Uuid, ChunkId)]) -> Result<(), MetaError> {
        let delivered = delivered.to_vec();
        on_redb!(self, |m| m.marks_delivered(&delivered))
    }

    async fn pending_mark_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.pending_mark_count())
    }

    async fn quarantined(
        &self,
        node_id: &Uuid,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        let id = *node_id;
        on_redb!(self, |m| m.quarantined(&id, after, limit))
    }

    async fn update_quarantine(
        &self,
        node_id: &Uuid,
        add: &[(ChunkId, QuarantineMark)],
        release: &[ChunkId],
    ) -> Result<usize, MetaError> {
        let (id, add, release) = (*node_id, add.to_vec(), release.to_vec());
        on_redb!(self, |m| m.update_quarantine(&id, &add, &release))
    }

    async fn delete_quarantined(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        let (id, chunks) = (*node_id, chunk_ids.to_vec());
        on_redb!(self, |m| m.delete_quarantined(&id, &chunks))
    }

    async fn quarantine_len(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.quarantine_len())
    }

    async fn mark_damaged(
        &self,
        node_id: &Uuid,
        reports: &[ChunkDamage],
        now_unix_ms: u64,
    ) -> Result<Vec<DamageOutcome>, MetaError> {
        let (node_id, reports) = (*node_id, reports.to_vec());
        on_redb!(self, |m| m.mark_damaged(&node_id, &reports, now_unix_ms))
    }

    async fn get_damage(&self, id: &Uuid) -> Result<Option<DamagedFile>, MetaError> {
        let id = *id;
        on_redb!(self, |m| m.get_damage(&id))
    }

    async fn list_damaged(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DamagedFile>, MetaError> {
        on_redb!(self, |m| m.list_damaged(after, limit))
    }

    async fn damaged_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.damaged_count())
    }

    async fn begin_move(
        &self,
        file_id: &Uuid,
        part_index: u32,
        from_node: &Uuid,
        to_node: &Uuid,
        to_chunk: ChunkId,
        now_unix_ms: u64,
    ) -> Result<BeginOutcome, MetaError> {
        let (file_id, from_node, to_node) = (*file_id, *from_node, *to_node);
        on_redb!(self, |m| m.begin_move(
            &file_id,
            part_index,
            &from_node,
            &to_node,
            to_chunk,
            now_unix_ms
        ))
    }

    async fn swap_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        mark_delivered: bool,
        release_after_unix_ms: u64,
        now_unix_ms: u64,
    ) -> Result<SwapOutcome, MetaError> {
        let (to_node, to_chunk) = (*to_node, *to_chunk);
        on_redb!(self, |m| m.swap_move(
            &to_node,
            &to_chunk,
            mark_delivered,
            release_after_unix_ms,
            now_unix_ms
        ))
    }

    async fn abandon_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        now_unix_ms: u64,
    ) -> Result<bool, MetaError> {
        let (to_node, to_chunk) = (*to_node, *to_chunk);
        on_redb!(self, |m| m.abandon_move(&to_node, &to_chunk, now_unix_ms))
    }

    async fn roll_back_unfinished_moves(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<MoveRecord>, MetaError> {
        on_redb!(self, |m| m.roll_back_unfinished_moves(now_unix_ms))
    }

    async fn release_moved_sources(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        on_redb!(self, |m| m.release_moved_sources(now_unix_ms))
    }

    async fn list_moves(&self) -> Result<Vec<MoveRecord>, MetaError> {
        on_redb!(self, |m| m.list_moves())
    }

    async fn move_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.move_count())
    }

    async fn insert_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        let key = key.clone();
        on_redb!(self, |m| m.insert_key(&key))
    }

    async fn insert_first_key(&self, key: &AccessKey) -> Result<bool, MetaError> {
        let key = key.clone();
        on_redb!(self, |m| m.insert_first_key(&key))
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<AccessKey>, MetaError> {
        let id = id.clone();
        on_redb!(self, |m| m.get_key(&id))
    }

    async fn list_keys(&self) -> Result<Vec<AccessKey>, MetaError> {
        on_redb!(self, |m| m.list_keys())
    }

    async fn key_count(&self) -> Result<u64, MetaError> {
        on_redb!(self, |m| m.key_count())
    }

    async fn revoke_key(
        &self,
        id: &KeyId,
        at_unix_ms: u64,
    ) -> Result<Option<AccessKey>, MetaError> {
        let id = id.clone();
        on_redb!(self, |m| m.revoke_key(&id, at_unix_ms))
    }

    async fn create_bucket(
        &self,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<BucketRecord, ObjectStoreError> {
        let name = name.to_owned();
        on_redb!(self, |m| m.create_bucket(&name, now_unix_ms))
    }

    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, ObjectStoreError> {
        let name = name.to_owned();
        on_redb!(self, |m| m.get_bucket(&name))
    }

    async fn list_buckets(&self) -> Result<Vec<BucketRecord>, ObjectStoreError> {
        on_redb!(self, |m| m.list_buckets())
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectStoreError> {
        let name = name.to_owned();
        on_redb!(self, |m| m.delete_bucket(&name))
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Option<ObjectRecord>, ObjectStoreError> {
        let (bucket, key, record) = (bucket.to_owned(), key.to_owned(), record.clone());
        on_redb!(self, |m| m.put_object(&bucket, &key, &record))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Vec<FileRecord>), ObjectStoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        on_redb!(self, |m| m.get_object(&bucket, &key))
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectStoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        on_redb!(self, |m| m.head_object(&bucket, &key))
    }

    async fn object_by_id(&self, id: &Uuid) -> Result<Option<ObjectById>, ObjectStoreError> {
        let id = *id;
        on_redb!(self, |m| m.object_by_id(&id))
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        on_redb!(self, |m| m.delete_object(&bucket, &key))
    }

    async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage<ObjectRecord>, ObjectStoreError> {
        let (bucket, query) = (bucket.to_owned(), query.clone());
        on_redb!(self, |m| m.list_objects(&bucket, &query))
    }

    async fn create_multipart(&self, record: &MultipartRecord) -> Result<(), ObjectStoreError> {
        let record = record.clone();
        on_redb!(self, |m| m.create_multipart(&record))
    }

    async fn get_multipart(
        &self,
        upload_id: &Uuid,
    ) -> Result<Option<MultipartRecord>, ObjectStoreError> {
        let id = *upload_id;
        on_redb!(self, |m| m.get_multipart(&id))
    }

    async fn put_part(
        &self,
        upload_id: &Uuid,
        part: &UploadedPart,
    ) -> Result<(), ObjectStoreError> {
        let (id, part) = (*upload_id, part.clone());
        on_redb!(self, |m| m.put_part(&id, &part))
    }

    async fn list_parts(
        &self,
        upload_id: &Uuid,
    ) -> Result<(MultipartRecord, Vec<UploadedPart>), ObjectStoreError> {
        let id = *upload_id;
        on_redb!(self, |m| m.list_parts(&id))
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
    ) -> Result<Vec<MultipartRecord>, ObjectStoreError> {
        let bucket = bucket.to_owned();
        on_redb!(self, |m| m.list_multipart_uploads(&bucket))
    }

    async fn abort_multipart(&self, upload_id: &Uuid) -> Result<usize, ObjectStoreError> {
        let id = *upload_id;
        on_redb!(self, |m| m.abort_multipart(&id))
    }

    async fn multipart_started_before(
        &self,
        before_unix_ms: u64,
    ) -> Result<Vec<Uuid>, ObjectStoreError> {
        on_redb!(self, |m| m.multipart_started_before(before_unix_ms))
    }

    async fn complete_multipart(
        &self,
        upload_id: &Uuid,
        bucket: &str,
        key: &str,
        listed: &[CompletedPartRef],
        now_unix_ms: u64,
        etag: MultipartEtag,
    ) -> Result<ObjectRecord, ObjectStoreError> {
        let (id, bucket, key, listed) = (
            *upload_id,
            bucket.to_owned(),
            key.to_owned(),
            listed.to_vec(),
        );
        on_redb!(self, |m| m.complete_multipart(
            &id,
            &bucket,
            &key,
            &listed,
            now_unix_ms,
            etag
        ))
    }
}
