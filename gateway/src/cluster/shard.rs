//! Which of a node's shard addresses serves a chunk.

use std::net::SocketAddr;

use sixfold_wire::{ChunkId, shard_for};

/// The address of the shard that owns `chunk_id`, given the node's addresses in shard order.
/// `None` when the node reported no address.
pub fn shard_addr(shard_addrs: &[SocketAddr], chunk_id: &ChunkId) -> Option<SocketAddr> {
    if shard_addrs.is_empty() {
        return None;
    }
    // Registration caps the shard count well below u16::MAX; saturate rather than wrap anyway.
    let shards = u16::try_from(shard_addrs.len()).unwrap_or(u16::MAX);
    shard_addrs
        .get(usize::from(shard_for(chunk_id, shards)))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect()
    }

    #[test]
    fn no_address_no_route() {
        assert_eq!(shard_addr(&[], &[1; 16]), None);
    }

    #[test]
    fn single_shard_takes_everything() {
        let a = addrs(1);
        for i in 0u8..=255 {
            assert_eq!(shard_addr(&a, &[i; 16]), Some(a[0]));
        }
    }

    #[test]
    fn chunks_go_to_the_shard_the_node_computes() {
        let a = addrs(4);
        let mut hit = [0u32; 4];
        for i in 0u32..4000 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let addr = shard_addr(&a, &id).expect("route");
            // Same rule as the node: crc32c of the id bytes modulo the shard count.
            let expected = (crc32c::crc32c(&id) % 4) as usize;
            assert_eq!(addr, a[expected]);
            hit[expected] += 1;
        }
        assert!(hit.iter().all(|&h| h > 800), "{hit:?}");
    }
}
