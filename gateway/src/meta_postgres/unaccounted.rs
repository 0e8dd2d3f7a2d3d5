//! Nodes whose data this metadata cannot account for (see `crate::meta::unaccounted`).

use uuid::Uuid;

use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::tables::UNACCOUNTED_NAME;
use crate::meta::{MetaError, UnaccountedNode};

impl PostgresMeta {
    /// See [`crate::meta::Meta::mark_unaccounted`].
    pub async fn mark_unaccounted(&self, node: &UnaccountedNode) -> Result<(), MetaError> {
        let value = encode(node).map_err(MetaError::corrupt(UNACCOUNTED_NAME))?;
        pg_write!(self, MetaError, |tx| {
            tx.insert_new(Table::Unaccounted, node.node_id.as_bytes(), &value)
                .await?;
            Ok(())
        })
    }

    /// See [`crate::meta::Meta::is_unaccounted`].
    pub async fn is_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.contains(Table::Unaccounted, id.as_bytes()).await?)
        })
    }

    /// See [`crate::meta::Meta::unaccounted_nodes`].
    pub async fn unaccounted_nodes(&self) -> Result<Vec<UnaccountedNode>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            tx.all(Table::Unaccounted)
                .await?
                .iter()
                .map(|(_, v)| decode(v).map_err(MetaError::corrupt(UNACCOUNTED_NAME)))
                .collect()
        })
    }

    /// See [`crate::meta::Meta::unaccounted_count`].
    pub async fn unaccounted_count(&self) -> Result<u64, MetaError> {
        pg_read!(self, MetaError, |tx| {
            Ok(tx.count(Table::Unaccounted).await?)
        })
    }

    /// See [`crate::meta::Meta::clear_unaccounted`].
    pub async fn clear_unaccounted(&self, id: &Uuid) -> Result<bool, MetaError> {
        pg_write!(self, MetaError, |tx| {
            Ok(tx.delete(Table::Unaccounted, id.as_bytes()).await?)
        })
    }
}
