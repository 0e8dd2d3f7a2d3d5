//! The node's report to the gateway (HTTP JSON, node → gateway), sent to
//! `POST /internal/nodes/register` once at start and to `POST /internal/nodes/heartbeat`
//! periodically, both on the gateway's internal listener over HTTPS with mutual TLS: the node's
//! certificate names its node id, which must equal `node_id` below (the JSON is unchanged from
//! the token release, so its versions stay as they were). Kept here beside the QUIC protocol
//! because it is the other half of what crosses between node and gateway.

use serde::{Deserialize, Serialize};

pub const REGISTER_PATH: &str = "/internal/nodes/register";
pub const HEARTBEAT_PATH: &str = "/internal/nodes/heartbeat";
/// Newest version of the JSON below; the gateway refuses reports of a version it does not
/// know. 1: every field without a "since" note. 2: `read_only`. 3: `cluster_id`. 4: `scrub`.
///
/// Version 1 gateways refuse unknown fields, so a node sends version 2 only to a gateway whose
/// [`ReportAck::report_version`] says it reads it, and otherwise
/// [`NodeReport::for_version`]`(1)`, which keeps the meaning of the new fields where it can.
pub const REPORT_VERSION: u32 = 4;
/// Oldest report version gateways still read.
pub const MIN_REPORT_VERSION: u32 = 1;

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
    /// Since version 2. True while the node's disk is full: it serves reads and deletes and
    /// takes no new parts. Left out when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// The node's software version, for operators.
    pub software: String,
    /// Since version 3. The id of the cluster the node joined (kept in its data dir), absent
    /// until a gateway told it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Since version 4. What the node's reads and background scrub found: counters, the
    /// current or last pass, and the chunks found corrupt or unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubReport>,
}

/// Most damaged chunks one report lists (and a node keeps); more are counted in
/// [`ScrubReport::damaged_dropped`].
pub const MAX_DAMAGED_REPORTED: usize = 256;

/// Since report version 4: the node's own view of its data's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Blocks (or chunk bodies) that failed their crc32c, found by reads or by the scrub,
    /// since the node started.
    pub checksum_mismatches: u64,
    /// Chunks that could not be read (I/O error), found by reads or by the scrub.
    pub io_errors: u64,
    /// Chunks the scrub has verified (clean or not) since the node started.
    pub chunks_scrubbed: u64,
    pub bytes_scrubbed: u64,
    /// Scrub passes finished since the node started.
    pub passes: u64,
    /// The scrub's rate (bytes/s); 0 when the scrub is off.
    pub rate: u64,
    /// The running pass, or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<ScrubPass>,
    /// Chunks found damaged and still held, at most [`MAX_DAMAGED_REPORTED`].
    #[serde(default)]
    pub damaged: Vec<DamagedChunk>,
    /// Damaged chunks beyond the list's bound.
    #[serde(default)]
    pub damaged_dropped: u64,
}

/// A scrub pass over every chunk of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubPass {
    pub started_unix_ms: u64,
    /// Absent while the pass runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<u64>,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Chunks this pass found damaged.
    pub found: u64,
}

/// What is wrong with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// A block (or the whole body) does not match its crc32c.
    ChecksumMismatch,
    /// The chunk file could not be read, or its header or crc table is unusable.
    Unreadable,
}

/// Who found a damaged chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    Scrub,
    Read,
}

/// One damaged chunk a node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedChunk {
    /// 32 lowercase hex digits.
    pub chunk_id: String,
    pub damage: Damage,
    /// The first bad block, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    pub found_by: FoundBy,
    pub found_unix_ms: u64,
}

