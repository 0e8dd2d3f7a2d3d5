//! The node registry (see `crate::meta::nodes`), shared by every gateway of the database.

use uuid::Uuid;

use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::tables::NODES_NAME;
use crate::meta::{MetaError, NodeRecord, NodeState};

pub(super) fn decode_node(bytes: &[u8]) -> Result<NodeRecord, MetaError> {
    decode(bytes).map_err(MetaError::corrupt(NODES_NAME))
}

impl PostgresMeta {
    /// See [`crate::meta::Meta::upsert_node`].
    pub async fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        let value = encode(node).map_err(MetaError::corrupt(NODES_NAME))?;
        pg_write!(self, MetaError, |tx| {
            tx.put(Table::Nodes, node.id.as_bytes(), &value).await?;
            Ok(())
        })
    }

    /// See [`crate::meta::Meta::get_node`].
    pub async fn get_node(&self, id: &Uuid) -> Result<Option<NodeRecord>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            match tx.get(Table::Nodes, id.as_bytes()).await? {
                Some(v) => Ok(Some(decode_node(&v)?)),
                None => Ok(None),
            }
        })
    }

    /// See [`crate::meta::Meta::list_nodes`].
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            tx.all(Table::Nodes)
                .await?
                .iter()
                .map(|(_, v)| decode_node(v))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::set_node_state`].
    pub async fn set_node_state(
        &self,
        id: &Uuid,
        state: NodeState,
    ) -> Result<NodeRecord, MetaError> {
        pg_write!(self, MetaError, |tx| {
            let mut node = match tx.get(Table::Nodes, id.as_bytes()).await? {
                Some(v) => decode_node(&v)?,
                None => {
                    return Err(MetaError::NotFound {
                        kind: "node",
                        id: *id,
                    });
                }
            };
            node.state = state;
            let value = encode(&node).map_err(MetaError::corrupt(NODES_NAME))?;
            tx.put(Table::Nodes, id.as_bytes(), &value).await?;
            Ok(node)
        })
    }

    /// See [`crate::meta::Meta::remove_node`].
    pub async fn remove_node(&self, id: &Uuid) -> Result<bool, MetaError> {
        pg_write!(self, MetaError, |tx| {
            let removed = tx.delete(Table::Nodes, id.as_bytes()).await?;
            // A removed node holds nothing; should it come back, it is judged afresh.
            tx.delete(Table::Unaccounted, id.as_bytes()).await?;
            Ok(removed)
        })
    }
}
