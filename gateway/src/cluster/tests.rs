//! The cluster layer against real sockets on 127.0.0.1: registration over HTTP, down
//! detection, and the node protocol against an in-process fake node speaking QUIC with mutual
//! TLS and the same transport settings as the real node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Endpoint, RecvStream, SendStream, TokioRuntime, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sixfold_wire::registration::{HEARTBEAT_PATH, REGISTER_PATH};
use sixfold_wire::{
    ChunkId, ChunkInfo, ChunkMeta, ChunkState, Decoded, ErrorResponse, Request, Response, Status,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::*;
use crate::meta::{DeleteReason, Meta, PlannedPart, UploadSession};

/// Bound on how long a test waits for something that should happen in milliseconds; only
/// a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Test PKI: a CA, a node certificate for 127.0.0.1, a gateway client certificate.

struct Pki {
    gateway: rustls::ClientConfig,
    node: rustls::ServerConfig,
}

fn pki() -> Pki {
    pki_for(Uuid::new_v4())
}

/// The test PKI with the node certificate naming `node_id` (as `certs issue-node` does), so
/// the pool's identity check accepts the fake node as that node.
fn pki_for(node_id: Uuid) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let provider = sixfold_certs::crypto_provider();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);

    let leaf = |sans: Vec<String>, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            format!("urn:sixfold:node:{node_id}").try_into().unwrap(),
        ));
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &ca).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    };
    let (node_chain, node_key) = leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (gw_chain, gw_key) = leaf(vec!["gateway".into()], ExtendedKeyUsagePurpose::ClientAuth);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_cert.der().to_vec()))
        .unwrap();
    let roots = Arc::new(roots);
    let mut gateway = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(gw_chain, gw_key)
        .unwrap();
    gateway.alpn_protocols = vec![sixfold_wire::ALPN.to_vec()];
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .unwrap();
    let mut node = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(node_chain, node_key)
        .unwrap();
    node.alpn_protocols = vec![sixfold_wire::ALPN.to_vec()];
    Pki { gateway, node }
}

// ---------------------------------------------------------------------------------------------
// A fake node: one shard, chunks in memory, the protocol as PROTOCOL.md states it.

/// A chunk whose reads fail half way with a reset (as a checksum failure would).
const POISONED: ChunkId = [0xee; 16];

type Store = Arc<Mutex<BTreeMap<ChunkId, (ChunkMeta, Bytes)>>>;

struct FakeNode {
    addr: SocketAddr,
    endpoint: Endpoint,
    store: Store,
    /// Puts that ended without a complete body.
    broken_puts: Arc<Mutex<u32>>,
}

impl FakeNode {
    fn start(tls: rustls::ServerConfig) -> FakeNode {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(quic_config::transport_config(JUMBO_MTU)));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::new(
            quic_config::endpoint_config().unwrap(),
            Some(server),
            socket,
            Arc::new(TokioRuntime),
        )
        .unwrap();
        let node = FakeNode {
            addr: endpoint.local_addr().unwrap(),
            endpoint: endpoint.clone(),
            store: Store::default(),
            broken_puts: Arc::default(),
        };
        let (store, broken) = (node.store.clone(), node.broken_puts.clone());
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let (store, broken) = (store.clone(), broken.clone());
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(serve(send, recv, store.clone(), broken.clone()));
                    }
                });
            }
        });
        node
    }

    fn insert(&self, chunk_id: ChunkId, file_id: [u8; 16], data: &'static [u8]) {
        let meta = ChunkMeta {
            file_id,
            part_index: 0,
            part_count: 1,
            file_offset: 0,
            length: data.len() as u64,
        };
        self.store
            .lock()
            .unwrap()
            .insert(chunk_id, (meta, Bytes::from_static(data)));
    }

    fn has(&self, chunk_id: &ChunkId) -> bool {
        self.store.lock().unwrap().contains_key(chunk_id)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.endpoint.close(VarInt::from_u32(0), b"test over");
    }
}

