//! The real `sixfold-node` binary, driven over real QUIC the way the gateway drives it: a quinn
//! client on tokio presenting the gateway's client certificate (made by `sixfold-gateway certs`),
//! speaking `sixfold-wire` to the node's shard 0 on a known UDP port. Covers the chunk
//! operations byte for byte, interrupted and resumed puts, a corrupted block on disk, restarts
//! (SIGTERM) with and without the index file, and a client certificate from another CA.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, ReadError, VarInt};
use sixfold_certs::GatewayTls;
use sixfold_node::quic::QuicSettings;
use sixfold_tests::{ClusterOptions, TestCluster, bin_path, free_udp_port, pattern};
use sixfold_wire::{
    ChunkId, ChunkInfo, ChunkMeta, ChunkState, Decoded, ErrorResponse, Op, Request, Response,
    Status, try_decode_response,
};

const MIB: u64 = 1 << 20;
/// Bound on each test so a hang fails it instead of blocking the run.
const TEST_GUARD: Duration = Duration::from_secs(240);
/// How long a (re)started node gets to accept QUIC connections.
const START_WAIT: Duration = Duration::from_secs(60);
/// Grace given to a node stopped with SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The node's chunk file layout (node/STORAGE-FORMAT.md): a 4 KiB header block whose bytes
/// 88..96 hold the body offset, then the crc table, then the body in 1 MiB blocks.
const CHUNK_MAGIC: &[u8; 8] = b"SIXFCHNK";
const HEADER_BODY_OFFSET_AT: usize = 88;

