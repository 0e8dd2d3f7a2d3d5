//! One shard started in-process on 127.0.0.1 (its own thread, io_uring runtime, QUIC endpoint
//! and chunk store in a temp dir), driven by a client built on the node's own QUIC module with
//! cluster certificates from `sixfold-certs`: every operation of the protocol, round trips
//! checked byte for byte (crc32c), resumed and interrupted puts, refusals, and the drain on stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use sixfold_certs::{GatewayTls, InitOptions, NodeCertRequest, NodeTls, init_cluster, issue_node};
use sixfold_node::quic::{Connection, QuicEndpoint, QuicSettings, StreamError};
use sixfold_node::shard::{NodeShared, ShardEvent, ShardSpec, spawn_shard};
use sixfold_node::store::StoreConfig;
use sixfold_wire::{
    ChunkMeta, ChunkState, Decoded, ErrorResponse, Op, Request, Response, Status,
    try_decode_response,
};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
/// Bound on the whole client run so a deadlock fails the test instead of hanging it.
const DEADLOCK_GUARD: Duration = Duration::from_secs(120);

struct TestShard {
    addr: SocketAddr,
    node: Arc<NodeShared>,
    events: mpsc::Receiver<ShardEvent>,
    thread: Option<JoinHandle<()>>,
    client_tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl TestShard {
    fn start() -> Self {
        sixfold_certs::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let gw = dir.path().join("gateway-certs");
        let node_certs = dir.path().join("node-certs");
        init_cluster(&gw, &InitOptions::default()).unwrap();
        let req = NodeCertRequest {
            node_id: Uuid::new_v4(),
            name: "node-test".into(),
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            dns_names: vec![],
        };
        issue_node(&gw, &req, &node_certs, false).unwrap();
        let client_tls = GatewayTls::load(&gw).unwrap().client_config();
        let server_tls = NodeTls::load(&node_certs).unwrap().server_config();

        let node = NodeShared::new(Uuid::new_v4(), 1);
        node.set_capacity(8 << 30);
        let (tx, events) = mpsc::channel();
        let spec = ShardSpec {
            shard: 0,
            listen: "127.0.0.1:0".parse().unwrap(),
            dir: dir.path().join("shard-0"),
            tls: server_tls,
            quic: QuicSettings::loopback_jumbo(),
            store: StoreConfig::default(),
            core: None,
        };
        let thread = spawn_shard(spec, Arc::clone(&node), move |e| {
            let _ = tx.send(e);
        })
        .unwrap();
        let addr = match events.recv_timeout(DEADLOCK_GUARD).unwrap() {
            ShardEvent::Listening { addr, .. } => addr,
            other => panic!("shard did not start: {other:?}"),
        };
        Self {
            addr,
            node,
            events,
            thread: Some(thread),
            client_tls,
            _dir: dir,
        }
    }

    /// Runs `f` against a connection to the shard, on a client runtime of its own.
    fn client<F, Fut>(&self, f: F)
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime");
        let (addr, tls) = (self.addr, Arc::clone(&self.client_tls));
        runtime.block_on(async move {
            let run = async move {
                let endpoint = QuicEndpoint::client(
                    "127.0.0.1:0".parse().unwrap(),
                    &QuicSettings::loopback_jumbo(),
                )
                .unwrap();
                let conn = endpoint.connect(addr, "127.0.0.1", tls).await.unwrap();
                f(conn.clone()).await;
                conn.close(0u32, b"done");
                endpoint.close(0u32, b"done");
                let _ = monoio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
            };
            monoio::time::timeout(DEADLOCK_GUARD, run)
                .await
                .expect("test deadlocked");
        });
    }