fn info(chunk_id: ChunkId, meta: ChunkMeta, body: &Bytes) -> ChunkInfo {
    ChunkInfo {
        chunk_id,
        meta,
        durable_len: meta.length,
        crc32c: crc32c::crc32c(body),
        state: ChunkState::Complete,
    }
}

async fn respond(send: &mut SendStream, resp: Response) {
    let _ = send.write_all(&resp.to_vec()).await;
}

async fn serve(mut send: SendStream, mut recv: RecvStream, store: Store, broken: Arc<Mutex<u32>>) {
    let mut buf = Vec::new();
    let req = loop {
        match sixfold_wire::try_decode_request(&buf) {
            Ok(Decoded::Message(req, _)) => break req,
            Ok(Decoded::NeedMore(n)) => match recv.read_chunk(n - buf.len(), true).await {
                Ok(Some(c)) => buf.extend_from_slice(&c.bytes),
                // A reset can overtake the header it follows.
                _ => {
                    *broken.lock().unwrap() += 1;
                    return;
                }
            },
            Err(_) => return,
        }
    };
    let op = req.op();
    let not_found =
        || Response::Error(ErrorResponse::new(op, Status::NotFound, 0, "no such chunk"));
    let resp = match req {
        Request::Put { chunk_id, meta, .. } => {
            let mut body = Vec::with_capacity(meta.length as usize);
            while (body.len() as u64) < meta.length {
                match recv.read_chunk(usize::MAX, true).await {
                    Ok(Some(c)) => body.extend_from_slice(&c.bytes),
                    _ => {
                        *broken.lock().unwrap() += 1;
                        return;
                    }
                }
            }
            let body = Bytes::from(body);
            let crc = crc32c::crc32c(&body);
            store.lock().unwrap().insert(chunk_id, (meta, body));
            Response::Put {
                length: meta.length,
                crc32c: crc,
            }
        }
        Request::Get {
            chunk_id,
            offset,
            len,
        } => {
            let found = store.lock().unwrap().get(&chunk_id).cloned();
            let Some((_, body)) = found else {
                return respond(&mut send, not_found()).await;
            };
            let (start, end) = (offset as usize, (offset + len) as usize);
            if end > body.len() {
                let e = ErrorResponse::new(op, Status::BadRequest, 0, "range past the end");
                return respond(&mut send, Response::Error(e)).await;
            }
            respond(&mut send, Response::Get { length: len }).await;
            if chunk_id == POISONED {
                let _ = send
                    .write_chunk(body.slice(start..start + (end - start) / 2))
                    .await;
                let _ = send.reset(VarInt::from(Status::ChecksumMismatch as u8));
                return;
            }
            let _ = send.write_chunk(body.slice(start..end)).await;
            let _ = send.finish();
            return;
        }
        Request::Delete { chunk_id } => match store.lock().unwrap().remove(&chunk_id) {
            Some(_) => Response::Delete,
            None => not_found(),
        },
        Request::Stat { chunk_id } => match store.lock().unwrap().get(&chunk_id) {
            Some((meta, body)) => Response::Stat(info(chunk_id, *meta, body)),
            None => not_found(),
        },
        Request::List { after, limit } => {
            let store = store.lock().unwrap();
            let mut entries: Vec<ChunkInfo> = store
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| **id > a))
                .map(|(id, (meta, body))| info(*id, *meta, body))
                .take(limit as usize + 1)
                .collect();
            let more = entries.len() > limit as usize;
            entries.truncate(limit as usize);
            Response::List { entries, more }
        }
        // The gateway's verification probe: any answer over a connection whose certificate
        // names the node will do.
        Request::NodeInfo => Response::NodeInfo(sixfold_wire::NodeInfo {
            node_id: [0; 16],
            shard: 0,
            shards: 1,
            capacity: 1 << 40,
            used: 0,
            chunk_count: 0,
            in_flight: 0,
        }),
        // Commit marks and the rebuild's requests are exercised against the real node.
        Request::Mark { .. } | Request::Inventory { .. } | Request::Verify { .. } => {
            Response::Error(ErrorResponse::new(
                op,
                Status::BadRequest,
                0,
                "not served by the fake node",
            ))
        }
    };
    respond(&mut send, resp).await;
    let _ = send.finish();
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Harness {
    cluster: Cluster,
    meta: Meta,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(cfg: ClusterConfig, tls: rustls::ClientConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path().join("meta.redb")).unwrap();
        let cluster = Cluster::start(cfg, std::sync::Arc::new(meta.clone()), tls)
            .await
            .unwrap();
        Harness {
            cluster,
            meta,
            _dir: dir,
        }
    }

    /// Registers a node with the given shard addresses, without HTTP.
    async fn register(&self, id: Uuid, addrs: &[SocketAddr]) {
        let report = parse_report_json(id, addrs, false);
        let report = registration::parse_report(&report).unwrap();
        self.cluster
            .apply_report(&report, ReportKind::Register)
            .await;
    }
}

