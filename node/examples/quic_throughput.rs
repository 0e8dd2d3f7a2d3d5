//! QUIC throughput on loopback: a monoio client sends one stream to a monoio server.
//!
//! ```text
//! cargo run --release -p sixfold-node --example quic_throughput -- [--mtu 1452] [--gib 1]
//! ```
//! Prints MB/s and the CPU seconds the two threads used (getrusage), also per GiB moved.
//! `RUST_LOG=debug` shows the endpoints' logs. On a shared machine MB/s says little; CPU
//! seconds per GiB is the figure to compare.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sixfold_node::quic::{QuicEndpoint, QuicSettings};

const ALPN: &[u8] = b"sixfold/1";
const CHUNK: usize = 1024 * 1024;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let (mtu, gib) = parse_args()?;
    let settings = QuicSettings::default().with_mtu(mtu);
    let total = (gib * (1u64 << 30) as f64) as u64;
    let (server_tls, client_tls) = tls_configs()?;

    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let server_settings = settings.clone();
    let server = thread::spawn(move || -> anyhow::Result<(u64, Duration)> {
        let mut runtime = runtime()?;
        let received = runtime.block_on(async move {
            let endpoint =
                QuicEndpoint::bind("127.0.0.1:0".parse()?, server_tls, &server_settings)?;
            addr_tx.send(endpoint.local_addr())?;
            let conn = endpoint.accept().await.context("endpoint closed")?;
            let (mut recv, mut send) = conn.accept_bi().await.context("no stream")?;
            let mut received = 0u64;
            while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
                received += chunk.len() as u64;
            }
            send.write(Bytes::copy_from_slice(&received.to_le_bytes()))
                .await?;
            send.finish()?;
            send.finished().await?;
            conn.closed().await;
            anyhow::Ok(received)
        })?;
        Ok((received, thread_cpu()))
    });

    let addr = addr_rx.recv()?;
    let mut runtime = runtime()?;
    let (elapsed, mtu_used, echoed) = runtime.block_on(async move {
        let endpoint = QuicEndpoint::client("127.0.0.1:0".parse()?, &settings)?;
        let conn = endpoint.connect(addr, "node", client_tls).await?;
        let start = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await?;
        let data = Bytes::from(vec![0xA5u8; CHUNK]);
        let mut sent = 0u64;
        while sent < total {
            let len = CHUNK.min((total - sent) as usize);
            send.write(data.slice(..len)).await?;
            sent += len as u64;
        }
        send.finish()?;
        let reply = recv.read_chunk(8).await?.context("no reply")?;
        let elapsed = start.elapsed();
        let echoed = u64::from_le_bytes(reply[..].try_into()?);
        let mtu_used = conn.current_mtu();
        let stats = conn.stats();
        println!(
            "client path: rtt {:?}, cwnd {}, lost {} packets, {} congestion events; \
             sent {} datagrams in {} sends",
            stats.path.rtt,
            stats.path.cwnd,
            stats.path.lost_packets,
            stats.path.congestion_events,
            stats.udp_tx.datagrams,
            stats.udp_tx.ios,
        );
        conn.close(0u32, b"done");
        endpoint.wait_idle().await;
        anyhow::Ok((elapsed, mtu_used, echoed))
    })?;
    let client_cpu = thread_cpu();
    let (received, server_cpu) = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    if received != total || echoed != total {
        bail!("sent {total} bytes, server counted {received} (reply {echoed})");
    }

    let gib_moved = total as f64 / (1u64 << 30) as f64;
    let cpu = client_cpu + server_cpu;
    println!(
        "mtu {mtu} (path {mtu_used}): {} bytes in {:.2} s = {:.0} MB/s; CPU {:.2} s \
         (client {:.2} s, server {:.2} s) = {:.2} CPU s/GiB",
        total,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / 1e6,
        cpu.as_secs_f64(),
        client_cpu.as_secs_f64(),
        server_cpu.as_secs_f64(),
        cpu.as_secs_f64() / gib_moved,
    );
    Ok(())
}

fn parse_args() -> anyhow::Result<(u16, f64)> {
    let mut mtu = QuicSettings::DEFAULT_MTU;
    let mut gib = 1.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mtu" => mtu = args.next().context("--mtu needs a value")?.parse()?,
            "--gib" => gib = args.next().context("--gib needs a value")?.parse()?,
            other => bail!("unknown argument {other}; use --mtu N --gib G"),
        }
    }
    Ok((mtu, gib))
}

fn runtime() -> anyhow::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    Ok(monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()?)
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: `rusage` is plain old data, fully written by a successful getrusage call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer to a live rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn tls_configs() -> anyhow::Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)> {
    let provider = sixfold_certs::crypto_provider();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let issue =
        |name: &str| -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
            let key = KeyPair::generate()?;
            let cert = CertificateParams::new(vec![name.to_string()])?.signed_by(&key, &ca)?;
            Ok((
                vec![cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            ))
        };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let roots = Arc::new(roots);

    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()?;
    let (chain, key) = issue("node")?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let (chain, key) = issue("gateway")?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}
