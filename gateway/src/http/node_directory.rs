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

    /// Each node's last scrub report (report version 4), by node id, for `/metrics`.
    fn node_scrub_reports(&self) -> Vec<(String, sixfold_wire::registration::ScrubReport)> {
        Vec::new()
    }
}

impl NodeDirectory for Cluster {
    fn nodes_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self.nodes()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize the node list");
            serde_json::Value::Array(Vec::new())
        });
        add_scrub(&mut value, &self.scrub_status());
        value
    }

    fn node_scrub_reports(&self) -> Vec<(String, sixfold_wire::registration::ScrubReport)> {
        self.scrub_reports()
            .into_iter()
            .map(|(id, r)| (id.to_string(), r))
            .collect()
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

/// Adds each node's scrub (`"scrub"`, as `GET /admin/scrub` shows it, with the damaged chunks
/// the node holds) to the `/nodes` list.
fn add_scrub(
    nodes: &mut serde_json::Value,
    status: &[(
        crate::cluster::NodeView,
        crate::cluster::scrub::NodeScrubStatus,
    )],
) {
    let Some(list) = nodes.as_array_mut() else {
        return;
    };
    for node in list {
        let Some(id) = node.get("id").and_then(|v| v.as_str()).map(str::to_owned) else {
            continue;
        };
        let Some((view, s)) = status.iter().find(|(v, _)| v.id.to_string() == id) else {
            continue;
        };
        let mut scrub = serde_json::to_value(super::admin_scrub::node_view(
            view.id,
            &view.name,
            view.state_name,
            s.requested,
            s.report.as_ref(),
        ))
        .unwrap_or_default();
        if let (Some(obj), Some(report)) = (scrub.as_object_mut(), &s.report) {
            obj.remove("node_id");
            obj.remove("name");
            obj.remove("state");
            obj.insert(
                "damaged".into(),
                serde_json::to_value(&report.damaged).unwrap_or_default(),
            );
        }
        if let Some(obj) = node.as_object_mut() {
            obj.insert("scrub".into(), scrub);
        }
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
