//! Which shard of a node owns a chunk. Gateway and node must agree, so the rule lives here.

use crate::types::ChunkId;

/// Index of the shard (0..shards) that owns `chunk_id`. Chunk ids are random, but hashing keeps
/// the spread even if a caller ever derives them.
pub fn shard_for(chunk_id: &ChunkId, shards: u16) -> u16 {
    if shards <= 1 {
        return 0;
    }
    (crc32c::crc32c(chunk_id) % u32::from(shards)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_shard_owns_everything() {
        assert_eq!(shard_for(&[7; 16], 0), 0);
        assert_eq!(shard_for(&[7; 16], 1), 0);
    }

    #[test]
    fn ids_spread_evenly_over_shards() {
        let shards = 4u16;
        let mut counts = [0u32; 4];
        for i in 0u32..40_000 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            id[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            let s = shard_for(&id, shards);
            assert!(s < shards);
            counts[s as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
