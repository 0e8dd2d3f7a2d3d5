//! The records the gateway keeps: upload sessions, files, nodes, and chunks waiting for deletion.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::split::PartRange;

/// Identifies one stored part on a node.
pub type ChunkId = [u8; 16];

/// A fresh random chunk id for a planned part. Random rather than derived from (file, part) so
/// that a retried upload can never collide with the chunks of an aborted one still on a node.
pub fn new_chunk_id() -> ChunkId {
    *Uuid::new_v4().as_bytes()
}

/// A part as planned when the upload starts: where it goes and under which chunk id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPart {
    pub index: u32,
    pub offset: u64,
    pub len: u64,
    pub node_id: Uuid,
    #[serde(with = "hex16")]
    pub chunk_id: ChunkId,
}

impl PlannedPart {
    /// Pairs a split plan with the placement's nodes (`nodes[k]` takes `ranges[k]`), giving every
    /// part a fresh chunk id. Returns `None` when the two lists differ in length.
    pub fn plan(ranges: &[PartRange], nodes: &[Uuid]) -> Option<Vec<PlannedPart>> {
        (ranges.len() == nodes.len()).then(|| {
            ranges
                .iter()
                .zip(nodes)
                .map(|(r, node_id)| PlannedPart {
                    index: r.index,
                    offset: r.offset,
                    len: r.len,
                    node_id: *node_id,
                    chunk_id: new_chunk_id(),
                })
                .collect()
        })
    }

    /// The byte range of the file this part holds.
    pub fn range(&self) -> PartRange {
        PartRange {
            index: self.index,
            offset: self.offset,
            len: self.len,
        }
    }

    /// Checks a node's acknowledgement against the plan and the crc32c the gateway computed
    /// over the bytes it sent, and gives the record to commit.
    pub fn verify_ack(
        &self,
        acked_len: u64,
        acked_crc32c: u32,
        computed_crc32c: u32,
    ) -> Result<PartRecord, AckMismatch> {
        if acked_len != self.len {
            return Err(AckMismatch::Length {
                index: self.index,
                planned: self.len,
                acked: acked_len,
            });
        }
        if acked_crc32c != computed_crc32c {
            return Err(AckMismatch::Crc {
                index: self.index,
                computed: computed_crc32c,
                acked: acked_crc32c,
            });
        }
        Ok(PartRecord {
            index: self.index,
            offset: self.offset,
            len: self.len,
            node_id: self.node_id,
            chunk_id: self.chunk_id,
            crc32c: computed_crc32c,
            stored_len: None,
        })
    }
}

/// A node acknowledged something other than what the gateway sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckMismatch {
    #[error("part {index}: node acknowledged {acked} bytes, {planned} were planned")]
    Length {
        index: u32,
        planned: u64,
        acked: u64,
    },
    #[error(
        "part {index}: node acknowledged crc32c {acked:08x}, the gateway computed {computed:08x}"
    )]
    Crc {
        index: u32,
        computed: u32,
        acked: u32,
    },
}

/// An upload in progress, recorded durably before any byte moves (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    pub file_id: Uuid,
    pub name: String,
    pub content_type: Option<String>,
    /// The announced length, or `None` while a body without one is being spooled.
    pub size: Option<u64>,
    pub created_unix_ms: u64,
    pub expires_unix_ms: u64,
    pub parts: Vec<PlannedPart>,
    /// The body is a `multipart/form-data` form streamed through: the planned bytes are the
    /// file followed by the rest of the form, so the committed file may be shorter than the
    /// plan and its last parts' chunks hold the form's trailer (see [`PartRecord::clipped_to`]).
    /// Absent (false) in sessions written before streamed forms existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multipart: bool,
    /// The gateway (its id, see `crate::gateway_id`) whose process is writing the upload: with
    /// several gateways, the others leave the session alone while that gateway is alive.
    /// Absent in sessions written before several gateways existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
}

