//! Throughput check of the chunk store on one shard (not a pass/fail test):
//!
//! `cargo run -p sixfold-node --release --example store_write -- [DIR] [CHUNK_MIB] [CHUNKS] [PIECE_KIB]`
//!
//! Writes CHUNKS chunks of CHUNK_MIB MiB (fed in PIECE_KIB KiB `Bytes`, like QUIC stream reads),
//! reads them back verified, and prints MiB/s for both (STORE_WRITES_IN_FLIGHT and
//! STORE_READS_IN_FLIGHT override the defaults). Compare with
//! `fio --direct=1 --rw=write --bs=1M` on the same filesystem.

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use sixfold_node::store::{ChunkId, ChunkMeta, ChunkStore, StoreConfig};

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/tmp/sixfold-store-bench".into());
    let chunk_mib: u64 = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let chunks: u8 = args.get(2).map_or(Ok(4), |s| s.parse())?;
    let piece_kib: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let len = chunk_mib << 20;

    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .context("io_uring runtime")?;
    rt.block_on(async move {
        let mut config = StoreConfig::default();
        if let Some(n) = env_usize("STORE_WRITES_IN_FLIGHT") {
            config.writes_in_flight = n;
        }
        if let Some(n) = env_usize("STORE_READS_IN_FLIGHT") {
            config.reads_in_flight = n;
        }
        let store = ChunkStore::open(&dir, config).await?;
        // One piece reused for every write: the benchmark measures the store, not a generator.
        let piece = Bytes::from(
            (0..piece_kib << 10)
                .map(|i| (i * 7 + 3) as u8)
                .collect::<Vec<u8>>(),
        );
        let ids: Vec<ChunkId> = (0..chunks).map(|n| ChunkId([n; 16])).collect();
        for id in &ids {
            let _ = store.delete(*id).await;
        }

        let t = Instant::now();
        for id in &ids {
            let meta = ChunkMeta {
                file_id: [9; 16],
                part_index: 0,
                part_count: 1,
                file_offset: 0,
                length: len,
            };
            let mut w = store.put(*id, meta, 0, None).await?;
            let mut left = len;
            while left > 0 {
                let n = left.min(piece.len() as u64) as usize;
                w.write(piece.slice(..n)).await?;
                left -= n as u64;
            }
            w.finish().await?;
        }
        let secs = t.elapsed().as_secs_f64();
        let total = (len * u64::from(chunks)) as f64 / (1 << 20) as f64;
        println!(
            "write: {total:.0} MiB in {secs:.2} s = {:.0} MiB/s",
            total / secs
        );

        let t = Instant::now();
        let mut read = 0u64;
        for id in &ids {
            let mut r = store.read(*id, 0, len).await?;
            while let Some(p) = r.next().await {
                read += p?.len() as u64;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "read:  {:.0} MiB in {secs:.2} s = {:.0} MiB/s",
            read as f64 / (1 << 20) as f64,
            read as f64 / (1 << 20) as f64 / secs
        );
        for id in &ids {
            store.delete(*id).await?;
        }
        anyhow::Ok(())
    })
}
