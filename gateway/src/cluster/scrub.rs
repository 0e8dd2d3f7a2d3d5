//! What the nodes report of their scrub (report version 4), kept per node for `/nodes`,
//! `/metrics` and `GET /admin/scrub`, the operator's request for a pass (`POST /admin/scrub`,
//! delivered once in the node's next heartbeat answer), and which reported damaged chunks the
//! metadata has already dealt with.
//!
//! The bookkeeping is pure ([`ScrubBoard`] takes the reports and the time in, hands the new
//! damage out); marking the files is the caller's ([`super::Cluster::apply_scrub`]).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sixfold_wire::registration::{Damage, DamagedChunk, ScrubReport};
use uuid::Uuid;

use crate::meta::{ChunkDamage, ChunkId, DamageKind, FoundBy};

/// A chunk id shown as 32 hex digits in logs.
pub struct ChunkHex<'a>(pub &'a ChunkId);

impl std::fmt::Display for ChunkHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Parses a reported chunk id (32 hex digits).
pub fn parse_chunk_id(text: &str) -> Option<ChunkId> {
    let bytes = text.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// A reported damaged chunk as the metadata records it (`None`: a malformed id, which
/// [`super::registration::parse_report`] already refuses).
pub fn to_chunk_damage(d: &DamagedChunk) -> Option<ChunkDamage> {
    Some(ChunkDamage {
        chunk_id: parse_chunk_id(&d.chunk_id)?,
        damage: match d.damage {
            Damage::ChecksumMismatch => DamageKind::ChecksumMismatch,
            Damage::Unreadable => DamageKind::Unreadable,
        },
        block: d.block,
        found_by: match d.found_by {
            sixfold_wire::registration::FoundBy::Scrub => FoundBy::Scrub,
            sixfold_wire::registration::FoundBy::Read => FoundBy::Read,
        },
        found_unix_ms: d.found_unix_ms,
    })
}

#[derive(Debug, Default)]
struct NodeScrub {
    report: Option<ScrubReport>,
    /// When an operator asked for a pass not yet handed to the node.
    requested_unix_ms: Option<u64>,
    /// When the last request was handed to the node.
    delivered_unix_ms: Option<u64>,
    /// Reported chunks the metadata has dealt with (marked, or owned by no file).
    handled: HashSet<ChunkId>,
}

/// Per node: the last scrub report, a pending request, the damage dealt with.
#[derive(Debug, Default)]
pub struct ScrubBoard {
    nodes: HashMap<Uuid, NodeScrub>,
}

/// One node's scrub as `GET /admin/scrub` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeScrubStatus {
    pub node_id: Uuid,
    /// A pass was asked for and not yet handed to the node (its next heartbeat answer does).
    pub requested: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_unix_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_unix_ms: Option<u64>,
    /// The node's last report; `None` from nodes older than report version 4.
    pub report: Option<ScrubReport>,
}

impl ScrubBoard {
    /// Takes a node's report; returns the damaged chunks the metadata has not dealt with yet.
    pub fn update(&mut self, node: Uuid, report: Option<ScrubReport>) -> Vec<ChunkDamage> {
        let entry = self.nodes.entry(node).or_default();
        let Some(report) = report else {
            entry.report = None;
            return Vec::new();
        };
        let reported: Vec<ChunkDamage> =
            report.damaged.iter().filter_map(to_chunk_damage).collect();
        // Chunks no longer reported (deleted, or found clean again) are forgotten.
        let still: HashSet<ChunkId> = reported.iter().map(|d| d.chunk_id).collect();
        entry.handled.retain(|c| still.contains(c));
        entry.report = Some(report);
        reported
            .into_iter()
            .filter(|d| !entry.handled.contains(&d.chunk_id))
            .collect()
    }

    /// The metadata dealt with `chunk` of `node`: not handed out again while reported.
    pub fn handled(&mut self, node: Uuid, chunk: ChunkId) {
        self.nodes.entry(node).or_default().handled.insert(chunk);
    }

    /// Asks `nodes` for a pass now.
    pub fn request(&mut self, nodes: &[Uuid], now_ms: u64) {
        for node in nodes {
            self.nodes.entry(*node).or_default().requested_unix_ms = Some(now_ms);
        }
    }