fn test_config() -> ClusterConfig {
    ClusterConfig {
        heartbeat_interval: Duration::from_millis(50),
        down_after: Duration::from_millis(300),
        request_timeout: Duration::from_millis(1500),
        cleanup_interval: Duration::from_millis(100),
        ..ClusterConfig::default()
    }
}

fn parse_report_json(id: Uuid, addrs: &[SocketAddr], draining: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "node_id": id.to_string(),
        "name": format!("fake-{}", &id.to_string()[..8]),
        "shard_addrs": addrs,
        "capacity": 1u64 << 40,
        "used": 0,
        "chunk_count": 0,
        "in_flight": 0,
        "draining": draining,
        "software": "fake-node",
    }))
    .unwrap()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Feeds `data` into a channel in pieces of `piece` bytes, as the upload pipeline would.
fn feed(data: Bytes, piece: usize) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut at = 0;
        while at < data.len() {
            let end = (at + piece).min(data.len());
            if tx.send(data.slice(at..end)).await.is_err() {
                return;
            }
            at = end;
        }
    });
    rx
}

fn pattern(len: usize, seed: u32) -> Bytes {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    Bytes::from(v)
}

fn chunk_meta(file: Uuid, len: u64) -> ChunkMeta {
    ChunkMeta {
        file_id: *file.as_bytes(),
        part_index: 0,
        part_count: 1,
        file_offset: 0,
        length: len,
    }
}