/// A stored part of a committed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub index: u32,
    pub offset: u64,
    pub len: u64,
    pub node_id: Uuid,
    #[serde(with = "hex16")]
    pub chunk_id: ChunkId,
    /// crc32c of the stored chunk (all [`PartRecord::stored_len`] bytes), as the node
    /// acknowledged it.
    pub crc32c: u32,
    /// Bytes in the stored chunk when it holds more than the file's `len` bytes: a part of a
    /// streamed `multipart/form-data` upload that also holds the end of the form after the
    /// file. `None` (every other part, and every record written before this field existed): the
    /// chunk is exactly the part's `len` bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_len: Option<u64>,
}

impl PartRecord {
    /// The byte range of the file this part holds.
    pub fn range(&self) -> PartRange {
        PartRange {
            index: self.index,
            offset: self.offset,
            len: self.len,
        }
    }

    /// Bytes in the stored chunk: the file's `len` bytes, then anything past the file's end.
    pub fn stored_len(&self) -> u64 {
        self.stored_len.unwrap_or(self.len)
    }

    /// Whether the stored crc32c covers exactly the file's bytes of this part, so that a read
    /// of the whole part can be checked against it.
    pub fn crc_covers_file_bytes(&self) -> bool {
        self.stored_len() == self.len
    }

    /// The record of this stored part in a file of `file_size` bytes whose body (the planned
    /// bytes) runs on past the file: the part keeps its chunk, crc32c and stored length, and
    /// describes only the file's bytes in it. A part wholly past the file's end holds none and
    /// sits at `file_size` with length 0 (its chunk is kept so that it is deleted with the file).
    /// With `file_size` at or past the part's end, the record is unchanged.
    pub fn clipped_to(mut self, file_size: u64) -> PartRecord {
        let stored = self.stored_len();
        let start = self.offset.min(file_size);
        let end = self.offset.saturating_add(stored).min(file_size);
        self.offset = start;
        self.len = end - start;
        self.stored_len = (self.len != stored).then_some(stored);
        self
    }
}

/// A committed, visible file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: Uuid,
    pub name: String,
    pub content_type: Option<String>,
    pub size: u64,
    /// When the file was committed (became visible).
    pub created_unix_ms: u64,
    /// xxh3-128 of the whole file, 32 lowercase hex digits.
    pub checksum: String,
    /// In part order.
    pub parts: Vec<PartRecord>,
}

impl FileRecord {
    /// The part ranges, for [`crate::split::parts_for_range`].
    pub fn ranges(&self) -> Vec<PartRange> {
        self.parts.iter().map(PartRecord::range).collect()
    }
}

/// What a node is doing, as far as placement is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Heartbeating and accepting new parts.
    Up,
    /// Missed its heartbeats: gets no new parts.
    Down,
    /// Being emptied: serves reads, gets no new parts.
    Draining,
    /// Serves reads only.
    ReadOnly,
}

impl NodeState {
    /// Whether new parts may be placed on a node in this state.
    pub fn accepts_writes(self) -> bool {
        self == NodeState::Up
    }
}

/// A registered storage node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: Uuid,
    pub name: String,
    /// One QUIC address per shard, shard 0 first.
    pub shard_addrs: Vec<SocketAddr>,
    pub capacity: u64,
    pub used: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
    pub state: NodeState,
    pub registered_unix_ms: u64,
    pub last_heartbeat_unix_ms: u64,
    /// A state the operator set (`PATCH /admin/nodes/{id}`); kept over restarts of the gateway
    /// and of the node. Absent in records written before operators could set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_state: Option<OperatorState>,
}

/// What an operator can make of a node; `up` is the absence of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorState {
    /// Serves reads, gets no new parts.
    ReadOnly,
    /// Serves reads, gets no new parts, and is to be emptied.
    Draining,
}