    /// Whether to tell `node` to start a pass now (once per request).
    pub fn take_request(&mut self, node: Uuid, now_ms: u64) -> bool {
        let Some(entry) = self.nodes.get_mut(&node) else {
            return false;
        };
        if entry.requested_unix_ms.take().is_some() {
            entry.delivered_unix_ms = Some(now_ms);
            true
        } else {
            false
        }
    }

    pub fn status(&self, node: Uuid) -> NodeScrubStatus {
        let entry = self.nodes.get(&node);
        NodeScrubStatus {
            node_id: node,
            requested: entry.is_some_and(|e| e.requested_unix_ms.is_some()),
            requested_unix_ms: entry.and_then(|e| e.requested_unix_ms),
            delivered_unix_ms: entry.and_then(|e| e.delivered_unix_ms),
            report: entry.and_then(|e| e.report.clone()),
        }
    }

    /// The last report of every node that sent one.
    pub fn reports(&self) -> Vec<(Uuid, ScrubReport)> {
        self.nodes
            .iter()
            .filter_map(|(id, e)| e.report.clone().map(|r| (*id, r)))
            .collect()
    }

    pub fn forget(&mut self, node: &Uuid) {
        self.nodes.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use sixfold_wire::registration::FoundBy as WireFoundBy;

    use super::*;

    fn damaged(n: u8) -> DamagedChunk {
        DamagedChunk {
            chunk_id: format!("{n:02x}").repeat(16),
            damage: Damage::ChecksumMismatch,
            block: Some(3),
            found_by: WireFoundBy::Scrub,
            found_unix_ms: 7,
        }
    }

    fn report(chunks: &[u8]) -> ScrubReport {
        ScrubReport {
            checksum_mismatches: chunks.len() as u64,
            damaged: chunks.iter().map(|&n| damaged(n)).collect(),
            ..ScrubReport::default()
        }
    }

    #[test]
    fn new_damage_is_handed_out_until_dealt_with() {
        let node = Uuid::new_v4();
        let mut board = ScrubBoard::default();
        let new = board.update(node, Some(report(&[1, 2])));
        assert_eq!(
            new.iter().map(|d| d.chunk_id[0]).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            (
                new[0].damage,
                new[0].block,
                new[0].found_by,
                new[0].found_unix_ms
            ),
            (DamageKind::ChecksumMismatch, Some(3), FoundBy::Scrub, 7)
        );
        board.handled(node, [1; 16]);
        let new = board.update(node, Some(report(&[1, 2])));
        assert_eq!(new.len(), 1, "chunk 1 was dealt with");
        // Chunk 1 is no longer reported, then again: it is new again.
        board.update(node, Some(report(&[2])));
        let new = board.update(node, Some(report(&[1, 2])));
        assert_eq!(new.len(), 2);
        assert_eq!(board.status(node).report, Some(report(&[1, 2])));
        // An old node sends no scrub report.
        assert!(board.update(node, None).is_empty());
        assert_eq!(board.status(node).report, None);
    }

    #[test]
    fn a_request_is_handed_to_each_node_once() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut board = ScrubBoard::default();
        assert!(!board.take_request(a, 1));
        board.request(&[a, b], 10);
        assert!(board.status(a).requested);
        assert!(board.take_request(a, 11));
        assert!(!board.take_request(a, 12));
        let status = board.status(a);
        assert_eq!(
            (status.requested, status.delivered_unix_ms),
            (false, Some(11))
        );
        assert!(board.status(b).requested);
    }

    #[test]
    fn chunk_ids_are_32_hex_digits() {
        assert_eq!(parse_chunk_id(&"ab".repeat(16)), Some([0xab; 16]));
        assert_eq!(parse_chunk_id(&"AB".repeat(16)), Some([0xab; 16]));
        assert_eq!(parse_chunk_id("ab"), None);
        assert_eq!(parse_chunk_id(&"zz".repeat(16)), None);
        assert_eq!(parse_chunk_id(&"é".repeat(16)), None);
    }
}