impl NodeReport {
    /// This report as a gateway reading at most `version` understands it. For version 1 the
    /// `read_only` flag cannot be sent; a read-only node then reports itself full
    /// (`used = capacity`), which a version 1 gateway already keeps new parts away from.
    pub fn for_version(mut self, version: u32) -> NodeReport {
        let version = version.clamp(MIN_REPORT_VERSION, REPORT_VERSION);
        self.version = version;
        if version < 2 {
            if self.read_only {
                self.used = self.used.max(self.capacity);
            }
            self.read_only = false;
        }
        if version < 3 {
            self.cluster_id = None;
        }
        if version < 4 {
            self.scrub = None;
        }
        self
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn version_one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// How often the gateway wants heartbeats; missing three marks the node down.
    pub heartbeat_interval_ms: u64,
    /// The newest report version the gateway reads (absent, i.e. 1, from older gateways).
    #[serde(default = "version_one")]
    pub report_version: u32,
    /// The cluster's id, for a node that keeps none yet to keep (sent only to nodes whose data
    /// the gateway's metadata accounts for; absent from older gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Start a scrub pass now (`POST /admin/scrub`); sent once per request, only to nodes
    /// reporting version 4 or later. Absent (false) from older gateways.
    #[serde(default, skip_serializing_if = "is_false")]
    pub scrub_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report and ack exactly as version 1 defined them, to check both directions of
    /// compatibility against the real thing.
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct NodeReportV1 {
        version: u32,
        node_id: String,
        name: String,
        shard_addrs: Vec<std::net::SocketAddr>,
        capacity: u64,
        used: u64,
        chunk_count: u64,
        in_flight: u32,
        #[serde(default)]
        draining: bool,
        software: String,
    }

    #[derive(Debug, Deserialize)]
    struct ReportAckV1 {
        heartbeat_interval_ms: u64,
    }

    fn report(read_only: bool) -> NodeReport {
        NodeReport {
            version: REPORT_VERSION,
            node_id: "6f1c2a0e-8a4b-4c55-9d7e-0a1b2c3d4e5f".into(),
            name: "n1".into(),
            shard_addrs: vec!["127.0.0.1:7000".parse().unwrap()],
            capacity: 100,
            used: 40,
            chunk_count: 2,
            in_flight: 0,
            draining: false,
            read_only,
            software: "sixfold-node 0.2.0".into(),
            cluster_id: Some("0c1a2b3c-4d5e-4f60-8a1b-2c3d4e5f6071".into()),
            scrub: Some(ScrubReport {
                checksum_mismatches: 1,
                damaged: vec![DamagedChunk {
                    chunk_id: "00".repeat(16),
                    damage: Damage::ChecksumMismatch,
                    block: Some(2),
                    found_by: FoundBy::Scrub,
                    found_unix_ms: 5,
                }],
                ..ScrubReport::default()
            }),
        }
    }

    #[test]
    fn a_version_3_gateway_gets_no_scrub_report() {
        let v3 = report(false).for_version(3);
        assert_eq!((v3.version, v3.scrub.is_none()), (3, true));
        assert!(v3.cluster_id.is_some());
        let v4 = serde_json::to_value(report(false)).unwrap();
        assert_eq!(v4["scrub"]["damaged"][0]["damage"], "checksum_mismatch");
        assert_eq!(v4["scrub"]["damaged"][0]["found_by"], "scrub");
        let back: NodeReport = serde_json::from_value(v4).unwrap();
        assert_eq!(back, report(false));
        // A version 3 report (no scrub field) still decodes.
        let v3: NodeReport =
            serde_json::from_slice(&serde_json::to_vec(&report(false).for_version(3)).unwrap())
                .unwrap();
        assert_eq!(v3.scrub, None);
        // An old gateway's ack asks for no scrub; the flag is left out when false.
        let ack: ReportAck = serde_json::from_slice(br#"{"heartbeat_interval_ms":5}"#).unwrap();
        assert!(!ack.scrub_now);
        let json = serde_json::to_value(ReportAck {
            heartbeat_interval_ms: 5,
            report_version: REPORT_VERSION,
            cluster_id: None,
            scrub_now: false,
        })
        .unwrap();
        assert!(json.get("scrub_now").is_none());
    }

    #[test]
    fn a_version_1_gateway_accepts_what_a_node_sends_it() {
        for read_only in [false, true] {
            let json = serde_json::to_vec(&report(read_only).for_version(1)).unwrap();
            let old: NodeReportV1 = serde_json::from_slice(&json).expect("v1 gateway reads it");
            assert_eq!(old.version, 1);
            // A full node looks full to an old gateway.
            assert_eq!(old.used, if read_only { 100 } else { 40 });
        }
        // A node that is not read-only sends nothing new even in version 2.
        let json = serde_json::to_value(report(false)).unwrap();
        assert!(json.get("read_only").is_none());
    }

    #[test]
    fn version_1_reports_and_acks_still_decode() {
        let v1 = br#"{"version":1,"node_id":"6f1c2a0e-8a4b-4c55-9d7e-0a1b2c3d4e5f","name":"n1",
            "shard_addrs":["127.0.0.1:7000"],"capacity":100,"used":40,"chunk_count":2,
            "in_flight":0,"software":"sixfold-node 0.1.0"}"#;
        let r: NodeReport = serde_json::from_slice(v1).expect("new gateway reads v1");
        assert_eq!((r.version, r.read_only, r.draining), (1, false, false));
        let ack: ReportAck = serde_json::from_slice(br#"{"heartbeat_interval_ms":500}"#).unwrap();
        assert_eq!(
            ack.report_version, 1,
            "an old gateway's ack means version 1"
        );
        let new = ReportAck {
            heartbeat_interval_ms: 500,
            report_version: REPORT_VERSION,
            cluster_id: Some("0c1a2b3c-4d5e-4f60-8a1b-2c3d4e5f6071".into()),
            scrub_now: true,
        };
        let old: ReportAckV1 = serde_json::from_slice(&serde_json::to_vec(&new).unwrap())
            .expect("an old node reads a new ack");
        assert_eq!(old.heartbeat_interval_ms, 500);
    }

    #[test]
    fn a_version_2_gateway_gets_no_cluster_id() {
        let v2 = report(false).for_version(2);
        assert_eq!((v2.version, v2.cluster_id), (2, None));
        let v3 = serde_json::to_value(report(false)).unwrap();
        assert_eq!(v3["cluster_id"], "0c1a2b3c-4d5e-4f60-8a1b-2c3d4e5f6071");
    }

    #[test]
    fn versions_are_clamped_to_what_exists() {
        assert_eq!(report(true).for_version(0).version, 1);
        let r = report(true).for_version(99);
        assert_eq!((r.version, r.read_only, r.used), (REPORT_VERSION, true, 40));
    }
}
