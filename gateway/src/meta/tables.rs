//! The redb tables of schema version 1 and their key layouts.

use redb::TableDefinition;
use uuid::Uuid;

use super::records::ChunkId;

/// Schema version this release writes and reads.
pub const SCHEMA_VERSION: u64 = 1;

/// `"version" -> u64`.
pub(crate) const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("schema");
pub(crate) const SCHEMA_VERSION_KEY: &str = "version";

/// File id -> encoded [`super::UploadSession`].
pub(crate) const SESSIONS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("sessions");
/// File id -> encoded [`super::FileRecord`].
pub(crate) const FILES: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("files");
/// Node id -> encoded [`super::NodeRecord`].
pub(crate) const NODES: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("nodes");
/// Node id ‖ chunk id -> encoded delete entry. Node first, so one node's queue is one range.
pub(crate) const DELETE_QUEUE: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("delete_queue");
/// Node id ‖ chunk id -> id of the file or live session holding the chunk. An index kept in step
/// with `sessions` and `files`, so a node's referenced chunks are one range scan.
pub(crate) const CHUNK_REFS: TableDefinition<&[u8; 32], &[u8; 16]> =
    TableDefinition::new("chunk_refs");

/// Node id ‖ chunk id -> encoded [`super::QuarantineMark`]: chunks found unreferenced, waiting
/// out the grace period before they may be deleted. Added after schema version 1's first
/// release; opening an older database creates it empty.
pub(crate) const QUARANTINE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("quarantine");

/// `"id" -> 16 bytes`: the cluster's identity, made when the metadata is created (or first
/// opened by a release that has it). Nodes keep the id of the cluster they joined.
pub(crate) const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
pub(crate) const CLUSTER_ID_KEY: &str = "id";

/// Node id -> encoded [`super::UnaccountedNode`]: nodes holding data this metadata cannot
/// account for. Nothing on them is deleted while they are listed.
pub(crate) const UNACCOUNTED: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("unaccounted_nodes");
pub(crate) const UNACCOUNTED_NAME: &str = "unaccounted_nodes";

/// Node id ‖ chunk id -> encoded commit mark ([`super::marks`]): marks of committed files not
/// yet acknowledged by their nodes. Added after schema version 1's first release; opening an
/// older database creates it empty.
pub(crate) const PENDING_MARKS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("pending_marks");

/// Access key id -> encoded [`crate::auth::AccessKey`]. Added after the first release within
/// schema version 1: an older database simply lacks it until [`super::Meta::open`] creates it.
pub(crate) const ACCESS_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("access_keys");

/// File id -> encoded [`super::DamagedFile`]: files with a part a node found corrupt or
/// unreadable. Added after schema version 1's first release; opening an older database creates
/// it empty.
pub(crate) const DAMAGED: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("damaged_files");
pub(crate) const DAMAGED_NAME: &str = "damaged_files";
/// Target node ‖ target chunk id -> encoded [`super::moves::MoveRecord`]: part moves of the
/// rebalancer in progress. Added after schema version 1's first release; opening an older
/// database creates it empty.
pub(crate) const MOVES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("moves");
pub(crate) const MOVES_NAME: &str = "moves";

pub(crate) const ACCESS_KEYS_NAME: &str = "access_keys";
pub(crate) const SESSIONS_NAME: &str = "sessions";
pub(crate) const FILES_NAME: &str = "files";
pub(crate) const NODES_NAME: &str = "nodes";
pub(crate) const DELETE_QUEUE_NAME: &str = "delete_queue";
pub(crate) const QUARANTINE_NAME: &str = "quarantine";

/// Every table of the metadata, as a snapshot (`backup.rs`) copies them. A table added above
/// must be added here too, or backups silently lose it: `backup/tests.rs` fails on any table a
/// populated database has that this list lacks.
pub(crate) const SNAPSHOT_TABLES: &[&dyn super::backup::SnapshotTable] = &[
    &SCHEMA,
    &CLUSTER,
    &SESSIONS,
    &FILES,
    &NODES,
    &DELETE_QUEUE,
    &CHUNK_REFS,
    &QUARANTINE,
    &UNACCOUNTED,
    &ACCESS_KEYS,
    &PENDING_MARKS,
    &super::buckets::BUCKETS,
    &super::buckets::OBJECTS,
    &super::buckets::UPLOADS,
    &super::buckets::PARTS,
    &super::buckets::OBJECT_IDS,
    &DAMAGED,
    &MOVES,
];

/// Key of a chunk on a node.
pub(crate) fn chunk_key(node_id: &Uuid, chunk_id: &ChunkId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(node_id.as_bytes());
    key[16..].copy_from_slice(chunk_id);
    key
}

/// Inverse of [`chunk_key`].
pub(crate) fn split_chunk_key(key: &[u8; 32]) -> (Uuid, ChunkId) {
    let mut node = [0u8; 16];
    let mut chunk = [0u8; 16];
    node.copy_from_slice(&key[..16]);
    chunk.copy_from_slice(&key[16..]);
    (Uuid::from_bytes(node), chunk)
}

/// First and last possible keys of `node_id`'s chunks.
pub(crate) fn node_key_bounds(node_id: &Uuid) -> ([u8; 32], [u8; 32]) {
    (
        chunk_key(node_id, &[0; 16]),
        chunk_key(node_id, &[0xff; 16]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_round_trip_and_group_by_node() {
        let node = Uuid::new_v4();
        let chunk = [7u8; 16];
        let key = chunk_key(&node, &chunk);
        assert_eq!(split_chunk_key(&key), (node, chunk));
        let (lo, hi) = node_key_bounds(&node);
        assert!(lo <= key && key <= hi);
    }
}
