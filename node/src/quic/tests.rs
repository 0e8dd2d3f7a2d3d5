//! End-to-end tests: a server and a client endpoint, each on its own thread with its own
//! monoio io_uring runtime, talking over 127.0.0.1 with mutual TLS from a throwaway CA.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use super::*;

const ALPN: &[u8] = b"sixfold/1";
/// Bound on every test's run so a deadlock fails instead of hanging; not a performance limit.
const DEADLOCK_GUARD: Duration = Duration::from_secs(180);
const MIB: usize = 1024 * 1024;

// ---------- PKI ----------

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn issue(&self, name: &str) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    sixfold_certs::crypto_provider()
}

fn roots(ca: &Ca) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    Arc::new(roots)
}

fn server_tls(ca: &Ca, id: Identity) -> Arc<rustls::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain, id.key)
        .unwrap();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(config)
}

fn client_tls(ca: &Ca, id: Identity) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_client_auth_cert(id.chain, id.key)
        .unwrap();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(config)
}

/// A cluster: CA, server config for "node", and a matching client config.
struct Cluster {
    ca: Ca,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    client_cert: CertificateDer<'static>,
}

fn cluster() -> Cluster {
    let ca = Ca::new("sixfold test CA");
    let server = server_tls(&ca, ca.issue("node"));
    let client_id = ca.issue("gateway");
    let client_cert = client_id.chain[0].clone();
    let client = client_tls(&ca, client_id);
    Cluster {
        ca,
        server,
        client,
        client_cert,
    }
}

// ---------- runtimes and servers ----------

fn block_on<F: Future>(future: F) -> F::Output {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime");
    runtime.block_on(async {
        monoio::time::timeout(DEADLOCK_GUARD, future)
            .await
            .expect("test deadlocked")
    })
}

/// What the server saw on one connection.
#[derive(Debug)]
struct ServedConnection {
    peer_chain: Option<Vec<CertificateDer<'static>>>,
    streams: Vec<Result<u64, StreamError>>,
    mtu: u16,
    black_holes: u64,
}

/// Starts an echo server on its own thread; it serves `connections` connections (each until
/// the client closes it), then closes its endpoint and reports.
fn echo_server(
    tls: Arc<rustls::ServerConfig>,
    settings: QuicSettings,
    connections: usize,
) -> (SocketAddr, thread::JoinHandle<Vec<ServedConnection>>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        block_on(async move {
            let endpoint =
                QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), tls, &settings).unwrap();
            addr_tx.send(endpoint.local_addr()).unwrap();
            let mut served = Vec::new();
            for _ in 0..connections {
                let conn = endpoint.accept().await.expect("endpoint open");
                served.push(serve_echo(conn).await);
            }
            endpoint.close(0u32, b"server done");
            endpoint.wait_idle().await;
            served
        })
    });
    (addr_rx.recv().unwrap(), handle)
}

async fn serve_echo(conn: Connection) -> ServedConnection {
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut tasks = Vec::new();
    while let Some((recv, send)) = conn.accept_bi().await {
        let results = Rc::clone(&results);
        tasks.push(monoio::spawn(async move {
            let outcome = echo(recv, send).await;
            results.borrow_mut().push(outcome);
        }));
    }
    for task in tasks {
        task.await;
    }
    let stats = conn.stats();
    let streams = results.borrow_mut().drain(..).collect();
    ServedConnection {
        peer_chain: conn.peer_certificates(),
        streams,
        mtu: stats.path.current_mtu,
        black_holes: stats.path.black_holes_detected,
    }
}

async fn echo(mut recv: RecvStream, mut send: SendStream) -> Result<u64, StreamError> {
    let mut total = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
        total += chunk.len() as u64;
        send.write(chunk).await?;
    }
    send.finish()?;
    Ok(total)
}

// ---------- client side ----------

/// Deterministic, chunk-distinct test data.
fn chunk(stream: u64, index: u64, len: usize) -> Bytes {
    let mut state = (stream << 32 | index).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    Bytes::from(data)
}

