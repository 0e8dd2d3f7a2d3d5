//! The gateway's side (quinn on tokio) talks to the node's side (quinn-proto driven on monoio)
//! with the same `QuicSettings`: 64 MiB up and 64 MiB down, verified by crc32c.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sixfold_node::quic::{QuicEndpoint, QuicSettings};

const ALPN: &[u8] = b"sixfold/1";
const MIB: usize = 1024 * 1024;
const CHUNKS: u64 = 64;
/// Bound on each side's run so a deadlock fails the test instead of hanging it.
const DEADLOCK_GUARD: Duration = Duration::from_secs(300);

/// Deterministic, chunk-distinct data; `seed` tells uploads and downloads apart.
fn chunk(seed: u64, index: u64) -> Bytes {
    let mut state = (seed << 32 | index).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(MIB + 8);
    while data.len() < MIB {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(MIB);
    Bytes::from(data)
}

fn expected_crc(seed: u64) -> u32 {
    (0..CHUNKS).fold(0, |crc, i| crc32c::crc32c_append(crc, &chunk(seed, i)))
}

struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn tls() -> Tls {
    let provider = sixfold_certs::crypto_provider();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |name: &str| -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);

    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (chain, key) = issue("node");
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    server.alpn_protocols = vec![ALPN.to_vec()];

    let (chain, key) = issue("gateway");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    client.alpn_protocols = vec![ALPN.to_vec()];
    Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// What the node side measured.
#[derive(Debug, PartialEq)]
struct NodeReport {
    upload_crc: u32,
    upload_len: u64,
    path_mtu: u16,
}

/// The node side: one monoio io_uring runtime on its own thread. Stream 1 is an upload (read
/// all, answer with crc32c and length), stream 2 a download (write 64 MiB of seed 2).
fn start_node(
    tls: Arc<rustls::ServerConfig>,
    settings: QuicSettings,
) -> (SocketAddr, thread::JoinHandle<NodeReport>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime");
        runtime.block_on(async move {
            monoio::time::timeout(DEADLOCK_GUARD, async move {
                let endpoint =
                    QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), tls, &settings).unwrap();
                addr_tx.send(endpoint.local_addr()).unwrap();
                let conn = endpoint.accept().await.unwrap();

                let (mut recv, mut send) = conn.accept_bi().await.unwrap();
                let (mut upload_crc, mut upload_len) = (0u32, 0u64);
                while let Some(data) = recv.read_chunk(usize::MAX).await.unwrap() {
                    upload_crc = crc32c::crc32c_append(upload_crc, &data);
                    upload_len += data.len() as u64;
                }
                let mut reply = upload_crc.to_le_bytes().to_vec();
                reply.extend_from_slice(&upload_len.to_le_bytes());
                send.write(Bytes::from(reply)).await.unwrap();
                send.finish().unwrap();

                let (mut recv, mut send) = conn.accept_bi().await.unwrap();
                let request = recv.read_chunk(usize::MAX).await.unwrap();
                assert_eq!(request.as_deref(), Some(&b"download"[..]));
                for index in 0..CHUNKS {
                    send.write(chunk(2, index)).await.unwrap();
                }
                send.finish().unwrap();
                send.finished().await.unwrap();

                let path_mtu = conn.current_mtu();
                conn.closed().await;
                endpoint.wait_idle().await;
                NodeReport {
                    upload_crc,
                    upload_len,
                    path_mtu,
                }
            })
            .await
            .expect("node side deadlocked")
        })
    });
    (addr_rx.recv().unwrap(), handle)
}

/// The gateway side: quinn on tokio with the same settings.
async fn gateway_exchange(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    settings: &QuicSettings,
) -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let endpoint = quinn::Endpoint::new(
        settings.endpoint_config().unwrap(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    client.transport_config(Arc::new(settings.transport_config()));
    let conn = endpoint
        .connect_with(client, addr, "node")
        .unwrap()
        .await
        .unwrap();

    // Upload: 64 MiB of seed 1; the node answers with what it counted.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    for index in 0..CHUNKS {
        send.write_chunk(chunk(1, index)).await.unwrap();
    }
    send.finish().unwrap();
    let reply = recv.read_to_end(64).await.unwrap();
    assert_eq!(reply.len(), 12);
    let node_crc = u32::from_le_bytes(reply[..4].try_into().unwrap());
    let node_len = u64::from_le_bytes(reply[4..].try_into().unwrap());
    assert_eq!(node_len, CHUNKS * MIB as u64);
    assert_eq!(node_crc, expected_crc(1));

    // Download: 64 MiB of seed 2.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"download").await.unwrap();
    send.finish().unwrap();
    let (mut crc, mut len) = (0u32, 0u64);
    while let Some(data) = recv.read_chunk(usize::MAX, true).await.unwrap() {
        crc = crc32c::crc32c_append(crc, &data.bytes);
        len += data.bytes.len() as u64;
    }
    assert_eq!(len, CHUNKS * MIB as u64);
    assert_eq!(crc, expected_crc(2));

    let path_mtu = conn.stats().path.current_mtu;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    path_mtu
}

fn interop(settings: QuicSettings) {
    let tls = tls();
    let (addr, node) = start_node(tls.server, settings.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gateway_mtu = runtime.block_on(async {
        tokio::time::timeout(
            DEADLOCK_GUARD,
            gateway_exchange(addr, tls.client, &settings),
        )
        .await
        .expect("gateway side deadlocked")
    });
    let report = node.join().unwrap();
    assert_eq!(
        report,
        NodeReport {
            upload_crc: expected_crc(1),
            upload_len: CHUNKS * MIB as u64,
            path_mtu: settings.effective_mtu(),
        }
    );
    assert_eq!(gateway_mtu, settings.effective_mtu());
}

#[test]
fn quinn_gateway_and_monoio_node_move_64_mib_each_way() {
    interop(QuicSettings::default());
}

#[test]
fn quinn_gateway_and_monoio_node_move_64_mib_each_way_with_jumbo_mtu() {
    interop(QuicSettings::loopback_jumbo());
}