    fn stop(mut self) {
        self.node.request_stop();
        loop {
            match self.events.recv_timeout(DEADLOCK_GUARD).unwrap() {
                ShardEvent::Stopped { .. } => break,
                ShardEvent::Failed { error, .. } => panic!("shard failed: {error}"),
                ShardEvent::Listening { .. } => {}
            }
        }
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for TestShard {
    fn drop(&mut self) {
        // A failed test still stops its shard.
        self.node.request_hard_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What came back on one stream.
#[derive(Debug)]
struct Reply {
    response: Response,
    body: Vec<u8>,
    /// Set when the node reset the stream (after its header).
    reset: Option<StreamError>,
}

impl Reply {
    fn error(&self) -> &ErrorResponse {
        match &self.response {
            Response::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

/// Sends raw header bytes and body pieces on a new stream; `finish` ends the sending side,
/// otherwise it is reset after the body (the client abandons the request).
async fn call_raw(
    conn: &Connection,
    header: Vec<u8>,
    body: &[Bytes],
    finish: bool,
) -> Option<Reply> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut pieces = vec![Bytes::from(header)];
    pieces.extend(body.iter().cloned());
    // A node that refuses early stops reading: later writes may fail, the answer still comes.
    for piece in pieces {
        if send.write(piece).await.is_err() {
            break;
        }
    }
    if finish {
        let _ = send.finish();
    } else {
        send.reset(0u32).unwrap();
        return None;
    }
    let mut buf = Vec::new();
    let mut reset = None;
    loop {
        match recv.read_chunk(usize::MAX).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                reset = Some(e);
                break;
            }
        }
    }
    match try_decode_response(&buf).unwrap() {
        Decoded::Message(response, used) => Some(Reply {
            response,
            body: buf[used..].to_vec(),
            reset,
        }),
        Decoded::NeedMore(_) => panic!("no whole response header ({} bytes, {reset:?})", buf.len()),
    }
}

async fn call(conn: &Connection, request: &Request, body: &[Bytes]) -> Reply {
    call_raw(conn, request.to_vec(), body, true).await.unwrap()
}

/// Deterministic test bytes (xorshift), different per seed.
fn data(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The body in pieces of `piece` bytes, as a client would stream it.
fn pieces(bytes: &[u8], piece: usize) -> Vec<Bytes> {
    bytes.chunks(piece).map(Bytes::copy_from_slice).collect()
}

fn meta(length: u64) -> ChunkMeta {
    ChunkMeta {
        file_id: [7; 16],
        part_index: 1,
        part_count: 6,
        file_offset: 5 * MIB,
        length,
    }
}

fn put(id: [u8; 16], length: u64, resume_from: u64) -> Request {
    Request::Put {
        chunk_id: id,
        meta: meta(length),
        resume_from,
        facts: None,
    }
}

fn get(id: [u8; 16], offset: u64, len: u64) -> Request {
    Request::Get {
        chunk_id: id,
        offset,
        len,
    }
}

async fn stat(conn: &Connection, id: [u8; 16]) -> Response {
    call(conn, &Request::Stat { chunk_id: id }, &[])
        .await
        .response
}

#[test]
fn every_operation_round_trips() {
    let shard = TestShard::start();
    let node_id = shard.node.node_id;
    shard.client(|conn| async move {
        let a = [0xa0; 16];
        let body = data(3 * MIB + 123, 1);

        // NodeInfo describes this shard.
        match call(&conn, &Request::NodeInfo, &[]).await.response {
            Response::NodeInfo(info) => {
                assert_eq!(info.node_id, *node_id.as_bytes());
                assert_eq!((info.shard, info.shards), (0, 1));
                assert_eq!(info.capacity, 8 << 30);
                assert_eq!((info.used, info.chunk_count), (0, 0));
            }
            other => panic!("{other:?}"),
        }

        // Put: the answer carries the length and crc32c of what was sent.
        let r = call(
            &conn,
            &put(a, body.len() as u64, 0),
            &pieces(&body, 300_000),
        )
        .await;
        assert_eq!(
            r.response,
            Response::Put {
                length: body.len() as u64,
                crc32c: crc32c::crc32c(&body)
            }
        );
        match stat(&conn, a).await {
            Response::Stat(info) => {
                assert_eq!(info.state, ChunkState::Complete);
                assert_eq!(info.durable_len, body.len() as u64);
                assert_eq!(info.crc32c, crc32c::crc32c(&body));
                assert_eq!(info.meta, meta(body.len() as u64));
            }
            other => panic!("{other:?}"),
        }

        // Get, whole and a range across a block boundary.
        let r = call(&conn, &get(a, 0, body.len() as u64), &[]).await;
        assert_eq!(
            r.response,
            Response::Get {
                length: body.len() as u64
            }
        );
        assert!(r.reset.is_none());
        assert_eq!(crc32c::crc32c(&r.body), crc32c::crc32c(&body));
        assert_eq!(r.body.len(), body.len());
        let (off, len) = (MIB - 10, 2 * MIB + 20);
        let r = call(&conn, &get(a, off, len), &[]).await;
        assert_eq!(r.response, Response::Get { length: len });
        assert_eq!(r.body, body[off as usize..(off + len) as usize]);
        let r = call(&conn, &get(a, body.len() as u64, 0), &[]).await;
        assert_eq!((r.response, r.body.len()), (Response::Get { length: 0 }, 0));

        // Refusals: existing chunk, range past the end, unknown chunk, body on a Get.
        let e = call(
            &conn,
            &put(a, body.len() as u64, 0),
            &pieces(&body, MIB as usize),
        )
        .await;
        assert_eq!(e.error().status, Status::Conflict);
        assert_eq!(e.error().detail, body.len() as u64);
        let e = call(&conn, &get(a, 1, body.len() as u64), &[]).await;
        assert_eq!(e.error().status, Status::BadRequest);
        let e = call(&conn, &get([0xee; 16], 0, 1), &[]).await;
        assert_eq!(
            (e.error().op, e.error().status),
            (Op::Get, Status::NotFound)
        );
        let e = call(&conn, &get(a, 0, 1), &[Bytes::from_static(b"x")]).await;
        assert_eq!(e.error().status, Status::BadRequest);

        // A second chunk, then List pages in id order.
        let b = [0xb0; 16];
        let small = data(1000, 2);
        let r = call(&conn, &put(b, 1000, 0), &[Bytes::from(small.clone())]).await;
        assert_eq!(
            r.response,
            Response::Put {
                length: 1000,
                crc32c: crc32c::crc32c(&small)
            }
        );
        match call(
            &conn,
            &Request::List {
                after: None,
                limit: 1,
            },
            &[],
        )
        .await
        .response
        {
            Response::List { entries, more } => {
                assert!(more);
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0].chunk_id, a);
            }
            other => panic!("{other:?}"),
        }
        match call(
            &conn,
            &Request::List {
                after: Some(a),
                limit: 10,
            },
            &[],
        )
        .await
        .response
        {
            Response::List { entries, more } => {
                assert!(!more);
                assert_eq!(entries.iter().map(|e| e.chunk_id).collect::<Vec<_>>(), [b]);
                assert_eq!(entries[0].crc32c, crc32c::crc32c(&small));
            }
            other => panic!("{other:?}"),
        }

        // Delete, then it is gone; deleting again is NotFound.
        assert_eq!(
            call(&conn, &Request::Delete { chunk_id: a }, &[])
                .await
                .response,
            Response::Delete
        );
        assert_eq!(
            call(&conn, &get(a, 0, 1), &[]).await.error().status,
            Status::NotFound
        );
        let e = call(&conn, &Request::Delete { chunk_id: a }, &[]).await;
        assert_eq!(e.error().status, Status::NotFound);
        match call(&conn, &Request::NodeInfo, &[]).await.response {
            Response::NodeInfo(info) => assert_eq!(info.chunk_count, 1),
            other => panic!("{other:?}"),
        }
    });
    shard.stop();
}

#[test]
fn interrupted_puts_keep_their_durable_prefix_and_resume() {
    let shard = TestShard::start();
    shard.client(|conn| async move {
        let length = 3 * MIB + 5;
        let body = data(length, 3);

        // The body ends early (FIN after 1.5 MiB): BadRequest, the first whole block stays.
        let c = [0xc0; 16];
        let sent = (3 * MIB / 2) as usize;
        let e = call(
            &conn,
            &put(c, length, 0),
            &pieces(&body[..sent], 256 * 1024),
        )
        .await;
        assert_eq!(e.error().status, Status::BadRequest);
        assert!(
            e.error().message.contains("body ended"),
            "{}",
            e.error().message
        );
        match stat(&conn, c).await {
            Response::Stat(info) => {
                assert_eq!(info.state, ChunkState::Writing);
                assert_eq!(info.durable_len, MIB);
            }
            other => panic!("{other:?}"),
        }
        // Resuming anywhere but the durable length is a Conflict naming it.
        let e = call(
            &conn,
            &put(c, length, 2 * MIB),
            &pieces(&body[2 * MIB as usize..], MIB as usize),
        )
        .await;
        assert_eq!(
            (e.error().status, e.error().detail),
            (Status::Conflict, MIB)
        );
        // Resuming there completes the chunk with the whole body's crc32c.
        let r = call(
            &conn,
            &put(c, length, MIB),
            &pieces(&body[MIB as usize..], 500_000),
        )
        .await;
        assert_eq!(
            r.response,
            Response::Put {
                length,
                crc32c: crc32c::crc32c(&body)
            }
        );
        let r = call(&conn, &get(c, 0, length), &[]).await;
        assert_eq!(crc32c::crc32c(&r.body), crc32c::crc32c(&body));

        // The client resets its stream mid-body. Whatever the node had received by then is
        // kept up to the last whole block (how much depends on timing: unread data is dropped
        // with the reset), and the put resumes from there.
        let d = [0xd0; 16];
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write(Bytes::from(put(d, length, 0).to_vec()))
            .await
            .unwrap();
        for piece in pieces(&body[..(5 * MIB / 2) as usize], MIB as usize) {
            send.write(piece).await.unwrap();
        }
        while matches!(stat(&conn, d).await, Response::Error(_)) {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        send.reset(0u32).unwrap();
        loop {
            let Response::Stat(info) = stat(&conn, d).await else {
                panic!("interrupted chunk lost");
            };
            assert_eq!(info.state, ChunkState::Writing);
            let from = info.durable_len;
            assert!(from <= 2 * MIB && from % MIB == 0, "durable {from}");
            let rest = pieces(&body[from as usize..], MIB as usize);
            let r = call(&conn, &put(d, length, from), &rest).await;
            match r.response {
                Response::Put { length: l, crc32c } => {
                    assert_eq!((l, crc32c), (length, crc32c::crc32c(&body)));
                    break;
                }
                // Read before the interrupted put finished its checkpoint: try again.
                Response::Error(e) if e.status == Status::Conflict => {}
                other => panic!("{other:?}"),
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }

        // More bytes than announced: refused, nothing of the extra is kept.
        let e2 = [0xe2; 16];
        let too_long = data(2000, 4);
        let e = call(&conn, &put(e2, 1000, 0), &[Bytes::from(too_long)]).await;
        assert_eq!(e.error().status, Status::BadRequest);
        assert!(
            e.error().message.contains("more body bytes"),
            "{}",
            e.error().message
        );
    });
    shard.stop();
}

#[test]
fn bad_headers_are_refused_and_stopping_answers_shutting_down() {
    let shard = TestShard::start();
    let node = Arc::clone(&shard.node);
    shard.client(|conn| async move {
        // A header with a broken checksum but a readable op: a BadRequest answer naming it.
        let mut header = Request::Stat { chunk_id: [1; 16] }.to_vec();
        let last = header.len() - 1;
        header[last] ^= 0x55;
        let r = call_raw(&conn, header, &[], true).await.unwrap();
        assert_eq!(
            (r.error().op, r.error().status),
            (Op::Stat, Status::BadRequest)
        );
        // A truncated header: the stream ends before it is whole.
        let header = Request::Delete { chunk_id: [1; 16] }.to_vec();
        let r = call_raw(&conn, header[..20].to_vec(), &[], true)
            .await
            .unwrap();
        assert_eq!(
            (r.error().op, r.error().status),
            (Op::Delete, Status::BadRequest)
        );

        // A put in flight when the node is asked to stop...
        let length = 2 * MIB;
        let body = data(length, 5);
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write(Bytes::from(put([0xf0; 16], length, 0).to_vec()))
            .await
            .unwrap();
        send.write(Bytes::copy_from_slice(&body[..MIB as usize]))
            .await
            .unwrap();
        while node.totals().in_flight == 0 {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        node.request_stop();
        // ...keeps the shard draining: new requests get ShuttingDown (once the shard has
        // noticed the stop, within its poll interval)...
        loop {
            let r = call(&conn, &Request::NodeInfo, &[]).await;
            if let Response::Error(e) = &r.response {
                assert_eq!((e.op, e.status), (Op::NodeInfo, Status::ShuttingDown));
                break;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...while the running put finishes and is acknowledged.
        send.write(Bytes::copy_from_slice(&body[MIB as usize..]))
            .await
            .unwrap();
        send.finish().unwrap();
        let mut answer = Vec::new();
        while let Some(chunk) = recv.read_chunk(usize::MAX).await.unwrap() {
            answer.extend_from_slice(&chunk);
        }
        let Decoded::Message(response, _) = try_decode_response(&answer).unwrap() else {
            panic!("incomplete answer");
        };
        assert_eq!(
            response,
            Response::Put {
                length,
                crc32c: crc32c::crc32c(&body)
            }
        );
    });
    shard.stop();
}