/// Sends `chunks` chunks of `chunk_len` on a new stream and reads the echo concurrently;
/// returns (crc sent, crc received, bytes received).
async fn echo_round_trip(
    conn: &Connection,
    stream: u64,
    chunks: u64,
    chunk_len: usize,
) -> (u32, u32, u64) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let writer = async {
        let mut crc = 0u32;
        for index in 0..chunks {
            let data = chunk(stream, index, chunk_len);
            crc = crc32c::crc32c_append(crc, &data);
            send.write(data).await.unwrap();
        }
        send.finish().unwrap();
        crc
    };
    let reader = async {
        let mut crc = 0u32;
        let mut len = 0u64;
        while let Some(data) = recv.read_chunk(usize::MAX).await.unwrap() {
            crc = crc32c::crc32c_append(crc, &data);
            len += data.len() as u64;
        }
        (crc, len)
    };
    let (sent, (received, len)) = monoio::join!(writer, reader);
    (sent, received, len)
}

fn client_endpoint(settings: &QuicSettings) -> QuicEndpoint {
    QuicEndpoint::client("127.0.0.1:0".parse().unwrap(), settings).unwrap()
}

// ---------- tests ----------

#[test]
fn echo_of_64_mib_stream_matches_crc32c() {
    let cluster = cluster();
    let settings = QuicSettings::default();
    let (addr, server) = echo_server(cluster.server.clone(), settings.clone(), 1);

    let (sent, received, len) = block_on(async {
        let endpoint = client_endpoint(&settings);
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let result = echo_round_trip(&conn, 0, 64, MIB).await;
        conn.close(0u32, b"done");
        endpoint.wait_idle().await;
        result
    });
    assert_eq!(len, 64 * MIB as u64);
    assert_eq!(sent, received);

    let served = server.join().unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].streams, vec![Ok(64 * MIB as u64)]);
}