async fn read_all(mut reader: ChunkReader) -> Result<Vec<u8>, NodeError> {
    let mut out = Vec::new();
    while let Some(piece) = reader.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Calls the internal router as the internal listener does: the verified client certificate's
/// identity (if any) in the request's extensions.
async fn post_report(
    router: &axum::Router,
    path: &str,
    peer: Option<sixfold_certs::PeerRole>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    if let Some(role) = peer {
        request
            .extensions_mut()
            .insert(crate::http::tls::PeerCert(Arc::new(
                sixfold_certs::PeerIdentity {
                    role,
                    common_name: Some("fake".into()),
                },
            )));
    }
    let response = tower_service::Service::call(&mut router.clone(), request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn nodes_register_with_their_certificate_and_go_down_when_silent() {
    let Pki { gateway, .. } = pki();
    // Long enough that a loaded test machine does not mark the node down between a report
    // and the assertion after it; short enough to watch it happen.
    let mut cfg = test_config();
    cfg.down_after = Duration::from_secs(1);
    let h = Harness::start(cfg, gateway).await;
    let router = h.cluster.internal_router();
    let id = Uuid::new_v4();
    let node = Some(sixfold_certs::PeerRole::Node(id));
    let addrs: Vec<SocketAddr> = vec![
        "127.0.0.1:7100".parse().unwrap(),
        "127.0.0.1:7101".parse().unwrap(),
    ];
    let body = parse_report_json(id, &addrs, false);

    // No verified certificate: 401. Another node's certificate, or the gateway's: 403. Both
    // JSON, and nothing registered.
    let (status, err) = post_report(&router, REGISTER_PATH, None, body.clone()).await;
    assert_eq!((status, err["error"].as_str()), (401, Some("unauthorized")));
    for role in [
        sixfold_certs::PeerRole::Node(Uuid::new_v4()),
        sixfold_certs::PeerRole::Gateway,
    ] {
        let (status, err) = post_report(&router, HEARTBEAT_PATH, Some(role), body.clone()).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (403, Some("forbidden")),
            "{role}"
        );
        assert!(err["message"].is_string());
    }
    assert!(h.cluster.nodes().is_empty());

    // A bad body or an unknown version: 400.
    let (status, err) = post_report(&router, REGISTER_PATH, node, b"{}".to_vec()).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("bad_request")));
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["version"] = 9.into();
    let (status, _) = post_report(
        &router,
        REGISTER_PATH,
        node,
        serde_json::to_vec(&v).unwrap(),
    )
    .await;
    assert_eq!(status, 400);

    // Its own certificate: 200, the heartbeat interval, and the node is known and persisted,
    // but joining: nothing at its addresses proved to be it over QUIC.
    let (status, ack) = post_report(&router, REGISTER_PATH, node, body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(ack["heartbeat_interval_ms"], 50);
    let nodes = h.cluster.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].id, id);
    assert_eq!(nodes[0].state, NodeState::Up);
    assert_eq!(nodes[0].shard_addrs, addrs);
    assert!(nodes[0].last_heartbeat.is_some());
    let json = serde_json::to_value(&nodes[0]).unwrap();
    assert_eq!(json["state"], "joining");
    assert_eq!(h.cluster.up_count(), 0);
    assert!(!h.cluster.candidates()[0].eligible);
    let stored = h
        .meta
        .get_node(&id)
        .unwrap()
        .expect("persisted on register");
    assert_eq!(stored.shard_addrs, addrs);

    // Silence: down, and no longer eligible.
    eventually("node marked down", || {
        h.cluster.node_state(id) == Some(NodeState::Down)
    })
    .await;
    assert_eq!(h.cluster.up_count(), 0);
    assert!(!h.cluster.candidates()[0].eligible);
    assert_eq!(
        serde_json::to_value(h.cluster.nodes()).unwrap()[0]["state"],
        "down"
    );

    // A heartbeat brings it back; a draining one takes it out of placement.
    let (status, _) = post_report(&router, HEARTBEAT_PATH, node, body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(h.cluster.node_state(id), Some(NodeState::Up));
    let draining = parse_report_json(id, &addrs, true);
    let (status, _) = post_report(&router, HEARTBEAT_PATH, node, draining).await;
    assert_eq!(status, 200);
    assert_eq!(h.cluster.node_state(id), Some(NodeState::Draining));
    assert!(!h.cluster.candidates()[0].eligible);
    h.cluster.shutdown().await;

    // A restarted gateway knows the node but waits for its heartbeat.
    let meta = h.meta.clone();
    let again = Cluster::start(test_config(), std::sync::Arc::new(meta), pki().gateway)
        .await
        .unwrap();
    assert_eq!(again.nodes().len(), 1);
    assert_eq!(again.node_state(id), Some(NodeState::Down));
    again.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_node_fails_fast_with_unavailable() {
    let Pki { gateway, .. } = pki();
    let mut cfg = test_config();
    cfg.request_timeout = Duration::from_millis(300);
    cfg.down_after = Duration::from_secs(60);
    let h = Harness::start(cfg, gateway).await;
    // A UDP port that takes datagrams and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let node = Uuid::new_v4();
    h.register(node, &[silent.local_addr().unwrap()]).await;

    let file = Uuid::new_v4();
    let guard = tokio::time::timeout(PATIENCE, async {
        let put = h
            .cluster
            .put_chunk(
                node,
                [1; 16],
                chunk_meta(file, 10),
                None,
                feed(pattern(10, 1), 4),
            )
            .await;
        assert!(matches!(put, Err(NodeError::Unavailable(_))), "{put:?}");
        let get = h.cluster.get_chunk(node, [1; 16], 0, 10).await;
        assert!(matches!(get, Err(NodeError::Unavailable(_))), "{get:?}");
        let del = h.cluster.delete_chunk(node, [1; 16]).await;
        assert!(matches!(del, Err(NodeError::Unavailable(_))), "{del:?}");
    })
    .await;
    assert!(guard.is_ok(), "requests to an unreachable node hung");

    // Unknown nodes are refused without any network traffic.
    let unknown = h.cluster.stat_chunk(Uuid::new_v4(), [1; 16]).await;
    assert!(
        matches!(unknown, Err(NodeError::UnknownNode)),
        "{unknown:?}"
    );
    h.cluster.shutdown().await;
}

#[tokio::test]
async fn put_get_stat_list_delete_against_a_node() {
    let node = Uuid::new_v4();
    let Pki {
        gateway,
        node: node_tls,
    } = pki_for(node);
    // Liveness is not under test here: a slow test machine must not mark the node down.
    let mut cfg = test_config();
    cfg.down_after = Duration::from_secs(3600);
    let h = Harness::start(cfg, gateway).await;
    let fake = FakeNode::start(node_tls);
    h.register(node, &[fake.addr]).await;
    // Up only once the gateway reached it over QUIC and found node's certificate there.
    eventually("node verified", || h.cluster.up_count() == 1).await;

    let file = Uuid::new_v4();
    let data = pattern(5 << 20, 7);
    let chunk: ChunkId = *Uuid::new_v4().as_bytes();
    let meta = chunk_meta(file, data.len() as u64);
    // The reservation is what counts the part in flight (and its bytes against free space).
    let part = crate::split::PartRange {
        index: 0,
        offset: 0,
        len: data.len() as u64,
    };
    let reservation = h.cluster.reserve(&file, &[part]).unwrap();
    assert_eq!(reservation.nodes(), vec![node]);
    assert_eq!(h.cluster.candidates()[0].in_flight, 1);
    assert_eq!(h.cluster.candidates()[0].free(), (1u64 << 40) - part.len);
    let ack = h
        .cluster
        .put_chunk(node, chunk, meta, None, feed(data.clone(), 256 << 10))
        .await
        .unwrap();
    reservation.acknowledged();
    assert_eq!(h.cluster.candidates()[0].in_flight, 0);
    assert_eq!(ack.length, data.len() as u64);
    assert_eq!(ack.crc32c, crc32c::crc32c(&data));

    // The whole chunk, then a range, byte for byte.
    let reader = h
        .cluster
        .get_chunk(node, chunk, 0, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(reader.len(), data.len() as u64);
    let back = read_all(reader).await.unwrap();
    assert_eq!(crc32c::crc32c(&back), crc32c::crc32c(&data));
    assert_eq!(back.len(), data.len());
    let reader = h
        .cluster
        .get_chunk(node, chunk, 1_000_001, 77_777)
        .await
        .unwrap();
    assert_eq!(read_all(reader).await.unwrap(), data[1_000_001..1_077_778]);

    // The body as a stream, as the HTTP layer consumes it.
    let reader = h.cluster.get_chunk(node, chunk, 10, 100).await.unwrap();
    let pieces: Vec<Result<Bytes, NodeError>> =
        futures_util::StreamExt::collect(reader.into_stream()).await;
    let joined: Vec<u8> = pieces
        .into_iter()
        .flat_map(|p| p.unwrap().to_vec())
        .collect();
    assert_eq!(joined, data[10..110]);

    // Stat and list.
    let info = h.cluster.stat_chunk(node, chunk).await.unwrap();
    assert_eq!(info.state, ChunkState::Complete);
    assert_eq!(info.meta, meta);
    assert_eq!(info.crc32c, ack.crc32c);
    let (entries, more) = h.cluster.list_chunks(node, 0, None, 512).await.unwrap();
    assert!(!more);
    assert_eq!(
        entries.iter().map(|e| e.chunk_id).collect::<Vec<_>>(),
        vec![chunk]
    );

    // Errors the node reports come back with their status.
    let missing = h.cluster.stat_chunk(node, [9; 16]).await.unwrap_err();
    assert_eq!(missing.status(), Some(Status::NotFound), "{missing:?}");
    let past_end = h
        .cluster
        .get_chunk(node, chunk, data.len() as u64, 1)
        .await
        .unwrap_err();
    assert_eq!(past_end.status(), Some(Status::BadRequest), "{past_end:?}");

    // A reset in the middle of a body fails the read, never looks like a short success.
    fake.insert(POISONED, [1; 16], &[0x5a; 4096]);
    // The reset may overtake the response header (quinn drops unread data on a reset), so
    // the failure surfaces either when opening or while reading; both are errors.
    let err = match h.cluster.get_chunk(node, POISONED, 0, 4096).await {
        Err(e) => e,
        Ok(mut reader) => {
            let mut got = 0usize;
            let err = loop {
                match reader.next().await {
                    Some(Ok(b)) => got += b.len(),
                    Some(Err(e)) => break e,
                    None => panic!("a reset read ended cleanly after {got} bytes"),
                }
            };
            assert!(got < 4096);
            assert!(reader.next().await.is_none(), "nothing after an error");
            err
        }
    };
    assert_eq!(err.status(), Some(Status::ChecksumMismatch), "{err:?}");

    // A body shorter than announced: the put fails and the node sees a reset, not a chunk.
    let (tx, rx) = mpsc::channel(1);
    tx.send(Bytes::from_static(b"only this")).await.unwrap();
    drop(tx);
    let short = h
        .cluster
        .put_chunk(node, [3; 16], chunk_meta(file, 100), None, rx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            short,
            NodeError::ShortBody {
                expected: 100,
                got: 9
            }
        ),
        "{short:?}"
    );
    eventually("node saw the abandoned put", || {
        *fake.broken_puts.lock().unwrap() == 1
    })
    .await;
    assert!(!fake.has(&[3; 16]));

    // Delete, and delete again: absent counts as deleted.
    h.cluster.delete_chunk(node, chunk).await.unwrap();
    assert!(!fake.has(&chunk));
    h.cluster.delete_chunk(node, chunk).await.unwrap();

    // One pooled connection served everything, at the jumbo MTU (no fallback to 1200).
    assert_eq!(h.cluster.open_connections(), 1);
    let stats = h.cluster.connection_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].mtu, JUMBO_MTU, "{stats:?}");

    h.cluster.shutdown().await;
}

