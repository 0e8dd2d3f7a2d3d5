//! [`MetaStore`] for PostgreSQL: each method is the inherent method of the same name in this
//! module tree (`sessions.rs`, `files.rs`, ...).

use std::collections::HashSet;

use async_trait::async_trait;
use uuid::Uuid;

use super::PostgresMeta;
use crate::auth::{AccessKey, KeyId};
use crate::meta::{
    BeginOutcome, BucketRecord, ChunkDamage, ChunkId, CompletedPartRef, DamageOutcome, DamagedFile,
    DeleteReason, FileRecord, ListPage, ListQuery, MetaError, MetaStore, MoveRecord, MultipartEtag,
    MultipartRecord, NodeRecord, NodeState, ObjectById, ObjectRecord, ObjectStoreError, PartRecord,
    PendingDelete, PendingMark, QuarantineMark, Restored, SwapOutcome, UnaccountedNode,
    UploadSession, UploadedPart,
};

#[async_trait]
impl MetaStore for PostgresMeta {
    fn coordination(&self) -> Option<&dyn crate::meta::coordination::Coordination> {
        Some(self)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn cluster_id(&self) -> Uuid {
        PostgresMeta::cluster_id(self)
    }

    async fn adopt_cluster_id(&self, id: Uuid) -> Result<(), MetaError> {
        PostgresMeta::adopt_cluster_id(self, id).await
    }

    async fn begin_session(&self, session: &UploadSession) -> Result<(), MetaError> {
        PostgresMeta::begin_session(self, session).await
    }

    async fn get_session(&self, file_id: &Uuid) -> Result<Option<UploadSession>, MetaError> {
        PostgresMeta::get_session(self, file_id).await
    }

    async fn commit_session(
        &self,
        file_id: &Uuid,
        acked: Vec<PartRecord>,
        checksum: String,
        size: u64,
    ) -> Result<FileRecord, MetaError> {
        PostgresMeta::commit_session(self, file_id, acked, checksum, size).await
    }

    async fn abort_session(&self, file_id: &Uuid) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        PostgresMeta::abort_session(self, file_id).await
    }

    async fn sessions_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UploadSession>, MetaError> {
        PostgresMeta::sessions_page(self, after, limit).await
    }