#[test]
fn fifty_concurrent_streams_each_echo_their_own_data() {
    let cluster = cluster();
    let settings = QuicSettings::default();
    let (addr, server) = echo_server(cluster.server.clone(), settings.clone(), 1);

    let results = block_on(async {
        let endpoint = client_endpoint(&settings);
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|stream| {
                let conn = conn.clone();
                monoio::spawn(async move { echo_round_trip(&conn, stream, 4, 64 * 1024).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        conn.close(0u32, b"done");
        endpoint.wait_idle().await;
        results
    });
    assert_eq!(results.len(), 50);
    for (sent, received, len) in results {
        assert_eq!(len, 4 * 64 * 1024);
        assert_eq!(sent, received);
    }
    let served = server.join().unwrap();
    assert_eq!(served[0].streams.len(), 50);
    assert!(served[0].streams.iter().all(|s| *s == Ok(4 * 64 * 1024)));
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let cluster = cluster();
    let settings = QuicSettings::default();
    let (addr, server) = echo_server(cluster.server.clone(), settings.clone(), 1);

    // Trusts the cluster CA (so the server is accepted) but presents a foreign certificate.
    let stranger = Ca::new("some other CA");
    let intruder_tls = client_tls(&cluster.ca, stranger.issue("gateway"));

    block_on(async {
        let endpoint = client_endpoint(&settings);
        // TLS 1.3 lets the client finish its handshake before the server has judged the
        // client certificate, so the refusal may surface on connect or on first use.
        let failure = match endpoint.connect(addr, "node", intruder_tls).await {
            Err(ConnectError::Connection(error)) => error,
            Err(other) => panic!("unexpected connect error: {other}"),
            Ok(conn) => {
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                let _ = send.write(Bytes::from_static(b"hello")).await;
                let _ = send.finish();
                match recv.read_chunk(usize::MAX).await {
                    Err(StreamError::ConnectionLost(error)) => error,
                    other => panic!("intruder was served: {other:?}"),
                }
            }
        };
        assert!(
            matches!(
                failure,
                ConnectionError::TransportError(_) | ConnectionError::ConnectionClosed(_)
            ),
            "unexpected failure: {failure:?}"
        );

        // A legitimate client is served next; it must be the only connection the server saw.
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let (sent, received, len) = echo_round_trip(&conn, 1, 1, 1000).await;
        assert_eq!((sent, len), (received, 1000));
        conn.close(0u32, b"done");
        endpoint.wait_idle().await;
    });

    let served = server.join().unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(
        served[0].peer_chain.as_deref(),
        Some(&[cluster.client_cert.clone()][..])
    );
}

#[test]
fn stream_reset_by_peer_surfaces_as_reset_code() {
    let cluster = cluster();
    let settings = QuicSettings::default();
    let (addr, server) = echo_server(cluster.server.clone(), settings.clone(), 1);

    block_on(async {
        let endpoint = client_endpoint(&settings);
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write(chunk(0, 0, 100_000)).await.unwrap();
        send.reset(7u32).unwrap();
        // The server's echo fails and drops its send half, which resets it with the
        // dropped-stream code: the reset is visible from this side too.
        loop {
            match recv.read_chunk(usize::MAX).await {
                Ok(Some(_)) => continue,
                Err(error) => {
                    assert_eq!(
                        error,
                        StreamError::Reset(VarInt::from_u32(DROPPED_STREAM_CODE))
                    );
                    break;
                }
                Ok(None) => panic!("server finished a stream it could not echo"),
            }
        }
        conn.close(0u32, b"done");
        endpoint.wait_idle().await;
    });

    let served = server.join().unwrap();
    assert_eq!(
        served[0].streams,
        vec![Err(StreamError::Reset(VarInt::from_u32(7)))]
    );
}

#[test]
fn jumbo_mtu_is_used_on_loopback() {
    let cluster = cluster();
    let settings = QuicSettings::loopback_jumbo();
    let (addr, server) = echo_server(cluster.server.clone(), settings.clone(), 1);

    let (mtu, black_holes) = block_on(async {
        let endpoint = client_endpoint(&settings);
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let (sent, received, len) = echo_round_trip(&conn, 0, 16, MIB).await;
        assert_eq!((sent, len), (received, 16 * MIB as u64));
        let stats = conn.stats();
        conn.close(0u32, b"done");
        endpoint.wait_idle().await;
        (stats.path.current_mtu, stats.path.black_holes_detected)
    });
    assert!(mtu > 1500, "client path MTU {mtu}");
    assert_eq!(mtu, settings.effective_mtu());
    assert_eq!(black_holes, 0);

    let served = server.join().unwrap();
    assert!(served[0].mtu > 1500, "server path MTU {}", served[0].mtu);
    assert_eq!(served[0].black_holes, 0);
    assert_eq!(served[0].streams, vec![Ok(16 * MIB as u64)]);
}

#[test]
fn closing_the_endpoint_tells_the_peer_and_drains() {
    let cluster = cluster();
    let settings = QuicSettings::default();
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = thread::spawn({
        let tls = cluster.server.clone();
        let settings = settings.clone();
        move || {
            block_on(async move {
                let endpoint =
                    QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), tls, &settings).unwrap();
                addr_tx.send(endpoint.local_addr()).unwrap();
                let conn = endpoint.accept().await.unwrap();
                let (mut recv, _send) = conn.accept_bi().await.unwrap();
                let first = recv.read_chunk(usize::MAX).await.unwrap();
                endpoint.close(42u32, b"shutting down");
                assert!(endpoint.accept().await.is_none());
                endpoint.wait_idle().await;
                assert_eq!(endpoint.connection_count(), 0);
                first
            })
        }
    });
    let addr = addr_rx.recv().unwrap();

    let reason = block_on(async {
        let endpoint = client_endpoint(&settings);
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write(Bytes::from_static(b"ping")).await.unwrap();
        let reason = conn.closed().await;
        endpoint.wait_idle().await;
        reason
    });
    match reason {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, VarInt::from_u32(42));
            assert_eq!(&close.reason[..], b"shutting down");
        }
        other => panic!("unexpected close reason: {other:?}"),
    }
    assert_eq!(server.join().unwrap().as_deref(), Some(&b"ping"[..]));
}

