//! How the nodes are shown: `GET /nodes` and the per-node gauges of `/metrics`. Presentation,
//! so it lives at the HTTP edge and not in the data path's [`crate::node_client::NodeClient`].

use crate::cluster::Cluster;
use crate::metrics::NodeGauge;

/// What `/nodes` and `/metrics` show of the nodes.
pub trait NodeDirectory: Send + Sync + 'static {
    /// `GET /nodes`.
    fn nodes_json(&self) -> serde_json::Value;

    /// Per-node figures for `/metrics`.
    fn node_gauges(&self) -> Vec<NodeGauge>;
}

impl NodeDirectory for Cluster {
    fn nodes_json(&self) -> serde_json::Value {
        serde_json::to_value(self.nodes()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize the node list");
            serde_json::Value::Array(Vec::new())
        })
    }

    fn node_gauges(&self) -> Vec<NodeGauge> {
        self.nodes()
            .into_iter()
            .map(|n| NodeGauge {
                id: n.id.to_string(),
                // As /nodes shows it: a registered node not yet verified over QUIC is
                // `joining`, not `up`.
                state: n.state_name,
                capacity: n.capacity,
                used: n.used,
            })
            .collect()
    }
}

#[cfg(test)]
impl NodeDirectory for crate::node_client::memory::MemoryNodes {
    fn nodes_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.node_summaries()
                .into_iter()
                .map(|(id, up, capacity, parts, _)| {
                    serde_json::json!({
                        "id": id,
                        "state": if up { "up" } else { "down" },
                        "capacity": capacity,
                        "part_count": parts,
                    })
                })
                .collect(),
        )
    }

    fn node_gauges(&self) -> Vec<NodeGauge> {
        self.node_summaries()
            .into_iter()
            .map(|(id, up, capacity, _, used)| NodeGauge {
                id: id.to_string(),
                state: if up { "up" } else { "down" },
                capacity,
                used,
            })
            .collect()
    }
}