#[tokio::test]
async fn cleanup_drains_the_delete_queue_and_removes_orphans_only() {
    let node = Uuid::new_v4();
    let Pki {
        gateway,
        node: node_tls,
    } = pki_for(node);
    let mut cfg = test_config();
    cfg.down_after = Duration::from_secs(60);
    cfg.orphan_scan_delay = Duration::from_millis(200);
    cfg.orphan_scan_interval = Duration::from_millis(200);
    // Quarantined on the first scan, deleted by the next.
    cfg.orphan_grace = Duration::ZERO;
    let h = Harness::start(cfg, gateway).await;
    let fake = FakeNode::start(node_tls);

    // A live upload session on this node, recorded before its bytes move (as uploads do).
    let session_file = Uuid::new_v4();
    let live_chunk: ChunkId = *Uuid::new_v4().as_bytes();
    let now = crate::clock::unix_ms(std::time::SystemTime::now());
    h.meta
        .begin_session(&UploadSession {
            file_id: session_file,
            name: "in-progress.bin".into(),
            content_type: None,
            size: Some(5),
            created_unix_ms: now,
            expires_unix_ms: now + 3_600_000,
            parts: vec![PlannedPart {
                index: 0,
                offset: 0,
                len: 5,
                node_id: node,
                chunk_id: live_chunk,
            }],
            multipart: false,
            owner: None,
        })
        .unwrap();
    fake.insert(live_chunk, *session_file.as_bytes(), b"hello");
    // Chunks queued for deletion, and one the node no longer has.
    fake.insert([1; 16], [8; 16], b"queued one");
    fake.insert([2; 16], [8; 16], b"queued two");
    let queued = h
        .meta
        .enqueue_deletes(
            &node,
            &[[1; 16], [2; 16], [4; 16]],
            DeleteReason::FileDeleted,
        )
        .unwrap();
    assert_eq!(queued, 3);
    // A complete chunk nothing references, of a file no session is writing: an orphan.
    fake.insert([5; 16], [9; 16], b"orphan");

    h.register(node, &[fake.addr]).await;
    h.cluster.wake_cleanup();
    eventually("delete queue drained", || {
        h.meta.pending_deletes(&node, 10).unwrap().is_empty() && !fake.has(&[1; 16])
    })
    .await;
    assert!(!fake.has(&[2; 16]));
    eventually("orphan removed", || !fake.has(&[5; 16])).await;
    // The orphan's delete is recorded once the node has answered it: wait for that state (the
    // node drops the chunk before the cleanup records the delete done).
    eventually("orphan delete recorded", || {
        h.meta.pending_deletes(&node, 10).unwrap().is_empty()
    })
    .await;
    // The live session's chunk survives every scan.
    assert!(fake.has(&live_chunk));

    // An expired session is aborted and its chunk deleted.
    let expired_file = Uuid::new_v4();
    let expired_chunk: ChunkId = *Uuid::new_v4().as_bytes();
    h.meta
        .begin_session(&UploadSession {
            file_id: expired_file,
            name: "stale.bin".into(),
            content_type: None,
            size: Some(5),
            created_unix_ms: 1,
            expires_unix_ms: 2,
            parts: vec![PlannedPart {
                index: 0,
                offset: 0,
                len: 5,
                node_id: node,
                chunk_id: expired_chunk,
            }],
            multipart: false,
            owner: None,
        })
        .unwrap();
    fake.insert(expired_chunk, *expired_file.as_bytes(), b"stale");
    h.cluster.wake_cleanup();
    eventually("expired session aborted and its chunk deleted", || {
        h.meta.get_session(&expired_file).unwrap().is_none() && !fake.has(&expired_chunk)
    })
    .await;
    assert!(fake.has(&live_chunk));
    assert!(h.meta.get_session(&session_file).unwrap().is_some());

    h.cluster.shutdown().await;
}

#[tokio::test]
async fn a_shard_presenting_another_nodes_certificate_is_refused() {
    let (real, claimed) = (Uuid::new_v4(), Uuid::new_v4());
    let Pki {
        gateway,
        node: node_tls,
    } = pki_for(real);
    let mut cfg = test_config();
    cfg.down_after = Duration::from_secs(3600);
    let h = Harness::start(cfg, gateway).await;
    let fake = FakeNode::start(node_tls);
    // A report for `claimed` naming the address where `real` listens (a forged registration).
    h.register(claimed, &[fake.addr]).await;
    let err = h.cluster.node_info(claimed, 0).await.unwrap_err();
    assert!(
        matches!(&err, NodeError::Unavailable(why) if why.contains(&format!("not node {claimed}"))),
        "{err:?}"
    );
    assert_eq!(h.cluster.up_count(), 0);
    assert_eq!(h.cluster.nodes()[0].state_name, "joining");
    assert!(!h.cluster.candidates()[0].eligible);
    h.cluster.shutdown().await;
}