/// The state placement and `/nodes` go by: a down node is down whatever was set; otherwise the
/// stronger of what the node reports (stopping, disk full) and what the operator set.
pub fn effective_state(reported: NodeState, operator: Option<OperatorState>) -> NodeState {
    match (reported, operator) {
        (NodeState::Down, _) => NodeState::Down,
        (NodeState::Draining, _) | (_, Some(OperatorState::Draining)) => NodeState::Draining,
        (NodeState::ReadOnly, _) | (_, Some(OperatorState::ReadOnly)) => NodeState::ReadOnly,
        (NodeState::Up, None) => NodeState::Up,
    }
}

/// Why a chunk is queued for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// Its upload failed or was abandoned.
    Aborted,
    /// Its file was deleted.
    FileDeleted,
    /// Found on a node without any file or session referencing it.
    Orphan,
    /// The source of a part the rebalancer moved, after its grace period.
    Moved,
}

/// A chunk waiting to be removed from its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelete {
    pub node_id: Uuid,
    pub chunk_id: ChunkId,
    /// The file or session the chunk belonged to, when known.
    pub file_id: Option<Uuid>,
    pub reason: DeleteReason,
    pub enqueued_unix_ms: u64,
}

impl PendingDelete {
    /// The delete-queue row of chunk `chunk_id` on `node_id` whose stored entry is `value`
    /// (every backend reads its rows with this).
    pub(crate) fn from_row(
        node_id: Uuid,
        chunk_id: ChunkId,
        value: &[u8],
    ) -> Result<PendingDelete, super::MetaError> {
        let entry: DeleteEntry = super::codec::decode(value)
            .map_err(super::MetaError::corrupt(super::tables::DELETE_QUEUE_NAME))?;
        Ok(PendingDelete {
            node_id,
            chunk_id,
            file_id: entry.file_id,
            reason: entry.reason,
            enqueued_unix_ms: entry.enqueued_unix_ms,
        })
    }
}

/// The stored value of a delete-queue entry (the key holds node and chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeleteEntry {
    pub file_id: Option<Uuid>,
    pub reason: DeleteReason,
    pub enqueued_unix_ms: u64,
}

impl DeleteEntry {
    /// The stored bytes of an entry: chunk of `file_id` (when known) queued for `reason` at
    /// `enqueued_unix_ms`.
    pub(crate) fn encoded(
        file_id: Option<Uuid>,
        reason: DeleteReason,
        enqueued_unix_ms: u64,
    ) -> Result<Vec<u8>, super::MetaError> {
        super::codec::encode(&DeleteEntry {
            file_id,
            reason,
            enqueued_unix_ms,
        })
        .map_err(super::MetaError::corrupt(super::tables::DELETE_QUEUE_NAME))
    }
}

