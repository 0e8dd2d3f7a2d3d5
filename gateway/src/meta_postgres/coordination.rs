//! The shared side of the store (see [`crate::meta::coordination`]): gateway liveness, job
//! leases and relayed node reports, each a `k bytea, v bytea` table like the others (schema
//! version 2), with the same versioned codec bytes.

use async_trait::async_trait;
use uuid::Uuid;

use super::nodes::decode_node;
use super::{PostgresMeta, Table, pg_read, pg_write};
use crate::meta::codec::{decode, encode};
use crate::meta::coordination::{Coordination, GatewayBeat, Lease, RelayedReport, may_claim};
use crate::meta::tables::NODES_NAME;
use crate::meta::{MetaError, NodeRecord};

const LIVENESS_NAME: &str = "gateway_liveness";
const LEASES_NAME: &str = "job_leases";
const REPORTS_NAME: &str = "node_reports";

fn decoded<T: serde::de::DeserializeOwned>(table: &'static str, v: &[u8]) -> Result<T, MetaError> {
    decode(v).map_err(MetaError::corrupt(table))
}

#[async_trait]
impl Coordination for PostgresMeta {
    async fn save_node_figures(&self, node: &NodeRecord) -> Result<(), MetaError> {
        pg_write!(self, MetaError, |tx| {
            let mut record = node.clone();
            if let Some(v) = tx.get(Table::Nodes, node.id.as_bytes()).await? {
                record.operator_state = decode_node(&v)?.operator_state;
            }
            let value = encode(&record).map_err(MetaError::corrupt(NODES_NAME))?;
            tx.put(Table::Nodes, node.id.as_bytes(), &value).await?;
            Ok(())
        })
    }

    async fn beat(&self, beat: &GatewayBeat) -> Result<(), MetaError> {
        let value = encode(beat).map_err(MetaError::corrupt(LIVENESS_NAME))?;
        pg_write!(self, MetaError, |tx| {
            tx.put(Table::GatewayLiveness, beat.id.as_bytes(), &value)
                .await?;
            Ok(())
        })
    }

    async fn gateways(&self) -> Result<Vec<GatewayBeat>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            tx.all(Table::GatewayLiveness)
                .await?
                .iter()
                .map(|(_, v)| decoded(LIVENESS_NAME, v))
                .collect()
        })
    }

    async fn forget_gateway(&self, id: Uuid) -> Result<(), MetaError> {
        pg_write!(self, MetaError, |tx| {
            tx.delete(Table::GatewayLiveness, id.as_bytes()).await?;
            Ok(())
        })
    }

    async fn claim_lease(
        &self,
        job: &str,
        holder: Uuid,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, MetaError> {
        let next = Lease {
            holder,
            expires_unix_ms: now_ms.saturating_add(ttl_ms),
        };
        let value = encode(&next).map_err(MetaError::corrupt(LEASES_NAME))?;
        // SERIALIZABLE: of two gateways claiming at once, one commits and the other, retried,
        // reads the winner's lease and backs off.
        pg_write!(self, MetaError, |tx| {
            let current: Option<Lease> = match tx.get(Table::JobLeases, job.as_bytes()).await? {
                Some(v) => Some(decoded(LEASES_NAME, &v)?),
                None => None,
            };
            if !may_claim(current.as_ref(), holder, now_ms) {
                return Ok(false);
            }
            tx.put(Table::JobLeases, job.as_bytes(), &value).await?;
            Ok(true)
        })
    }

    async fn release_lease(&self, job: &str, holder: Uuid) -> Result<(), MetaError> {
        pg_write!(self, MetaError, |tx| {
            if let Some(v) = tx.get(Table::JobLeases, job.as_bytes()).await? {
                let current: Lease = decoded(LEASES_NAME, &v)?;
                if current.holder == holder {
                    tx.delete(Table::JobLeases, job.as_bytes()).await?;
                }
            }
            Ok(())
        })
    }

    async fn lease(&self, job: &str) -> Result<Option<Lease>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            match tx.get(Table::JobLeases, job.as_bytes()).await? {
                Some(v) => Ok(Some(decoded(LEASES_NAME, &v)?)),
                None => Ok(None),
            }
        })
    }

    async fn relay_report(&self, report: &RelayedReport) -> Result<(), MetaError> {
        let value = encode(report).map_err(MetaError::corrupt(REPORTS_NAME))?;
        pg_write!(self, MetaError, |tx| {
            tx.put(Table::NodeReports, report.node_id.as_bytes(), &value)
                .await?;
            Ok(())
        })
    }

    async fn relayed_reports(&self) -> Result<Vec<RelayedReport>, MetaError> {
        pg_read!(self, MetaError, |tx| {
            tx.all(Table::NodeReports)
                .await?
                .iter()
                .map(|(_, v)| decoded(REPORTS_NAME, v))
                .collect()
        })
    }

    async fn forget_report(&self, node_id: Uuid) -> Result<(), MetaError> {
        pg_write!(self, MetaError, |tx| {
            tx.delete(Table::NodeReports, node_id.as_bytes()).await?;
            Ok(())
        })
    }
}
