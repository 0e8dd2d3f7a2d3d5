//! The node's per-byte work on a put, outside QUIC: received pieces are copied into an aligned
//! O_DIRECT buffer block by block with the block's crc32c computed on the way (as
//! `PutWriter::submit_block` does, with `sixfold_wire::crc`; the `crc32c` crate for
//! comparison), and at the end of the put the block crcs are combined into the body crc
//! (`format::combine_block_crcs` with `sixfold_wire::crc::Shift`; the `crc32c` crate's
//! `crc32c_combine` per block for comparison).
//!
//! `put_block_cold` fills a ring of buffers larger than the cache, as a node's pool buffers are
//! when they come back from the disk: there the copy bypasses the cache (`uncached_copy.rs`).
//!
//! `cargo bench -p sixfold-node --bench write_path`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sixfold_node::store::{AlignedBuf, CHUNK_BLOCK_SIZE};

/// Sizes of the pieces a put receives: what one jumbo loopback datagram carries, and what one
/// Ethernet-sized datagram carries.
const PIECES: [usize; 2] = [64 * 1024, 1_400];

/// Bytes that are not all one value, so no copy or crc can take a shortcut.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn block_fill(c: &mut Criterion) {
    let block = CHUNK_BLOCK_SIZE as usize;
    let mut group = c.benchmark_group("put_block");
    group.throughput(Throughput::Bytes(block as u64));
    for piece_len in PIECES {
        let source = pattern(block);
        let mut buf = AlignedBuf::new(block);
        group.bench_with_input(
            BenchmarkId::new("copy+crc32c", piece_len),
            &piece_len,
            |b, &piece_len| {
                b.iter(|| {
                    buf.clear();
                    let mut crc = 0u32;
                    for piece in source.chunks(piece_len) {
                        let copied = buf.extend_from_slice(piece);
                        crc = sixfold_wire::crc::crc32c_append(crc, &piece[..copied]);
                    }
                    buf.pad_to_alignment();
                    black_box((crc, buf.len()));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copy+crc32c crate", piece_len),
            &piece_len,
            |b, &piece_len| {
                b.iter(|| {
                    buf.clear();
                    let mut crc = 0u32;
                    for piece in source.chunks(piece_len) {
                        let copied = buf.extend_from_slice(piece);
                        crc = crc32c::crc32c_append(crc, &piece[..copied]);
                    }
                    buf.pad_to_alignment();
                    black_box((crc, buf.len()));
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copy", piece_len),
            &piece_len,
            |b, &piece_len| {
                b.iter(|| {
                    buf.clear();
                    for piece in source.chunks(piece_len) {
                        buf.extend_from_slice(piece);
                    }
                    black_box(buf.len());
                })
            },
        );
    }
    group.finish();
}

fn combine(c: &mut Criterion) {
    let block = CHUNK_BLOCK_SIZE as usize;
    // The blocks of one part of a 10 GiB file (10 GiB / 6 in 1 MiB blocks).
    let blocks = (10usize << 30).div_ceil(6).div_ceil(block);
    let crcs: Vec<u32> = (0..blocks as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let mut group = c.benchmark_group("put_finish");
    group.throughput(Throughput::Bytes((blocks * block) as u64));
    group.bench_function(BenchmarkId::new("crc32c_combine", blocks), |b| {
        b.iter(|| {
            let crc = crcs
                .iter()
                .fold(0u32, |acc, c| crc32c::crc32c_combine(acc, *c, block));
            black_box(crc);
        })
    });
    // What `format::combine_block_crcs` does: one operator for 1 MiB, applied per block.
    group.bench_function(BenchmarkId::new("sixfold_wire::crc::Shift", blocks), |b| {
        b.iter(|| {
            let shift = sixfold_wire::crc::Shift::bytes(block as u64);
            let crc = crcs.iter().fold(0u32, |acc, c| shift.combine(acc, *c));
            black_box(crc);
        })
    });
    group.finish();
}

/// Buffers in the cold ring: 64 MiB, more than the last-level cache, as a node's pool buffers
/// are by the time the disk has taken them and six shards and the gateway have used the caches.
const RING_BUFFERS: usize = 64;

/// The copy of a put's pieces into aligned buffers when the destination is cold (a ring of
/// buffers larger than the cache), `AlignedBuf::extend_from_slice` against a plain
/// `copy_from_slice` into the same buffers. `put_block/copy` above is the warm case: one buffer
/// filled over and over.
fn cold_fill(c: &mut Criterion) {
    let block = CHUNK_BLOCK_SIZE as usize;
    let piece_len = PIECES[0];
    let source = pattern(piece_len);
    let mut ring: Vec<AlignedBuf> = (0..RING_BUFFERS).map(|_| AlignedBuf::new(block)).collect();
    let mut group = c.benchmark_group("put_block_cold");
    group.throughput(Throughput::Bytes(block as u64));
    let mut next = 0usize;
    group.bench_function(
        BenchmarkId::new("AlignedBuf::extend_from_slice", piece_len),
        |b| {
            b.iter(|| {
                let buf = &mut ring[next % RING_BUFFERS];
                next += 1;
                buf.clear();
                while buf.spare() > 0 {
                    buf.extend_from_slice(&source);
                }
                black_box(buf.len());
            })
        },
    );
    group.bench_function(BenchmarkId::new("copy_from_slice", piece_len), |b| {
        b.iter(|| {
            let buf = &mut ring[next % RING_BUFFERS];
            next += 1;
            buf.set_len(block);
            for dst in buf.as_mut_slice().chunks_mut(piece_len) {
                dst.copy_from_slice(&source[..dst.len()]);
            }
            black_box(buf.len());
        })
    });
    group.finish();
}

criterion_group!(benches, block_fill, cold_fill, combine);
criterion_main!(benches);