    async fn session_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::session_count(self).await
    }

    async fn get_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        PostgresMeta::get_file(self, id).await
    }

    async fn list_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        PostgresMeta::list_files(self, after, limit).await
    }

    async fn list_listed_files(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, MetaError> {
        PostgresMeta::list_listed_files(self, after, limit).await
    }

    async fn delete_file(&self, id: &Uuid) -> Result<Option<FileRecord>, MetaError> {
        PostgresMeta::delete_file(self, id).await
    }

    async fn file_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::file_count(self).await
    }

    async fn restore_file(&self, file: &FileRecord) -> Result<Restored, MetaError> {
        PostgresMeta::restore_file(self, file).await
    }

    async fn knows_file_id(&self, id: &Uuid) -> Result<bool, MetaError> {
        PostgresMeta::knows_file_id(self, id).await
    }

    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        PostgresMeta::upsert_node(self, node).await
    }

    async fn get_node(&self, id: &Uuid) -> Result<Option<NodeRecord>, MetaError> {
        PostgresMeta::get_node(self, id).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        PostgresMeta::list_nodes(self).await
    }

    async fn set_node_state(&self, id: &Uuid, state: NodeState) -> Result<NodeRecord, MetaError> {
        PostgresMeta::set_node_state(self, id, state).await
    }

    async fn remove_node(&self, id: &Uuid) -> Result<bool, MetaError> {
        PostgresMeta::remove_node(self, id).await
    }

    async fn mark_unaccounted(&self, node: &UnaccountedNode) -> Result<(), MetaError> {
        PostgresMeta::mark_unaccounted(self, node).await
    }

    async fn is_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        PostgresMeta::is_unaccounted(self, id).await
    }

    async fn unaccounted_nodes(&self) -> Result<Vec<UnaccountedNode>, MetaError> {
        PostgresMeta::unaccounted_nodes(self).await
    }

    async fn unaccounted_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::unaccounted_count(self).await
    }

    async fn clear_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        PostgresMeta::clear_unaccounted(self, id).await
    }

    async fn pending_deletes(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError> {
        PostgresMeta::pending_deletes(self, node_id, limit).await
    }

    async fn complete_delete(&self, node_id: &Uuid, chunk_id: &ChunkId) -> Result<bool, MetaError> {
        PostgresMeta::complete_delete(self, node_id, chunk_id).await
    }

    async fn enqueue_deletes(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
        reason: DeleteReason,
    ) -> Result<usize, MetaError> {
        PostgresMeta::enqueue_deletes(self, node_id, chunk_ids, reason).await
    }

    async fn delete_queue_len(&self) -> Result<u64, MetaError> {
        PostgresMeta::delete_queue_len(self).await
    }

    async fn referenced_among(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<HashSet<ChunkId>, MetaError> {
        PostgresMeta::referenced_among(self, node_id, chunk_ids).await
    }

    async fn referenced_count(&self, node_id: &Uuid) -> Result<u64, MetaError> {
        PostgresMeta::referenced_count(self, node_id).await
    }

    async fn pending_marks(
        &self,
        node_id: &Uuid,
        limit: usize,
    ) -> Result<Vec<PendingMark>, MetaError> {
        PostgresMeta::pending_marks(self, node_id, limit).await
    }

    async fn marks_delivered(&self, delivered: &[(Uuid, ChunkId)]) -> Result<(), MetaError> {
        PostgresMeta::marks_delivered(self, delivered).await
    }

    async fn pending_mark_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::pending_mark_count(self).await
    }

    async fn quarantined(
        &self,
        node_id: &Uuid,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        PostgresMeta::quarantined(self, node_id, after, limit).await
    }

    async fn update_quarantine(
        &self,
        node_id: &Uuid,
        add: &[(ChunkId, QuarantineMark)],
        release: &[ChunkId],
    ) -> Result<usize, MetaError> {
        PostgresMeta::update_quarantine(self, node_id, add, release).await
    }

    async fn delete_quarantined(
        &self,
        node_id: &Uuid,
        chunk_ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, QuarantineMark)>, MetaError> {
        PostgresMeta::delete_quarantined(self, node_id, chunk_ids).await
    }

    async fn quarantine_len(&self) -> Result<u64, MetaError> {
        PostgresMeta::quarantine_len(self).await
    }

    async fn insert_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        PostgresMeta::insert_key(self, key).await
    }

    async fn insert_first_key(&self, key: &AccessKey) -> Result<bool, MetaError> {
        PostgresMeta::insert_first_key(self, key).await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<AccessKey>, MetaError> {
        PostgresMeta::get_key(self, id).await
    }

    async fn list_keys(&self) -> Result<Vec<AccessKey>, MetaError> {
        PostgresMeta::list_keys(self).await
    }

    async fn key_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::key_count(self).await
    }

    async fn revoke_key(
        &self,
        id: &KeyId,
        at_unix_ms: u64,
    ) -> Result<Option<AccessKey>, MetaError> {
        PostgresMeta::revoke_key(self, id, at_unix_ms).await
    }

    async fn create_bucket(
        &self,
        name: &str,
        now_unix_ms: u64,
    ) -> Result<BucketRecord, ObjectStoreError> {
        PostgresMeta::create_bucket(self, name, now_unix_ms).await
    }

    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, ObjectStoreError> {
        PostgresMeta::get_bucket(self, name).await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketRecord>, ObjectStoreError> {
        PostgresMeta::list_buckets(self).await
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ObjectStoreError> {
        PostgresMeta::delete_bucket(self, name).await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<Option<ObjectRecord>, ObjectStoreError> {
        PostgresMeta::put_object(self, bucket, key, record).await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Vec<FileRecord>), ObjectStoreError> {
        PostgresMeta::get_object(self, bucket, key).await
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectStoreError> {
        PostgresMeta::head_object(self, bucket, key).await
    }

    async fn object_by_id(&self, id: &Uuid) -> Result<Option<ObjectById>, ObjectStoreError> {
        PostgresMeta::object_by_id(self, id).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError> {
        PostgresMeta::delete_object(self, bucket, key).await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage<ObjectRecord>, ObjectStoreError> {
        PostgresMeta::list_objects(self, bucket, query).await
    }

    async fn create_multipart(&self, record: &MultipartRecord) -> Result<(), ObjectStoreError> {
        PostgresMeta::create_multipart(self, record).await
    }

    async fn get_multipart(
        &self,
        upload_id: &Uuid,
    ) -> Result<Option<MultipartRecord>, ObjectStoreError> {
        PostgresMeta::get_multipart(self, upload_id).await
    }

    async fn put_part(
        &self,
        upload_id: &Uuid,
        part: &UploadedPart,
    ) -> Result<(), ObjectStoreError> {
        PostgresMeta::put_part(self, upload_id, part).await
    }

    async fn list_parts(
        &self,
        upload_id: &Uuid,
    ) -> Result<(MultipartRecord, Vec<UploadedPart>), ObjectStoreError> {
        PostgresMeta::list_parts(self, upload_id).await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
    ) -> Result<Vec<MultipartRecord>, ObjectStoreError> {
        PostgresMeta::list_multipart_uploads(self, bucket).await
    }

    async fn abort_multipart(&self, upload_id: &Uuid) -> Result<usize, ObjectStoreError> {
        PostgresMeta::abort_multipart(self, upload_id).await
    }

    async fn multipart_started_before(
        &self,
        before_unix_ms: u64,
    ) -> Result<Vec<Uuid>, ObjectStoreError> {
        PostgresMeta::multipart_started_before(self, before_unix_ms).await
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
        PostgresMeta::complete_multipart(self, upload_id, bucket, key, listed, now_unix_ms, etag)
            .await
    }

    async fn mark_damaged(
        &self,
        node_id: &Uuid,
        reports: &[ChunkDamage],
        now_unix_ms: u64,
    ) -> Result<Vec<DamageOutcome>, MetaError> {
        PostgresMeta::mark_damaged(self, node_id, reports, now_unix_ms).await
    }

    async fn get_damage(&self, id: &Uuid) -> Result<Option<DamagedFile>, MetaError> {
        PostgresMeta::get_damage(self, id).await
    }

    async fn list_damaged(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DamagedFile>, MetaError> {
        PostgresMeta::list_damaged(self, after, limit).await
    }

    async fn damaged_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::damaged_count(self).await
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
        PostgresMeta::begin_move(
            self,
            file_id,
            part_index,
            from_node,
            to_node,
            to_chunk,
            now_unix_ms,
        )
        .await
    }

    async fn swap_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        mark_delivered: bool,
        release_after_unix_ms: u64,
        now_unix_ms: u64,
    ) -> Result<SwapOutcome, MetaError> {
        PostgresMeta::swap_move(
            self,
            to_node,
            to_chunk,
            mark_delivered,
            release_after_unix_ms,
            now_unix_ms,
        )
        .await
    }

    async fn abandon_move(
        &self,
        to_node: &Uuid,
        to_chunk: &ChunkId,
        now_unix_ms: u64,
    ) -> Result<bool, MetaError> {
        PostgresMeta::abandon_move(self, to_node, to_chunk, now_unix_ms).await
    }

    async fn roll_back_unfinished_moves(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<MoveRecord>, MetaError> {
        PostgresMeta::roll_back_unfinished_moves(self, now_unix_ms).await
    }

    async fn release_moved_sources(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<(Uuid, ChunkId)>, MetaError> {
        PostgresMeta::release_moved_sources(self, now_unix_ms).await
    }

    async fn list_moves(&self) -> Result<Vec<MoveRecord>, MetaError> {
        PostgresMeta::list_moves(self).await
    }

    async fn move_count(&self) -> Result<u64, MetaError> {
        PostgresMeta::move_count(self).await
    }
}
