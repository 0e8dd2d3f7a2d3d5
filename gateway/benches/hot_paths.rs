//! The gateway's per-byte work outside TLS: the block checksum (crc32c) every part's bytes
//! pass through, the whole-file hash (xxh3-128) every uploaded byte passes through, and the
//! slicer that cuts body frames at part boundaries. Frames of 16 KiB (what hyper hands over
//! from a TCP read) and 1 MiB.
//!
//! `cargo bench -p sixfold-gateway --bench hot_paths`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sixfold_gateway::split::{SplitPolicy, plan};
use sixfold_gateway::upload::slicer::slice_frame;
use xxhash_rust::xxh3::Xxh3;

const FRAMES: [usize; 2] = [16 * 1024, 1024 * 1024];

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for len in FRAMES {
        let frame = data(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(
            BenchmarkId::new("crc32c::crc32c_append", len),
            &frame,
            |b, f| {
                let mut crc = 0u32;
                b.iter(|| {
                    crc = crc32c::crc32c_append(crc, black_box(f));
                    black_box(crc);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("sixfold_wire::crc::crc32c_append", len),
            &frame,
            |b, f| {
                let mut crc = 0u32;
                b.iter(|| {
                    crc = sixfold_wire::crc::crc32c_append(crc, black_box(f));
                    black_box(crc);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("xxhash_rust::xxh3::Xxh3", len),
            &frame,
            |b, f| {
                let mut hasher = Xxh3::new();
                b.iter(|| {
                    hasher.update(black_box(f));
                });
                black_box(hasher.digest128());
            },
        );
        group.bench_with_input(
            BenchmarkId::new("twox_hash::XxHash3_128", len),
            &frame,
            |b, f| {
                let mut hasher = twox_hash::XxHash3_128::new();
                b.iter(|| {
                    hasher.write(black_box(f));
                });
                black_box(hasher.finish_128());
            },
        );
        group.bench_with_input(
            BenchmarkId::new("sixfold_gateway::file_hash::Xxh3", len),
            &frame,
            |b, f| {
                let mut hasher = sixfold_gateway::file_hash::Xxh3::new();
                b.iter(|| {
                    hasher.update(black_box(f));
                });
                black_box(hasher.digest128());
            },
        );
    }
    group.finish();
}

fn slicer(c: &mut Criterion) {
    let size = 10u64 << 30;
    let parts = plan(size, &SplitPolicy::default());
    let mut group = c.benchmark_group("slicer");
    for len in FRAMES {
        let frame = Bytes::from(data(len));
        // One iteration slices every frame of a 64 MiB stretch that crosses a part boundary.
        let stretch = 64u64 << 20;
        let start = parts[1].offset - stretch / 2;
        group.throughput(Throughput::Bytes(stretch));
        group.bench_with_input(BenchmarkId::new("slice_frame", len), &frame, |b, f| {
            b.iter(|| {
                let mut position = start;
                let mut pieces = 0usize;
                while position < start + stretch {
                    for piece in slice_frame(&parts, position, f.len()) {
                        black_box(f.slice(piece.range.clone()));
                        pieces += 1;
                    }
                    position += f.len() as u64;
                }
                black_box(pieces);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checksums, slicer);
criterion_main!(benches);
