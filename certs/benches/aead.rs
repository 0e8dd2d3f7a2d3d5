//! QUIC packet protection (AES-GCM seal and open) with the workspace's rustls crypto provider,
//! for every TLS 1.3 suite the cluster configs offer, in the order they are offered (the first
//! is the one a sixfold connection negotiates). This is the per-packet work of every byte
//! between the gateway and a node, once on each end.
//!
//! `cargo bench -p sixfold-certs --bench aead`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rustls::Side;
use rustls::SupportedCipherSuite;
use rustls::quic::Version;

/// Payload sizes: a jumbo loopback datagram (the `dev` cluster's MTU) and an Ethernet one.
const PAYLOADS: [usize; 2] = [64_900, 1_400];

fn packet_protection(c: &mut Criterion) {
    let provider = sixfold_certs::crypto_provider();
    let mut group = c.benchmark_group("quic_packet");
    for suite in &provider.cipher_suites {
        let SupportedCipherSuite::Tls13(tls13) = suite else {
            continue;
        };
        let Some(quic) = tls13.quic_suite() else {
            continue;
        };
        let name = format!("{:?}", tls13.common.suite);
        let keys = quic.keys(&[7u8; 8], Side::Client, Version::V1);
        let header = [0x40u8; 12];
        for len in PAYLOADS {
            group.throughput(Throughput::Bytes(len as u64));
            let mut payload = vec![0xa5u8; len];
            group.bench_with_input(
                BenchmarkId::new(format!("seal/{name}"), len),
                &len,
                |b, _| {
                    let mut pn = 0u64;
                    b.iter(|| {
                        pn += 1;
                        let tag = keys
                            .local
                            .packet
                            .encrypt_in_place(pn, &header, &mut payload)
                            .expect("seal");
                        black_box(tag);
                    })
                },
            );
            // A sealed packet to open again and again (opening is in place, so it is copied
            // back first; the copy is measured apart below).
            let sealed = {
                let mut p = vec![0x5au8; len];
                let tag = keys
                    .local
                    .packet
                    .encrypt_in_place(1, &header, &mut p)
                    .expect("seal");
                p.extend_from_slice(tag.as_ref());
                p
            };
            let opener = quic.keys(&[7u8; 8], Side::Server, Version::V1);
            let mut scratch = sealed.clone();
            group.bench_with_input(
                BenchmarkId::new(format!("open+copy/{name}"), len),
                &len,
                |b, _| {
                    b.iter(|| {
                        scratch.copy_from_slice(&sealed);
                        let plain = opener
                            .remote
                            .packet
                            .decrypt_in_place(1, &header, &mut scratch)
                            .expect("open");
                        black_box(plain.len());
                    })
                },
            );
        }
    }
    // The copy that `open+copy` includes, alone.
    for len in PAYLOADS {
        let sealed = vec![0x5au8; len + 16];
        let mut scratch = sealed.clone();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("copy", len), &len, |b, _| {
            b.iter(|| {
                scratch.copy_from_slice(black_box(&sealed));
                black_box(&scratch);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, packet_protection);
criterion_main!(benches);