/// Chunk ids as 32 lowercase hex digits rather than a JSON array of 16 numbers.
pub(super) mod hex16 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 32];
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in bytes.iter().enumerate() {
            text[2 * i] = DIGITS[usize::from(b >> 4)];
            text[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        // The digits are ASCII, so this never fails; the fallback keeps the code panic-free.
        s.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return Err(D::Error::custom("chunk id must be 32 hex digits"));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(D::Error::custom("chunk id must be lowercase hex")),
        };
        let mut out = [0u8; 16];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{SplitPolicy, plan};

    #[test]
    fn the_effective_state_of_every_reported_and_operator_state() {
        use NodeState::*;
        use OperatorState as O;
        let cases = [
            (Up, None, Up),
            (Up, Some(O::ReadOnly), ReadOnly),
            (Up, Some(O::Draining), Draining),
            (ReadOnly, None, ReadOnly),
            (ReadOnly, Some(O::ReadOnly), ReadOnly),
            (ReadOnly, Some(O::Draining), Draining),
            (Draining, None, Draining),
            (Draining, Some(O::ReadOnly), Draining),
            (Draining, Some(O::Draining), Draining),
            (Down, None, Down),
            (Down, Some(O::ReadOnly), Down),
            (Down, Some(O::Draining), Down),
        ];
        for (reported, operator, want) in cases {
            assert_eq!(
                effective_state(reported, operator),
                want,
                "{reported:?} {operator:?}"
            );
        }
    }

    #[test]
    fn a_node_record_of_the_previous_release_has_no_operator_state() {
        let old = br#"{"id":"6f1c2a0e-8a4b-4c55-9d7e-0a1b2c3d4e5f","name":"n","shard_addrs":["127.0.0.1:7000"],"capacity":1,"used":0,"chunk_count":0,"in_flight":0,"state":"up","registered_unix_ms":1,"last_heartbeat_unix_ms":2}"#;
        let r: NodeRecord = serde_json::from_slice(old).expect("decodes");
        assert_eq!(r.operator_state, None);
        let mut with = r.clone();
        with.operator_state = Some(OperatorState::Draining);
        let json = serde_json::to_string(&with).expect("encodes");
        assert!(json.contains(r#""operator_state":"draining""#), "{json}");
        assert!(
            !serde_json::to_string(&r)
                .expect("encodes")
                .contains("operator_state")
        );
    }

    #[test]
    fn chunk_ids_are_fresh() {
        let a = new_chunk_id();
        let b = new_chunk_id();
        assert_ne!(a, b);
    }

    #[test]
    fn plan_pairs_ranges_with_nodes() {
        let ranges = plan(6 << 20, &SplitPolicy::default());
        let nodes: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let parts = PlannedPart::plan(&ranges, &nodes).expect("same length");
        assert_eq!(parts.len(), 6);
        for ((p, r), n) in parts.iter().zip(&ranges).zip(&nodes) {
            assert_eq!(p.range(), *r);
            assert_eq!(p.node_id, *n);
        }
        assert!(PlannedPart::plan(&ranges, &nodes[..5]).is_none());
    }

    #[test]
    fn ack_verification() {
        let part = PlannedPart {
            index: 2,
            offset: 10,
            len: 5,
            node_id: Uuid::new_v4(),
            chunk_id: new_chunk_id(),
        };
        let rec = part.verify_ack(5, 0xabcd, 0xabcd).expect("good ack");
        assert_eq!(rec.crc32c, 0xabcd);
        assert_eq!((rec.index, rec.offset, rec.len), (2, 10, 5));
        assert_eq!((rec.node_id, rec.chunk_id), (part.node_id, part.chunk_id));
        assert_eq!(
            part.verify_ack(4, 0xabcd, 0xabcd),
            Err(AckMismatch::Length {
                index: 2,
                planned: 5,
                acked: 4
            })
        );
        assert_eq!(
            part.verify_ack(5, 0xabce, 0xabcd),
            Err(AckMismatch::Crc {
                index: 2,
                computed: 0xabcd,
                acked: 0xabce
            })
        );
    }

    #[test]
    fn clipping_to_the_file_size() {
        let part = |offset, len| PartRecord {
            index: 1,
            offset,
            len,
            node_id: Uuid::nil(),
            chunk_id: [1; 16],
            crc32c: 7,
            stored_len: None,
        };
        // Wholly inside the file: unchanged.
        assert_eq!(part(10, 10).clipped_to(20), part(10, 10));
        assert_eq!(part(10, 10).clipped_to(100), part(10, 10));
        // The file ends inside the part.
        let c = part(10, 10).clipped_to(14);
        assert_eq!((c.offset, c.len, c.stored_len(), c.crc32c), (10, 4, 10, 7));
        assert!(!c.crc_covers_file_bytes());
        // The file ends before the part: no file bytes, placed at the file's end.
        let c = part(10, 10).clipped_to(6);
        assert_eq!((c.offset, c.len, c.stored_len), (6, 0, Some(10)));
        // Clipping twice changes nothing more.
        assert_eq!(c.clone().clipped_to(6), c);
        assert!(part(0, 5).crc_covers_file_bytes());
    }

    #[test]
    fn only_up_nodes_accept_writes() {
        assert!(NodeState::Up.accepts_writes());
        for state in [NodeState::Down, NodeState::Draining, NodeState::ReadOnly] {
            assert!(!state.accepts_writes(), "{state:?}");
        }
    }
}
