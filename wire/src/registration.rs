//! The node's report to the gateway (HTTP JSON, node → gateway), sent to
//! `POST /internal/nodes/register` once at start and to `POST /internal/nodes/heartbeat`
//! periodically, both with `Authorization: Bearer <cluster token>`. Kept here beside the QUIC
//! protocol because it is the other half of what crosses between node and gateway.

use serde::{Deserialize, Serialize};

pub const REGISTER_PATH: &str = "/internal/nodes/register";
pub const HEARTBEAT_PATH: &str = "/internal/nodes/heartbeat";
/// Version of the JSON below; the gateway refuses reports of a version it does not know.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    pub version: u32,
    /// Persistent node id (UUID, hyphenated), kept in the node's data dir.
    pub node_id: String,
    /// Human name (defaults to the host name and data dir).
    pub name: String,
    /// QUIC address of each shard, index = shard number.
    pub shard_addrs: Vec<std::net::SocketAddr>,
    pub capacity: u64,
    pub used: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
    /// True while the node is stopping: it takes no new parts.
    #[serde(default)]
    pub draining: bool,
    /// The node's software version, for operators.
    pub software: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// How often the gateway wants heartbeats; missing three marks the node down.
    pub heartbeat_interval_ms: u64,
}
