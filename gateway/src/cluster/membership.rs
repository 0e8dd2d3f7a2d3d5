//! Whether a node's chunks are accounted for by this gateway's metadata (issue #13): the
//! cluster id kept in the metadata against the one the node keeps in its data dir. A node whose
//! data this metadata cannot account for is never cleaned: nothing on it is deleted, and the
//! gateway reports `recovery_needed` until an operator recovers or removes it.

use uuid::Uuid;

/// How a reporting node stands with this metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The node keeps this cluster's id.
    Member,
    /// The node keeps no cluster id and holds nothing this metadata could be missing (it is
    /// new and empty, or it is known here and ran a release without ids): it is told the id.
    Joins,
    /// The node's data cannot be accounted for by this metadata.
    Unaccounted(Unaccounted),
}

/// Why a node's data cannot be accounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unaccounted {
    /// It joined another cluster: this metadata is not the one its chunks were written under
    /// (lost and re-created, or another cluster's).
    OtherCluster(Uuid),
    /// This metadata never knew the node, yet it holds chunks.
    UnknownChunks(u64),
}

impl Membership {
    /// Whether the cleanup may delete on this node.
    pub fn may_clean(self) -> bool {
        !matches!(self, Membership::Unaccounted(_))
    }
}

/// Judges a node that reports `claimed` (the cluster id in its data dir) and `chunk_count`
/// chunks, against this metadata's cluster id `ours`; `known`: the metadata has a record of
/// the node.
pub fn judge(ours: Uuid, claimed: Option<Uuid>, known: bool, chunk_count: u64) -> Membership {
    match claimed {
        Some(id) if id == ours => Membership::Member,
        Some(other) => Membership::Unaccounted(Unaccounted::OtherCluster(other)),
        None if known || chunk_count == 0 => Membership::Joins,
        None => Membership::Unaccounted(Unaccounted::UnknownChunks(chunk_count)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    #[test]
    fn every_case_of_a_reporting_node() {
        let cases = [
            // claimed, known, chunks -> membership
            (Some(OURS), true, 10, Membership::Member),
            (Some(OURS), false, 10, Membership::Member),
            (
                Some(OTHER),
                true,
                0,
                Membership::Unaccounted(Unaccounted::OtherCluster(OTHER)),
            ),
            (
                Some(OTHER),
                false,
                5,
                Membership::Unaccounted(Unaccounted::OtherCluster(OTHER)),
            ),
            // An older node of this cluster (known here) adopts the id.
            (None, true, 10, Membership::Joins),
            // A new, empty node joins.
            (None, false, 0, Membership::Joins),
            // The metadata file was lost and re-created while the nodes kept their chunks.
            (
                None,
                false,
                7,
                Membership::Unaccounted(Unaccounted::UnknownChunks(7)),
            ),
        ];
        for (claimed, known, chunks, want) in cases {
            let got = judge(OURS, claimed, known, chunks);
            assert_eq!(got, want, "{claimed:?} known={known} chunks={chunks}");
            assert_eq!(got.may_clean(), !matches!(want, Membership::Unaccounted(_)));
        }
    }
}
