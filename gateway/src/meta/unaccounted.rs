//! Nodes whose data this metadata cannot account for (see `cluster/membership.rs`): marked when
//! such a node first reports, kept across restarts, and cleared only by an operator's action.
//! While a node is marked, nothing on it is deleted and `/health` says `recovery_needed`.

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::tables::{UNACCOUNTED, UNACCOUNTED_NAME};
use super::{Meta, MetaError};

/// Why and since when a node's data is not accounted for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnaccountedNode {
    pub node_id: Uuid,
    /// What the node reported when it was marked.
    pub chunk_count: u64,
    pub reason: String,
    pub since_unix_ms: u64,
}

impl Meta {
    /// Marks a node (a mark already there is kept as it is).
    pub fn mark_unaccounted(&self, node: &UnaccountedNode) -> Result<(), MetaError> {
        let value = encode(node).map_err(MetaError::corrupt(UNACCOUNTED_NAME))?;
        self.write(|txn| {
            let mut table = txn.open_table(UNACCOUNTED)?;
            if table.get(node.node_id.as_bytes())?.is_none() {
                table.insert(node.node_id.as_bytes(), value.as_slice())?;
            }
            Ok(())
        })
    }

    /// Whether node `id` is marked.
    pub fn is_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        self.read(|txn| Ok(txn.open_table(UNACCOUNTED)?.get(id.as_bytes())?.is_some()))
    }

    /// Every marked node, in id order.
    pub fn unaccounted_nodes(&self) -> Result<Vec<UnaccountedNode>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(UNACCOUNTED)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (_, value) = row?;
                out.push(decode(value.value()).map_err(MetaError::corrupt(UNACCOUNTED_NAME))?);
            }
            Ok(out)
        })
    }

    /// Number of marked nodes.
    pub fn unaccounted_count(&self) -> Result<u64, MetaError> {
        self.read(|txn| Ok(txn.open_table(UNACCOUNTED)?.len()?))
    }

    /// Clears the mark of node `id` (once its data is recovered or the node is removed).
    /// Returns whether it was marked.
    pub fn clear_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        self.write(|txn| {
            Ok(txn
                .open_table(UNACCOUNTED)?
                .remove(id.as_bytes())?
                .is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_stay_until_cleared_and_keep_their_first_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.redb");
        let node = |reason: &str| UnaccountedNode {
            node_id: Uuid::from_u128(4),
            chunk_count: 12,
            reason: reason.into(),
            since_unix_ms: 7,
        };
        {
            let meta = Meta::open(&path).expect("open");
            assert!(!meta.is_unaccounted(&Uuid::from_u128(4)).expect("read"));
            meta.mark_unaccounted(&node("first")).expect("mark");
            meta.mark_unaccounted(&node("second")).expect("mark again");
        }
        let meta = Meta::open(&path).expect("reopen");
        assert_eq!(meta.unaccounted_nodes().expect("list"), vec![node("first")]);
        assert_eq!(meta.unaccounted_count().expect("count"), 1);
        assert!(meta.clear_unaccounted(&Uuid::from_u128(4)).expect("clear"));
        assert!(
            !meta
                .clear_unaccounted(&Uuid::from_u128(4))
                .expect("clear again")
        );
        assert_eq!(meta.unaccounted_count().expect("count"), 0);
    }
}