/// One node of a cluster (gateway + 1 node, real processes) whose shard 0 listens on a UDP
/// port the test chose, so it keeps its address across restarts.
struct NodeUnderTest {
    cluster: TestCluster,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl NodeUnderTest {
    async fn start() -> Self {
        sixfold_certs::install_crypto_provider();
        let mut cluster = TestCluster::start(ClusterOptions {
            nodes: 0,
            ..ClusterOptions::default()
        })
        .await;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        cluster.add_node_at(addr);
        cluster.wait_nodes_up(1).await;
        // The gateway learned the same address from the node's registration.
        let nodes = cluster.nodes_json().await;
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        assert_eq!(
            nodes[0]["shard_addrs"],
            serde_json::json!([addr.to_string()]),
            "{nodes:?}"
        );
        let tls = GatewayTls::load(&cluster.gateway_certs_dir())
            .expect("gateway certificates")
            .client_config();
        NodeUnderTest { cluster, addr, tls }
    }

    /// A connection presenting the gateway's certificate.
    async fn connect(&self) -> Client {
        Client::connect(self.addr, Arc::clone(&self.tls))
            .await
            .expect("connect with the gateway's certificate")
    }

    /// Connects, retrying until the (re)started node answers or [`START_WAIT`] passes.
    async fn connect_when_up(&self) -> Client {
        let deadline = Instant::now() + START_WAIT;
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                Client::connect(self.addr, Arc::clone(&self.tls)),
            )
            .await;
            match attempt {
                Ok(Ok(client)) => return client,
                Ok(Err(e)) if Instant::now() >= deadline => panic!("node never accepted: {e}"),
                Err(_) if Instant::now() >= deadline => panic!("node never accepted: timeout"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// SIGTERM, and the node exits cleanly.
    fn stop(&mut self) {
        assert_eq!(
            self.cluster.stop_node(0, STOP_GRACE),
            Some(0),
            "node did not exit cleanly after SIGTERM"
        );
    }

    /// Starts the node again on the same data dir and address.
    async fn restart(&mut self) -> Client {
        self.cluster.start_node(0);
        self.connect_when_up().await
    }

    fn shard_dir(&self) -> PathBuf {
        self.cluster.node_dir(0).join("shard-0")
    }

    fn chunk_file(&self, id: &ChunkId) -> PathBuf {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        self.shard_dir().join("chunks").join(format!("{hex}.chunk"))
    }
}

/// A quinn client endpoint with one connection, configured like the gateway's.
struct Client {
    endpoint: quinn::Endpoint,
    conn: Connection,
}

/// What came back on one stream.
#[derive(Debug)]
struct Reply {
    response: Response,
    body: Vec<u8>,
    /// Set when the node reset its sending side (or the connection broke) after the header.
    reset: Option<ReadError>,
}

impl Reply {
    fn error(&self) -> &ErrorResponse {
        match &self.response {
            Response::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

impl Client {
    async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Result<Client, String> {
        let (endpoint, conn) = common::quic_connect(addr, tls).await?;
        Ok(Client { endpoint, conn })
    }

    /// Sends `request` and `body` on a new stream, finishes it and reads until the stream
    /// ends or fails: the bytes received and the failure, if any.
    async fn exchange(
        &self,
        request: &Request,
        body: &[Bytes],
    ) -> Result<(Vec<u8>, Option<ReadError>), String> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut pieces = vec![Bytes::from(request.to_vec())];
        pieces.extend(body.iter().cloned());
        // A node that refuses early stops reading: later writes fail, the answer still comes.
        for piece in pieces {
            if send.write_chunk(piece).await.is_err() {
                break;
            }
        }
        let _ = send.finish();
        let mut buf = Vec::new();
        let mut reset = None;
        loop {
            match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                Ok(None) => break,
                Err(e) => {
                    reset = Some(e);
                    break;
                }
            }
        }
        Ok((buf, reset))
    }

    /// [`Client::exchange`], decoded: fails if no whole answer header came back.
    async fn try_call(&self, request: &Request, body: &[Bytes]) -> Result<Reply, String> {
        let (buf, reset) = self.exchange(request, body).await?;
        match try_decode_response(&buf).map_err(|e| format!("undecodable answer: {e}"))? {
            Decoded::Message(response, used) => Ok(Reply {
                response,
                body: buf[used..].to_vec(),
                reset,
            }),
            Decoded::NeedMore(_) => Err(format!(
                "no whole answer header ({} bytes): {reset:?}",
                buf.len()
            )),
        }
    }

    async fn call(&self, request: &Request, body: &[Bytes]) -> Reply {
        self.try_call(request, body)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", request.op()))
    }

    async fn put(&self, id: ChunkId, data: &Bytes, resume_from: u64) -> Response {
        let body = pieces(&data.slice(resume_from as usize..));
        self.call(&put_request(id, data.len() as u64, resume_from), &body)
            .await
            .response
    }

    /// Puts the whole chunk and checks the node's answer (length and crc32c of the body).
    async fn put_ok(&self, id: ChunkId, data: &Bytes) {
        assert_eq!(
            self.put(id, data, 0).await,
            Response::Put {
                length: data.len() as u64,
                crc32c: crc32c::crc32c(data),
            }
        );
    }

    async fn get(&self, id: ChunkId, offset: u64, len: u64) -> Reply {
        self.call(
            &Request::Get {
                chunk_id: id,
                offset,
                len,
            },
            &[],
        )
        .await
    }

    /// Gets `[offset, offset + len)` and asserts it is exactly those bytes of `data`.
    async fn assert_range(&self, id: ChunkId, data: &[u8], offset: u64, len: u64) {
        let r = self.get(id, offset, len).await;
        assert_eq!(
            r.response,
            Response::Get { length: len },
            "get {offset}+{len}"
        );
        assert!(r.reset.is_none(), "get {offset}+{len}: {:?}", r.reset);
        assert_eq!(r.body.len() as u64, len, "get {offset}+{len}");
        assert!(
            r.body == data[offset as usize..(offset + len) as usize],
            "get {offset}+{len}: bytes differ"
        );
    }

    async fn assert_whole(&self, id: ChunkId, data: &[u8]) {
        self.assert_range(id, data, 0, data.len() as u64).await;
    }

    async fn stat(&self, id: ChunkId) -> Response {
        self.call(&Request::Stat { chunk_id: id }, &[])
            .await
            .response
    }

    async fn stat_info(&self, id: ChunkId) -> ChunkInfo {
        match self.stat(id).await {
            Response::Stat(info) => info,
            other => panic!("stat: {other:?}"),
        }
    }

    /// Every chunk of the shard, following `more` page by page (small pages on purpose).
    async fn list_all(&self) -> Vec<ChunkInfo> {
        let mut all: Vec<ChunkInfo> = Vec::new();
        loop {
            let after = all.last().map(|c| c.chunk_id);
            match self
                .call(&Request::List { after, limit: 2 }, &[])
                .await
                .response
            {
                Response::List { entries, more } => {
                    all.extend(entries);
                    if !more {
                        return all;
                    }
                }
                other => panic!("list: {other:?}"),
            }
        }
    }

    async fn close(self) {
        self.conn.close(VarInt::from_u32(0), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

fn meta(length: u64) -> ChunkMeta {
    ChunkMeta {
        file_id: [7; 16],
        part_index: 2,
        part_count: 6,
        file_offset: 10 * MIB,
        length,
    }
}

fn put_request(id: ChunkId, length: u64, resume_from: u64) -> Request {
    Request::Put {
        chunk_id: id,
        meta: meta(length),
        resume_from,
        facts: None,
    }
}

/// Deterministic test bytes, different per seed.
fn data(seed: u64, len: u64) -> Bytes {
    Bytes::from(pattern(seed).bytes(0, len as usize))
}

/// A body as a client streams it: pieces of 256 KiB (not aligned to the node's blocks).
fn pieces(body: &Bytes) -> Vec<Bytes> {
    (0..body.len())
        .step_by(256 * 1024)
        .map(|at| body.slice(at..body.len().min(at + 256 * 1024)))
        .collect()
}

fn assert_not_found(r: &Reply, op: Op) {
    assert_eq!((r.error().op, r.error().status), (op, Status::NotFound));
}

/// Runs a test body with a deadlock guard.
async fn guarded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_GUARD, f)
        .await
        .expect("test did not finish in time");
}

#[tokio::test]
async fn chunk_round_trip_put_get_stat_list_delete() {
    guarded(async {
        let node = NodeUnderTest::start().await;
        let c = node.connect().await;
        let id = [0x11; 16];
        let body = data(1, 5 * MIB + 123);
        let len = body.len() as u64;

        c.put_ok(id, &body).await;
        let info = c.stat_info(id).await;
        assert_eq!(info.chunk_id, id);
        assert_eq!(info.state, ChunkState::Complete);
        assert_eq!(info.durable_len, len);
        assert_eq!(info.crc32c, crc32c::crc32c(&body));
        assert_eq!(info.meta, meta(len));

        // Whole, across one and several block boundaries, the unaligned tail, and empty.
        c.assert_whole(id, &body).await;
        c.assert_range(id, &body, MIB - 10, 20).await;
        c.assert_range(id, &body, MIB - 100, 2 * MIB + 200).await;
        c.assert_range(id, &body, 5 * MIB - 7, 130).await;
        c.assert_range(id, &body, 3 * MIB, MIB).await;
        c.assert_range(id, &body, len, 0).await;
        let r = c.get(id, len - 10, 11).await;
        assert_eq!(r.error().status, Status::BadRequest, "range past the end");

        // A second, small chunk: List returns both in id order with their checksums.
        let small_id = [0x22; 16];
        let small = data(2, 1000);
        c.put_ok(small_id, &small).await;
        let listed = c.list_all().await;
        assert_eq!(
            listed
                .iter()
                .map(|e| (e.chunk_id, e.state, e.durable_len, e.crc32c))
                .collect::<Vec<_>>(),
            [
                (id, ChunkState::Complete, len, crc32c::crc32c(&body)),
                (small_id, ChunkState::Complete, 1000, crc32c::crc32c(&small)),
            ]
        );
        match c.call(&Request::NodeInfo, &[]).await.response {
            Response::NodeInfo(info) => {
                assert_eq!((info.shard, info.shards), (0, 1));
                assert_eq!(info.chunk_count, 2);
            }
            other => panic!("{other:?}"),
        }

        // Putting the same chunk again is a Conflict naming its length; the bytes stay.
        let r = c.call(&put_request(id, len, 0), &pieces(&body)).await;
        assert_eq!(
            (r.error().status, r.error().detail),
            (Status::Conflict, len)
        );

        // Delete: gone for stat, get and list; deleting again is NotFound.
        assert_eq!(
            c.call(&Request::Delete { chunk_id: id }, &[])
                .await
                .response,
            Response::Delete
        );
        assert_not_found(
            &c.call(&Request::Stat { chunk_id: id }, &[]).await,
            Op::Stat,
        );
        assert_not_found(&c.get(id, 0, 1).await, Op::Get);
        assert_not_found(
            &c.call(&Request::Delete { chunk_id: id }, &[]).await,
            Op::Delete,
        );
        assert!(!node.chunk_file(&id).exists(), "chunk file left behind");
        let listed = c.list_all().await;
        assert_eq!(
            listed.iter().map(|e| e.chunk_id).collect::<Vec<_>>(),
            [small_id]
        );
        c.assert_whole(small_id, &small).await;
        c.close().await;
    })
    .await;
}

#[tokio::test]
async fn interrupted_puts_keep_a_durable_prefix_and_resume() {
    guarded(async {
        let node = NodeUnderTest::start().await;
        let c = node.connect().await;

        // 1. The body ends early (FIN after 2.5 MiB): BadRequest, exactly the two whole
        // blocks stay durable, the chunk is Writing and not readable yet.
        let id = [0x31; 16];
        let body = data(3, 5 * MIB + 123);
        let len = body.len() as u64;
        let r = c
            .call(
                &put_request(id, len, 0),
                &pieces(&body.slice(..(5 * MIB / 2) as usize)),
            )
            .await;
        assert_eq!(r.error().status, Status::BadRequest);
        let info = c.stat_info(id).await;
        assert_eq!(
            (info.state, info.durable_len),
            (ChunkState::Writing, 2 * MIB)
        );
        assert_eq!(c.get(id, 0, 1).await.error().status, Status::NotFound);
        // Resuming anywhere else is a Conflict naming the durable length.
        let r = c
            .call(
                &put_request(id, len, MIB),
                &pieces(&body.slice(MIB as usize..)),
            )
            .await;
        assert_eq!(
            (r.error().status, r.error().detail),
            (Status::Conflict, 2 * MIB)
        );
        assert_eq!(
            c.put(id, &body, 2 * MIB).await,
            Response::Put {
                length: len,
                crc32c: crc32c::crc32c(&body)
            }
        );
        assert_eq!(c.stat_info(id).await.state, ChunkState::Complete);
        c.assert_whole(id, &body).await;

        // 2. The client resets its stream mid-body, 3. the connection is dropped mid-body.
        // The node extends a stream's flow-control credit only as it reads, so once the client
        // has written `sent` body bytes the node has read (and handed to its store) at least
        // `sent - window` of them: that many whole blocks must survive, whatever the timing.
        let window = u64::from(QuicSettings::default().stream_receive_window);
        let len = window + 2 * MIB + 123;
        let sent = window + 2 * MIB;
        let min_durable = (sent - window) / MIB * MIB;
        for (id, seed, drop_connection) in [([0x32; 16], 4, false), ([0x33; 16], 5, true)] {
            let body = data(seed, len);
            let own = node.connect().await;
            let via = if drop_connection { &own } else { &c };
            let (mut send, recv) = via.conn.open_bi().await.expect("open stream");
            send.write_all(&put_request(id, len, 0).to_vec())
                .await
                .expect("header");
            for piece in pieces(&body.slice(..sent as usize)) {
                send.write_chunk(piece).await.expect("body piece");
            }
            if drop_connection {
                own.conn.close(VarInt::from_u32(1), b"gone");
            } else {
                send.reset(VarInt::from_u32(1)).expect("reset");
            }
            drop(recv);

            // The interrupted put checkpoints once: wait for that state, then it stays.
            let deadline = Instant::now() + Duration::from_secs(60);
            let info = loop {
                let info = c.stat_info(id).await;
                assert_eq!(info.state, ChunkState::Writing);
                if info.durable_len > 0 {
                    break info;
                }
                assert!(
                    Instant::now() < deadline,
                    "no durable prefix recorded (drop_connection: {drop_connection})"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            // Only now: until here the closed connection's endpoint answers the node's packets
            // (a CONNECTION_CLOSE lost in a full socket buffer would otherwise leave the node
            // waiting for its idle timeout).
            own.close().await;
            let durable = info.durable_len;
            assert!(
                durable % MIB == 0 && (min_durable..=sent).contains(&durable),
                "durable {durable}, expected whole blocks in {min_durable}..={sent} \
                 (drop_connection: {drop_connection})"
            );
            assert_eq!(c.stat_info(id).await.durable_len, durable);
            assert_eq!(
                c.put(id, &body, durable).await,
                Response::Put {
                    length: len,
                    crc32c: crc32c::crc32c(&body)
                },
                "resume at {durable} (drop_connection: {drop_connection})"
            );
            let info = c.stat_info(id).await;
            assert_eq!(
                (info.state, info.durable_len, info.crc32c),
                (ChunkState::Complete, len, crc32c::crc32c(&body))
            );
            c.assert_whole(id, &body).await;
        }
        c.close().await;
    })
    .await;
}

/// Reads the body offset from a chunk file's header and checks the magic.
fn body_offset(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("read chunk file");
    assert_eq!(
        &bytes[..8],
        CHUNK_MAGIC,
        "{} is not a chunk file",
        path.display()
    );
    u64::from_le_bytes(
        bytes[HEADER_BODY_OFFSET_AT..HEADER_BODY_OFFSET_AT + 8]
            .try_into()
            .expect("8 bytes"),
    )
}

/// Flips every bit of the byte at `at` in `path` and syncs it to disk.
fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open chunk file");
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).expect("read byte");
    file.write_all_at(&[b[0] ^ 0xff], at).expect("write byte");
    file.sync_all().expect("sync chunk file");
}

#[tokio::test]
async fn a_corrupt_block_is_never_served() {
    guarded(async {
        let node = NodeUnderTest::start().await;
        let c = node.connect().await;
        let id = [0x41; 16];
        let body = data(6, 3 * MIB + 17);
        let len = body.len() as u64;
        c.put_ok(id, &body).await;
        c.assert_whole(id, &body).await;

        // Flip a byte in the middle of block 1 of the body.
        let path = node.chunk_file(&id);
        let body_at = body_offset(&path);
        // Header block plus one 4 KiB-aligned crc table block for four blocks.
        assert_eq!(body_at, 8192);
        assert_eq!(
            std::fs::metadata(&path).expect("chunk file").len(),
            body_at + len,
            "chunk file size"
        );
        let bad = MIB + MIB / 2;
        flip_byte(&path, body_at + bad);
        let on_disk = std::fs::read(&path).expect("read chunk file");
        assert_ne!(on_disk[(body_at + bad) as usize], body[bad as usize]);
        assert_eq!(
            on_disk[body_at as usize..],
            [
                &body[..bad as usize],
                &on_disk[(body_at + bad) as usize..][..1],
                &body[bad as usize + 1..]
            ]
            .concat(),
            "exactly one body byte differs"
        );

        // A range starting in the bad block: a ChecksumMismatch answer naming block 1.
        let r = c.get(id, bad - 10, 20).await;
        assert_eq!(
            (r.error().op, r.error().status, r.error().detail),
            (Op::Get, Status::ChecksumMismatch, 1)
        );
        assert!(r.body.is_empty());
        let r = c.get(id, MIB, MIB).await;
        assert_eq!(r.error().status, Status::ChecksumMismatch);

        // Ranges starting in good block 0 and running into block 1: the node resets the
        // stream with the status code once it reaches block 1. The client may get the answer
        // header and some of block 0's bytes first (or not: a reset discards unread data),
        // never a byte of block 1, never the whole range.
        for (offset, len) in [(MIB / 2, MIB + MIB / 4), (0, len)] {
            let (buf, reset) = c
                .exchange(
                    &Request::Get {
                        chunk_id: id,
                        offset,
                        len,
                    },
                    &[],
                )
                .await
                .expect("get over the corrupt block");
            assert_eq!(
                reset,
                Some(ReadError::Reset(VarInt::from(
                    Status::ChecksumMismatch.code()
                ))),
                "get {offset}+{len}: {} bytes came back",
                buf.len()
            );
            if let Decoded::Message(response, used) = try_decode_response(&buf).expect("header") {
                assert_eq!(response, Response::Get { length: len });
                let got = &buf[used..];
                assert!(
                    got.len() as u64 <= MIB - offset,
                    "get {offset}+{len}: {} bytes, more than block 0 holds",
                    got.len()
                );
                assert!(
                    got == &body[offset as usize..][..got.len()],
                    "get {offset}+{len}: the bytes before the reset differ"
                );
            }
        }

        // The other blocks still read fine.
        c.assert_range(id, &body, 0, MIB).await;
        c.assert_range(id, &body, 2 * MIB, MIB + 17).await;
        c.assert_range(id, &body, MIB - 1, 1).await;
        c.close().await;
    })
    .await;
}

/// Chunks of different sizes: an empty one, one under a block, one with an unaligned tail.
fn three_chunks() -> Vec<(ChunkId, Bytes)> {
    vec![
        ([0x51; 16], data(7, 0)),
        ([0x52; 16], data(8, 4096 + 5)),
        ([0x53; 16], data(9, 2 * MIB + 999)),
    ]
}

async fn assert_all_stored(c: &Client, chunks: &[(ChunkId, Bytes)]) {
    let listed = c.list_all().await;
    assert_eq!(
        listed
            .iter()
            .map(|e| (e.chunk_id, e.state, e.durable_len, e.crc32c))
            .collect::<Vec<_>>(),
        chunks
            .iter()
            .map(|(id, d)| (*id, ChunkState::Complete, d.len() as u64, crc32c::crc32c(d)))
            .collect::<Vec<_>>()
    );
    for (id, d) in chunks {
        assert_eq!(c.stat_info(*id).await.meta, meta(d.len() as u64));
        c.assert_whole(*id, d).await;
    }
}

#[tokio::test]
async fn a_restart_keeps_every_chunk() {
    guarded(async {
        let mut node = NodeUnderTest::start().await;
        let c = node.connect().await;
        let chunks = three_chunks();
        for (id, d) in &chunks {
            c.put_ok(*id, d).await;
        }
        assert_all_stored(&c, &chunks).await;
        c.close().await;

        node.stop();
        assert!(node.shard_dir().join("index.log").exists());
        let c = node.restart().await;
        assert_all_stored(&c, &chunks).await;
        // Still writable after the restart.
        let more = ([0x54; 16], data(10, MIB + 1));
        c.put_ok(more.0, &more.1).await;
        c.assert_whole(more.0, &more.1).await;
        c.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_lost_or_damaged_index_is_rebuilt_from_the_chunk_files() {
    guarded(async {
        let mut node = NodeUnderTest::start().await;
        let c = node.connect().await;
        let chunks = three_chunks();
        for (id, d) in &chunks {
            c.put_ok(*id, d).await;
        }
        // And one interrupted put: its durable prefix must survive the rebuild too.
        let writing = [0x5f; 16];
        let partial = data(11, 3 * MIB + 3);
        let r = c
            .call(
                &put_request(writing, partial.len() as u64, 0),
                &pieces(&partial.slice(..(MIB + 10) as usize)),
            )
            .await;
        assert_eq!(r.error().status, Status::BadRequest);
        c.close().await;
        let index = node.shard_dir().join("index.log");

        // Deleted index.
        node.stop();
        std::fs::remove_file(&index).expect("index.log exists after a clean stop");
        let c = node.restart().await;
        let info = c.stat_info(writing).await;
        assert_eq!((info.state, info.durable_len), (ChunkState::Writing, MIB));
        let complete: Vec<_> = c
            .list_all()
            .await
            .into_iter()
            .filter(|e| e.chunk_id != writing)
            .collect();
        assert_eq!(complete.len(), chunks.len());
        for (id, d) in &chunks {
            let info = c.stat_info(*id).await;
            assert_eq!(
                (info.state, info.durable_len, info.crc32c),
                (ChunkState::Complete, d.len() as u64, crc32c::crc32c(d))
            );
            c.assert_whole(*id, d).await;
        }
        c.close().await;
        assert!(index.exists(), "the node writes a new index.log");

        // Damaged index: garbage of the same size.
        node.stop();
        let size = std::fs::metadata(&index).expect("index.log").len();
        std::fs::write(&index, vec![0xa5; size.max(64) as usize]).expect("damage index.log");
        let c = node.restart().await;
        let info = c.stat_info(writing).await;
        assert_eq!((info.state, info.durable_len), (ChunkState::Writing, MIB));
        for (id, d) in &chunks {
            c.assert_whole(*id, d).await;
        }
        // The rebuilt entry of the interrupted put resumes and completes.
        assert_eq!(
            c.put(writing, &partial, MIB).await,
            Response::Put {
                length: partial.len() as u64,
                crc32c: crc32c::crc32c(&partial)
            }
        );
        let mut all = chunks.clone();
        all.push((writing, partial));
        assert_all_stored(&c, &all).await;
        c.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    guarded(async {
        let mut node = NodeUnderTest::start().await;
        let c = node.connect().await;
        let id = [0x61; 16];
        let body = data(12, 1000);
        c.put_ok(id, &body).await;

        // Another cluster's CA and gateway certificate.
        let other = node.cluster.dir.path().join("other-ca");
        let out = std::process::Command::new(bin_path("sixfold-gateway"))
            .args(["certs", "init", "--dir"])
            .arg(&other)
            .output()
            .expect("run sixfold-gateway certs init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = node.cluster.gateway_certs_dir();
        let foreign_chain =
            sixfold_certs::read_certificates(&other.join("gateway.pem")).expect("foreign cert");
        let foreign_key =
            sixfold_certs::read_private_key(&other.join("gateway-key.pem")).expect("foreign key");
        let our_ca = sixfold_certs::read_certificates(&ours.join("ca.pem")).expect("cluster CA");
        // Trusts the node (our CA) but presents the other CA's gateway certificate: only the
        // node's client verification can refuse it.
        let impostor = Arc::new(
            sixfold_certs::client_config(&our_ca, foreign_chain, foreign_key).expect("config"),
        );
        // Another cluster's gateway, as is (refused by both sides: it does not trust the node
        // either).
        let other_gateway = GatewayTls::load(&other)
            .expect("other gateway certs")
            .client_config();
        // No client certificate at all.
        let mut anonymous =
            rustls::ClientConfig::builder_with_provider(sixfold_certs::crypto_provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("TLS 1.3")
                .with_root_certificates({
                    let mut roots = rustls::RootCertStore::empty();
                    roots.add(our_ca[0].clone()).expect("CA");
                    roots
                })
                .with_no_client_auth();
        anonymous.alpn_protocols = vec![sixfold_wire::ALPN.to_vec()];

        for (who, tls) in [
            ("impostor", impostor),
            ("other gateway", other_gateway),
            ("anonymous", Arc::new(anonymous)),
        ] {
            // The handshake fails, or (TLS 1.3: the client is done before the server has
            // checked its certificate) the first request does. Either way: no answer.
            let outcome = match tokio::time::timeout(
                Duration::from_secs(20),
                Client::connect(node.addr, tls),
            )
            .await
            .expect("connect attempt hung")
            {
                Err(e) => Err(format!("handshake: {e}")),
                Ok(client) => {
                    let r = tokio::time::timeout(
                        Duration::from_secs(20),
                        client.try_call(&Request::Stat { chunk_id: id }, &[]),
                    )
                    .await
                    .expect("request on a refused connection hung");
                    client.close().await;
                    r.map(|reply| format!("{:?}", reply.response))
                }
            };
            assert!(outcome.is_err(), "{who} was served: {outcome:?}");
            let why = outcome.unwrap_err();
            eprintln!("{who}: refused: {why}");
            // Refused for its certificate, not for some unrelated failure.
            assert!(why.contains("certificate"), "{who}: {why}");
            assert!(node.cluster.node_running(0), "node died after {who}");
        }

        // The node still serves the gateway, on the old connection and a new one.
        assert_eq!(c.stat_info(id).await.crc32c, crc32c::crc32c(&body));
        c.close().await;
        let c = node.connect().await;
        c.assert_whole(id, &body).await;
        c.close().await;
    })
    .await;
}