#[test]
fn stop_accepting_refuses_new_connections_and_keeps_established_ones() {
    let cluster = cluster();
    let settings = QuicSettings::default();
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = thread::spawn({
        let tls = cluster.server.clone();
        let settings = settings.clone();
        move || {
            block_on(async move {
                let endpoint =
                    QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), tls, &settings).unwrap();
                addr_tx.send(endpoint.local_addr()).unwrap();
                let conn = endpoint.accept().await.unwrap();
                endpoint.stop_accepting();
                assert!(endpoint.accept().await.is_none());
                let served = serve_echo(conn).await;
                endpoint.wait_idle().await;
                served
            })
        }
    });
    let addr = addr_rx.recv().unwrap();

    block_on(async {
        let endpoint = client_endpoint(&settings);
        let first = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        // The server has taken `first` once a stream round-trips on it; then it refuses.
        let (sent, received, _) = echo_round_trip(&first, 0, 1, 1000).await;
        assert_eq!(sent, received);
        match endpoint.connect(addr, "node", cluster.client.clone()).await {
            Err(ConnectError::Connection(ConnectionError::ConnectionClosed(close))) => {
                assert_eq!(
                    close.error_code,
                    quinn_proto::TransportErrorCode::CONNECTION_REFUSED
                );
            }
            other => panic!("second connection not refused: {other:?}"),
        }
        let (sent, received, len) = echo_round_trip(&first, 1, 4, 100_000).await;
        assert_eq!((sent, len), (received, 400_000));
        first.close(0u32, b"done");
        endpoint.wait_idle().await;
    });
    let served = server.join().unwrap();
    assert_eq!(served.streams.len(), 2);
}

#[test]
fn unread_stream_data_throttles_the_writer_at_the_stream_window() {
    let cluster = cluster();
    let settings = QuicSettings {
        stream_receive_window: 4 * MIB as u32,
        ..QuicSettings::default()
    };
    let window = u64::from(settings.stream_receive_window);
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = thread::spawn({
        let tls = cluster.server.clone();
        let settings = settings.clone();
        move || {
            block_on(async move {
                let endpoint =
                    QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), tls, &settings).unwrap();
                addr_tx.send(endpoint.local_addr()).unwrap();
                let conn = endpoint.accept().await.unwrap();
                // The first stream is held and never read; later ones are echoed.
                let held = conn.accept_bi().await.unwrap();
                while let Some((recv, send)) = conn.accept_bi().await {
                    echo(recv, send).await.unwrap();
                }
                drop(held);
                endpoint.wait_idle().await;
            })
        }
    });
    let addr = addr_rx.recv().unwrap();

    let written = block_on(async {
        let endpoint = client_endpoint(&settings);
        let conn = endpoint
            .connect(addr, "node", cluster.client.clone())
            .await
            .unwrap();
        let written = Rc::new(std::cell::Cell::new(0u64));
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let writer = monoio::spawn({
            let written = Rc::clone(&written);
            async move {
                for index in 0.. {
                    if send.write(chunk(0, index, MIB)).await.is_err() {
                        break;
                    }
                    written.set(written.get() + MIB as u64);
                }
            }
        });
        // Round trips on other streams prove the peer is processing what arrives meanwhile.
        for stream in 1..=3 {
            let (sent, received, _) = echo_round_trip(&conn, stream, 2, MIB).await;
            assert_eq!(sent, received);
        }
        let written = written.get();
        conn.close(0u32, b"done");
        writer.await;
        endpoint.wait_idle().await;
        written
    });
    assert!(written > 0);
    assert!(
        written <= window,
        "{written} bytes queued past a {window}-byte window"
    );
    server.join().unwrap();
}
