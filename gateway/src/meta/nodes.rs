//! The node registry.

use redb::ReadableTable;
use uuid::Uuid;

use super::codec::{decode, encode};
use super::records::{NodeRecord, NodeState};
use super::tables::{NODES, NODES_NAME};
use super::{Meta, MetaError};

impl Meta {
    /// Inserts or replaces the record of `node.id` (registration and heartbeats).
    pub fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        let value = encode(node).map_err(MetaError::corrupt(NODES_NAME))?;
        self.write(|txn| {
            txn.open_table(NODES)?
                .insert(node.id.as_bytes(), value.as_slice())?;
            Ok(())
        })
    }

    /// The record of node `id`, if registered.
    pub fn get_node(&self, id: &Uuid) -> Result<Option<NodeRecord>, MetaError> {
        self.read(|txn| {
            let nodes = txn.open_table(NODES)?;
            let Some(value) = nodes.get(id.as_bytes())? else {
                return Ok(None);
            };
            decode(value.value())
                .map(Some)
                .map_err(MetaError::corrupt(NODES_NAME))
        })
    }

    /// Every registered node, in id order.
    pub fn list_nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        self.read(|txn| {
            let nodes = txn.open_table(NODES)?;
            let mut all = Vec::new();
            for row in nodes.iter()? {
                let (_, value) = row?;
                all.push(decode(value.value()).map_err(MetaError::corrupt(NODES_NAME))?);
            }
            Ok(all)
        })
    }

    /// Sets the state of node `id` and returns the updated record.
    pub fn set_node_state(&self, id: &Uuid, state: NodeState) -> Result<NodeRecord, MetaError> {
        self.write(|txn| {
            let mut nodes = txn.open_table(NODES)?;
            let mut node: NodeRecord = match nodes.get(id.as_bytes())? {
                Some(v) => decode(v.value()).map_err(MetaError::corrupt(NODES_NAME))?,
                None => {
                    return Err(MetaError::NotFound {
                        kind: "node",
                        id: *id,
                    });
                }
            };
            node.state = state;
            let value = encode(&node).map_err(MetaError::corrupt(NODES_NAME))?;
            nodes.insert(id.as_bytes(), value.as_slice())?;
            Ok(node)
        })
    }

    /// Removes node `id`'s record (`DELETE /admin/nodes/{id}`); whether it existed. The caller
    /// checks first that nothing references chunks on it.
    pub fn remove_node(&self, id: &Uuid) -> Result<bool, MetaError> {
        self.write(|txn| {
            let mut nodes = txn.open_table(NODES)?;
            let removed = nodes.remove(id.as_bytes())?.is_some();
            // A removed node holds nothing; should it come back, it is judged afresh.
            txn.open_table(super::tables::UNACCOUNTED)?
                .remove(id.as_bytes())?;
            Ok(removed)
        })
    }
}
