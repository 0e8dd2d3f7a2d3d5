//! Store tests on a real io_uring runtime and real O_DIRECT files (in /tmp, ext4 here).

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use super::chunk_file::chunk_path;
use super::format::{BLOCK_SIZE, Layout};
use super::*;

const MIB: u64 = BLOCK_SIZE;

fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(f)
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sixfold-store-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

fn small_config() -> StoreConfig {
    StoreConfig {
        buffer_count: 8,
        writes_in_flight: 3,
        reads_in_flight: 2,
    }
}

/// Deterministic, non-repeating-per-block bytes.
fn data(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn id(n: u8) -> ChunkId {
    let mut b = [0u8; 16];
    b[0] = n;
    b[15] = 0xa5;
    ChunkId(b)
}

fn meta(len: u64) -> ChunkMeta {
    ChunkMeta {
        file_id: [3; 16],
        part_index: 1,
        part_count: 6,
        file_offset: 10 * MIB,
        length: len,
    }
}

async fn open(dir: &Path) -> ChunkStore {
    ChunkStore::open(dir, small_config())
        .await
        .expect("open store")
}

/// Feeds `body` in pieces of `piece` bytes (odd sizes exercise buffer boundaries).
async fn feed(w: &mut PutWriter, body: &[u8], piece: usize) {
    for p in body.chunks(piece.max(1)) {
        w.write(Bytes::copy_from_slice(p)).await.expect("write");
    }
}

async fn put_all(store: &ChunkStore, cid: ChunkId, body: &[u8]) -> PutDone {
    let mut w = store
        .put(cid, meta(body.len() as u64), 0, None)
        .await
        .expect("put");
    feed(&mut w, body, 100_003).await;
    w.finish().await.expect("finish")
}

/// What reading a range whole fails with: opening it, or one of its blocks.
#[derive(Debug)]
enum ReadAllError {
    // Read only through `Debug`, when a test fails.
    #[allow(dead_code)]
    Open(ReadError),
    Block(BlockError),
}

async fn read_all(
    store: &ChunkStore,
    cid: ChunkId,
    off: u64,
    len: u64,
) -> Result<Vec<u8>, ReadAllError> {
    let mut r = store
        .read(cid, off, len)
        .await
        .map_err(ReadAllError::Open)?;
    let mut out = Vec::new();
    while let Some(piece) = r.next().await {
        let piece = piece.map_err(ReadAllError::Block)?;
        assert!(piece.len() as u64 <= MIB);
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

#[test]
fn put_then_read_round_trips_every_size() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let sizes = [0, 1, 4095, 4096, MIB - 1, MIB, MIB + 1, 5 * MIB + 123];
        for (i, &len) in sizes.iter().enumerate() {
            let body = data(len, i as u64);
            let cid = id(i as u8);
            let done = put_all(&store, cid, &body).await;
            assert_eq!(done.length, len);
            assert_eq!(done.crc32c, crc32c::crc32c(&body), "size {len}");
            let st = store.stat(cid).unwrap();
            assert_eq!(st.state, ChunkState::Complete);
            assert_eq!((st.durable_len, st.crc32c), (len, done.crc32c));
            let back = read_all(&store, cid, 0, len).await.unwrap();
            assert_eq!(crc32c::crc32c(&back), done.crc32c, "size {len}");
            assert!(back == body, "bytes differ for size {len}");
            // The file is exactly header + table + body: the tail padding was truncated.
            let on_disk = std::fs::metadata(chunk_path(&store.inner_chunks_dir(), &cid)).unwrap();
            assert_eq!(on_disk.len(), Layout::for_length(len).unwrap().file_len());
        }
        assert_eq!(store.usage().chunk_count, sizes.len() as u64);
        // Every buffer went back to the pool.
        assert_eq!(store.pool().available(), store.pool().capacity());
    });
}

#[test]
fn chunk_files_are_opened_with_o_direct() {
    use std::os::fd::AsRawFd;
    let dir = tmp();
    run(async {
        let path = dir.path().join("probe.chunk");
        let f = super::chunk_file::create_direct(&path).await.unwrap();
        // SAFETY: F_GETFL only reads the flags of an fd that `f` keeps open.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert!(
            flags >= 0 && flags & libc::O_DIRECT != 0,
            "flags {flags:#o}"
        );
        let f = super::chunk_file::open_direct(&path, false).await.unwrap();
        // SAFETY: as above.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert!(
            flags >= 0 && flags & libc::O_DIRECT != 0,
            "flags {flags:#o}"
        );
    });
}

#[test]
fn range_reads_cross_block_boundaries() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 3 * MIB + 5;
        let body = data(len, 42);
        put_all(&store, id(1), &body).await;
        for (off, n) in [
            (MIB - 100, 200),
            (0, 1),
            (len - 1, 1),
            (500, 2 * MIB + 7),
            (2 * MIB, MIB + 5),
            (7, 0),
            (len, 0),
        ] {
            let got = read_all(&store, id(1), off, n).await.unwrap();
            assert!(
                got == body[off as usize..(off + n) as usize],
                "range {off}+{n}"
            );
        }
        assert!(matches!(
            store.read(id(1), len - 1, 2).await,
            Err(ReadError::BadRequest(_))
        ));
        assert!(matches!(
            store.read(id(9), 0, 1).await,
            Err(ReadError::NotFound)
        ));
    });
}

#[test]
fn stat_list_delete_and_usage() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        for n in [5u8, 1, 4, 2, 3] {
            put_all(&store, id(n), &data(u64::from(n) * 1000, u64::from(n))).await;
        }
        let page1 = store.list(None, 2);
        assert_eq!(
            page1.iter().map(|s| s.chunk_id).collect::<Vec<_>>(),
            vec![id(1), id(2)]
        );
        let page2 = store.list(Some(id(2)), 10);
        assert_eq!(
            page2.iter().map(|s| s.chunk_id).collect::<Vec<_>>(),
            vec![id(3), id(4), id(5)]
        );
        assert_eq!(page2[0].meta, meta(3000));

        let before = store.usage();
        assert_eq!(before.chunk_count, 5);
        assert_eq!(before.in_flight_puts, 0);
        store.delete(id(3)).await.unwrap();
        assert!(matches!(store.stat(id(3)), Err(StatError::NotFound)));
        assert!(matches!(
            store.delete(id(3)).await,
            Err(DeleteError::NotFound)
        ));
        assert!(matches!(
            store.read(id(3), 0, 1).await,
            Err(ReadError::NotFound)
        ));
        assert!(!chunk_path(&store.inner_chunks_dir(), &id(3)).exists());
        let after = store.usage();
        assert_eq!(after.chunk_count, 4);
        assert_eq!(
            before.used_bytes - after.used_bytes,
            Layout::for_length(3000).unwrap().file_len()
        );
        assert_eq!(store.list(None, 100).len(), 4);
        // A deleted chunk can be written again.
        let done = put_all(&store, id(3), &data(10, 9)).await;
        assert_eq!(done.length, 10);
    });
}

#[test]
fn interrupted_put_resumes_to_an_identical_crc() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 2 * MIB + MIB / 2 + 17;
        let body = data(len, 7);
        let cid = id(1);
        let mut w = store.put(cid, meta(len), 0, None).await.unwrap();
        let sent = (2 * MIB + 300_000) as usize;
        feed(&mut w, &body[..sent], 65_536).await;
        assert_eq!(store.usage().in_flight_puts, 1);
        // Only whole blocks survive an interruption.
        assert_eq!(w.interrupt().await.unwrap(), 2 * MIB);
        assert_eq!(store.usage().in_flight_puts, 0);
        let st = store.stat(cid).unwrap();
        assert_eq!((st.state, st.durable_len), (ChunkState::Writing, 2 * MIB));
        assert_eq!(st.crc32c, crc32c::crc32c(&body[..2 * MIB as usize]));
        assert!(matches!(
            store.read(cid, 0, 1).await,
            Err(ReadError::NotComplete { durable_len }) if durable_len == 2 * MIB
        ));

        let mut w = store.put(cid, meta(len), 2 * MIB, None).await.unwrap();
        assert_eq!(w.received(), 2 * MIB);
        feed(&mut w, &body[2 * MIB as usize..], 77_777).await;
        let done = w.finish().await.unwrap();
        assert_eq!(done.crc32c, crc32c::crc32c(&body));
        assert_eq!(store.stat(cid).unwrap().crc32c, done.crc32c);
        let back = read_all(&store, cid, 0, len).await.unwrap();
        assert!(back == body);
    });
}

#[test]
fn interrupted_after_the_last_whole_block_resumes_with_no_more_bytes() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 2 * MIB;
        let body = data(len, 21);
        let mut w = store.put(id(4), meta(len), 0, None).await.unwrap();
        feed(&mut w, &body, 1 << 20).await;
        assert_eq!(w.interrupt().await.unwrap(), len);
        let st = store.stat(id(4)).unwrap();
        assert_eq!((st.state, st.durable_len), (ChunkState::Writing, len));
        let w = store.put(id(4), meta(len), len, None).await.unwrap();
        assert_eq!(w.finish().await.unwrap().crc32c, crc32c::crc32c(&body));
        assert!(read_all(&store, id(4), 0, len).await.unwrap() == body);
    });
}

#[test]
fn a_shard_directory_is_opened_by_one_store_at_a_time() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let second = ChunkStore::open(dir.path(), small_config()).await;
        assert!(
            matches!(&second, Err(OpenError::Locked { .. })),
            "second open must fail"
        );
        drop(store);
        assert!(ChunkStore::open(dir.path(), small_config()).await.is_ok());
    });
}

#[test]
fn readers_whose_consumers_wait_hold_no_buffer() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let capacity = store.pool().capacity();
        let len = 6 * MIB + 11;
        let body = data(len, 31);
        put_all(&store, id(60), &body).await;
        // More readers than buffers, each having yielded its first block and then left alone
        // (their consumer is a client that does not read): their read-ahead finishes and none of
        // them keeps a buffer, so yet another read is served at once.
        let mut readers = Vec::new();
        for _ in 0..capacity + 2 {
            let mut r = store.read(id(60), 0, len).await.unwrap();
            let first = r.next().await.unwrap().unwrap();
            assert!(first[..] == body[..first.len()]);
            readers.push(r);
        }
        for _ in 0..10_000 {
            if store.pool().available() == capacity {
                break;
            }
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(
            store.pool().available(),
            capacity,
            "read-ahead keeps buffers"
        );
        let back = read_all(&store, id(60), 0, len).await.unwrap();
        assert!(back == body);
        for mut r in readers {
            let mut got = MIB as usize;
            while let Some(piece) = r.next().await {
                let piece = piece.unwrap();
                assert!(piece[..] == body[got..got + piece.len()]);
                got += piece.len();
            }
            assert_eq!(got as u64, len);
        }
    });
}

#[test]
fn a_put_waiting_for_the_network_holds_no_buffer() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let capacity = store.pool().capacity();
        // More puts than buffers, each with part of a block received and more to come: none
        // holds a buffer while it waits, so every one of them can still complete its block.
        let count = capacity + 2;
        let mut writers = Vec::new();
        for i in 0..count {
            let mut w = store
                .put(id(50 + i as u8), meta(MIB + 5), 0, None)
                .await
                .unwrap();
            w.write(Bytes::from(vec![i as u8; (MIB / 2) as usize]))
                .await
                .unwrap();
            assert_eq!(store.pool().available(), capacity, "put {i} holds a buffer");
            writers.push(w);
        }
        for (i, mut w) in writers.into_iter().enumerate() {
            w.write(Bytes::from(vec![i as u8; (MIB / 2 + 5) as usize]))
                .await
                .unwrap();
            let done = w.finish().await.unwrap();
            assert_eq!(
                done.crc32c,
                crc32c::crc32c(&vec![i as u8; (MIB + 5) as usize])
            );
        }
        assert_eq!(store.pool().available(), capacity);
    });
}

#[test]
fn write_waits_for_a_buffer_and_a_cancelled_write_poisons_the_put() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let mut w = store.put(id(1), meta(2 * MIB), 0, None).await.unwrap();
        let held: Vec<PooledBuf> = (0..store.pool().capacity())
            .map(|_| store.pool().try_acquire().expect("free buffer"))
            .collect();
        // Less than a block needs no buffer: it is kept as received.
        w.write(Bytes::from_static(b"0123456789")).await.unwrap();
        {
            let write = w.write(Bytes::from(vec![7u8; MIB as usize]));
            let mut write = std::pin::pin!(write);
            let pending = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(write.as_mut().poll(cx).is_pending())
            })
            .await;
            assert!(
                pending,
                "no buffer free: the write must wait (backpressure)"
            );
        }
        drop(held);
        assert!(matches!(
            w.write(Bytes::from_static(b"x")).await,
            Err(PutError::BadRequest(_))
        ));
        assert_eq!(w.interrupt().await.unwrap(), 0);
        assert_eq!(store.pool().available(), store.pool().capacity());
    });
}

#[test]
fn resume_of_a_chunk_with_a_damaged_header_restarts_from_zero() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 2 * MIB + 1;
        let body = data(len, 13);
        let mut w = store.put(id(1), meta(len), 0, None).await.unwrap();
        feed(&mut w, &body[..MIB as usize], 1 << 20).await;
        assert_eq!(w.interrupt().await.unwrap(), MIB);
        flip_byte(&chunk_path(&store.inner_chunks_dir(), &id(1)), 40);
        assert!(matches!(
            store.put(id(1), meta(len), MIB, None).await.err(),
            Some(PutError::Conflict { durable_len: 0 })
        ));
        let done = put_all(&store, id(1), &body).await;
        assert_eq!(done.crc32c, crc32c::crc32c(&body));
    });
}

#[test]
fn dropped_writer_is_checkpointed_and_resumable() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 3 * MIB;
        let body = data(len, 11);
        let cid = id(2);
        let mut w = store.put(cid, meta(len), 0, None).await.unwrap();
        feed(&mut w, &body[..(MIB + 10) as usize], 300_000).await;
        drop(w);
        // The next put on the chunk waits for the background checkpoint, then sees its result.
        let err = store.put(cid, meta(len), 5, None).await.err();
        assert!(matches!(err, Some(PutError::Conflict { durable_len }) if durable_len == MIB));
        let mut w = store.put(cid, meta(len), MIB, None).await.unwrap();
        feed(&mut w, &body[MIB as usize..], 1 << 20).await;
        assert_eq!(w.finish().await.unwrap().crc32c, crc32c::crc32c(&body));
    });
}

#[test]
fn put_conflicts_and_bad_requests() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 2 * MIB + 1;
        let body = data(len, 5);
        let cid = id(1);

        // Resume of an unknown chunk: nothing is durable.
        assert!(matches!(
            store.put(cid, meta(len), MIB, None).await.err(),
            Some(PutError::Conflict { durable_len: 0 })
        ));

        let mut w = store.put(cid, meta(len), 0, None).await.unwrap();
        // A second put while the first is receiving is refused.
        assert!(matches!(
            store.put(cid, meta(len), 0, None).await.err(),
            Some(PutError::Busy)
        ));
        assert!(matches!(store.delete(cid).await, Err(DeleteError::Busy)));
        feed(&mut w, &body[..MIB as usize], 4096).await;
        assert_eq!(w.interrupt().await.unwrap(), MIB);

        for wrong in [4096, 2 * MIB] {
            assert!(matches!(
                store.put(cid, meta(len), wrong, None).await.err(),
                Some(PutError::Conflict { durable_len }) if durable_len == MIB
            ));
        }
        let mut other = meta(len);
        other.part_index = 2;
        assert!(matches!(
            store.put(cid, other, MIB, None).await.err(),
            Some(PutError::BadRequest(_))
        ));

        // Restart from zero is allowed for a Writing chunk.
        let mut w = store.put(cid, meta(len), 0, None).await.unwrap();
        assert_eq!(store.stat(cid).unwrap().durable_len, 0);
        feed(&mut w, &body, 1 << 20).await;
        // More bytes than declared.
        assert!(matches!(
            w.write(Bytes::from_static(b"x")).await,
            Err(PutError::BadRequest(_))
        ));
        drop(w);

        let mut w = store.put(cid, meta(len), 0, None).await.unwrap();
        feed(&mut w, &body[..100], 100).await;
        // Fewer bytes than declared.
        assert!(matches!(w.finish().await, Err(PutError::BadRequest(_))));
        assert_eq!(store.stat(cid).unwrap().state, ChunkState::Writing);

        put_all(&store, cid, &body).await;
        // A Complete chunk reports its whole length, whatever the requested offset.
        for from in [0, MIB] {
            assert!(matches!(
                store.put(cid, meta(len), from, None).await.err(),
                Some(PutError::Conflict { durable_len }) if durable_len == len
            ));
        }
        assert!(matches!(
            store.put(cid, other, 0, None).await.err(),
            Some(PutError::BadRequest(_))
        ));
        let mut bad = meta(1);
        bad.part_index = 6;
        assert!(matches!(
            store.put(id(9), bad, 0, None).await.err(),
            Some(PutError::BadRequest(_))
        ));
        assert!(matches!(
            store
                .put(id(9), meta(MAX_CHUNK_LEN + 1), 0, None)
                .await
                .err(),
            Some(PutError::BadRequest(_))
        ));
    });
}

#[test]
fn flipped_body_byte_is_never_served() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 3 * MIB;
        let body = data(len, 3);
        let cid = id(1);
        put_all(&store, cid, &body).await;
        let path = chunk_path(&store.inner_chunks_dir(), &cid);
        let at = Layout::for_length(len).unwrap().body_offset + MIB + 12_345;
        flip_byte(&path, at);

        let mut r = store.read(cid, 0, len).await.unwrap();
        let first = r.next().await.unwrap().unwrap();
        assert!(first[..] == body[..MIB as usize]);
        assert!(matches!(
            r.next().await,
            Some(Err(BlockError::ChecksumMismatch { block: 1 }))
        ));
        assert!(r.next().await.is_none(), "nothing after a mismatch");

        // A range that does not touch the bad block still reads.
        let tail = read_all(&store, cid, 2 * MIB + 1, MIB - 1).await.unwrap();
        assert!(tail == body[(2 * MIB + 1) as usize..]);
        // A range inside the bad block fails without bytes.
        assert!(matches!(
            read_all(&store, cid, MIB + 1, 10).await,
            Err(ReadAllError::Block(BlockError::ChecksumMismatch {
                block: 1
            }))
        ));
    });
}

#[test]
fn deleted_index_is_rebuilt_with_the_same_chunks() {
    rebuild_after(
        |dir| std::fs::remove_file(dir.join("index.log")).unwrap(),
        "missing",
    );
}

#[test]
fn corrupted_index_is_rebuilt_with_the_same_chunks() {
    rebuild_after(
        |dir| {
            let p = dir.join("index.log");
            let len = std::fs::metadata(&p).unwrap().len();
            flip_byte(&p, len / 2);
        },
        "damaged",
    );
}

fn rebuild_after(damage: impl FnOnce(&Path), reason_contains: &str) {
    let dir = tmp();
    let expected = run(async {
        let store = open(dir.path()).await;
        put_all(&store, id(1), &data(MIB + 3, 1)).await;
        put_all(&store, id(2), &data(0, 2)).await;
        let mut w = store.put(id(3), meta(2 * MIB), 0, None).await.unwrap();
        feed(&mut w, &data(MIB, 3), 1 << 20).await;
        assert_eq!(w.interrupt().await.unwrap(), MIB);
        store.list(None, 100)
    });
    damage(dir.path());
    run(async {
        let store = open(dir.path()).await;
        match &store.open_report().index {
            IndexSource::Rebuilt { reason } => {
                assert!(reason.contains(reason_contains), "{reason}")
            }
            other => panic!("expected a rebuild, got {other:?}"),
        }
        assert_eq!(store.open_report().headers_read, 3);
        assert_eq!(store.list(None, 100), expected);
        let back = read_all(&store, id(1), 0, MIB + 3).await.unwrap();
        assert!(back == data(MIB + 3, 1));
    });
    // The rebuilt index is written back and trusted next time.
    run(async {
        let store = open(dir.path()).await;
        assert_eq!(store.open_report().index, IndexSource::Loaded);
        assert_eq!(store.list(None, 100), expected);
    });
}

#[test]
fn reopen_keeps_every_chunk_and_resume_point() {
    let dir = tmp();
    let body = data(3 * MIB + 9, 8);
    let expected = run(async {
        let store = open(dir.path()).await;
        for n in 1..=4u8 {
            put_all(&store, id(n), &data(u64::from(n) * 70_000, u64::from(n))).await;
        }
        store.delete(id(2)).await.unwrap();
        let mut w = store
            .put(id(7), meta(body.len() as u64), 0, None)
            .await
            .unwrap();
        feed(&mut w, &body[..(2 * MIB + 5) as usize], 1 << 19).await;
        assert_eq!(w.interrupt().await.unwrap(), 2 * MIB);
        store.list(None, 100)
    });
    run(async {
        let store = open(dir.path()).await;
        let report = store.open_report().clone();
        assert_eq!(report.index, IndexSource::Loaded);
        // Only the Writing chunk's header is re-read.
        assert_eq!(report.headers_read, 1);
        assert_eq!(store.list(None, 100), expected);
        for n in [1u8, 3, 4] {
            let len = u64::from(n) * 70_000;
            assert!(read_all(&store, id(n), 0, len).await.unwrap() == data(len, u64::from(n)));
        }
        let mut w = store
            .put(id(7), meta(body.len() as u64), 2 * MIB, None)
            .await
            .unwrap();
        feed(&mut w, &body[2 * MIB as usize..], 1 << 20).await;
        assert_eq!(w.finish().await.unwrap().crc32c, crc32c::crc32c(&body));
    });
}

#[test]
fn stale_index_log_is_reconciled_with_the_chunk_files() {
    let dir = tmp();
    let log = dir.path().join("index.log");
    let stale = dir.path().join("index.log.old");
    let expected = run(async {
        let store = open(dir.path()).await;
        put_all(&store, id(1), &data(1000, 1)).await;
        put_all(&store, id(2), &data(1000, 2)).await;
        std::fs::copy(&log, &stale).unwrap();
        // After the copy: one chunk appears, one disappears.
        put_all(&store, id(3), &data(1000, 3)).await;
        store.delete(id(1)).await.unwrap();
        store.list(None, 100)
    });
    std::fs::rename(&stale, &log).unwrap();
    run(async {
        let store = open(dir.path()).await;
        assert_eq!(store.open_report().index, IndexSource::Loaded);
        assert_eq!(store.list(None, 100), expected);
    });
}

#[test]
fn many_concurrent_puts_share_a_small_pool() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let mut tasks = Vec::new();
        for n in 0..6u8 {
            let store = store.clone();
            tasks.push(monoio::spawn(async move {
                let body = data(2 * MIB + u64::from(n), u64::from(n));
                let done = put_all(&store, id(n), &body).await;
                assert_eq!(done.crc32c, crc32c::crc32c(&body));
                let back = read_all(&store, id(n), 0, body.len() as u64).await.unwrap();
                assert!(back == body);
            }));
        }
        for t in tasks {
            t.await;
        }
        assert!(store.pool().allocated() <= store.pool().capacity());
        assert_eq!(store.pool().available(), store.pool().capacity());
    });
}

/// A temp dir with an 8 MiB tmpfs mounted at `<dir>/small` (needs root); the caller unmounts.
fn small_tmpfs() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tmp();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    (dir, mnt)
}

/// Needs root (mounts an 8 MiB tmpfs): `cargo test -p sixfold-node -- --ignored disk_full`.
#[test]
#[ignore = "needs root to mount a small tmpfs"]
fn disk_full_leaves_no_partial_chunk() {
    let (_dir, mnt) = small_tmpfs();
    let res = std::panic::catch_unwind(|| {
        run(async {
            let store = open(&mnt).await;
            put_all(&store, id(1), &data(3 * MIB, 1)).await;
            let err = store.put(id(2), meta(16 * MIB), 0, None).await.err();
            assert!(matches!(err, Some(PutError::DiskFull)), "{err:?}");
            assert!(!chunk_path(&store.inner_chunks_dir(), &id(2)).exists());
            assert!(matches!(store.stat(id(2)), Err(StatError::NotFound)));
            assert_eq!(store.list(None, 10).len(), 1);
        })
    });
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

/// Writes a file into `dir` until its filesystem is full.
fn fill_up(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0xee_u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling up: {e}"),
        }
    }
    // What is left is less than a block: fill it byte by byte.
    while let Ok(n) = f.write(&block[..1]) {
        if n == 0 {
            break;
        }
    }
    let _ = f.sync_all();
}

/// Needs root (mounts an 8 MiB tmpfs): `cargo test -p sixfold-node -- --ignored full_disk`.
#[test]
#[ignore = "needs root to mount a small tmpfs"]
fn a_store_opens_on_a_full_disk_serves_reads_and_takes_puts_once_space_is_back() {
    let (_dir, mnt) = small_tmpfs();
    let keep = data(2 * MIB + 5, 11);
    let res = std::panic::catch_unwind(|| {
        run(async {
            let store = open(&mnt).await;
            put_all(&store, id(1), &keep).await;
            put_all(&store, id(2), &data(MIB, 12)).await;
            assert!(!store.is_full());
        });
        fill_up(&mnt);
        run(async {
            // Opening writes nothing it cannot do without.
            let store = open(&mnt).await;
            assert!(store.is_full());
            let back = read_all(&store, id(1), 0, keep.len() as u64).await.unwrap();
            assert!(back == keep, "reads are served on a full disk");
            let err = store.put(id(3), meta(64 * 1024), 0, None).await.err();
            assert!(matches!(err, Some(PutError::DiskFull)), "{err:?}");
            assert!(!chunk_path(&store.inner_chunks_dir(), &id(3)).exists());
            // A delete frees space: the next put measures again and goes through.
            store.delete(id(2)).await.expect("delete on a full disk");
            let body = data(64 * 1024, 13);
            let done = put_all(&store, id(3), &body).await;
            assert_eq!(done.crc32c, crc32c::crc32c(&body));
            assert!(!store.is_full());
        });
        run(async {
            let store = open(&mnt).await;
            let ids: Vec<ChunkId> = store.list(None, 10).iter().map(|s| s.chunk_id).collect();
            assert_eq!(ids, vec![id(1), id(3)]);
        });
    });
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

fn flip_byte(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

fn facts() -> FileFacts {
    FileFacts {
        name: "holiday video.mp4".into(),
        content_type: Some("video/mp4".into()),
        created_unix_ms: 1_780_000_000_000,
    }
}

fn committed(n: u8) -> CommitMark {
    CommitMark {
        kind: MarkKind::Committed,
        file_size: 6 * MIB,
        checksum: [n; 16],
        unix_ms: 1_780_000_000_500,
    }
}

#[test]
fn commit_marks_and_file_facts_survive_a_reopen_and_show_in_the_inventory() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let body = data(MIB + 7, 1);
        // A version 2 chunk with facts, a version 1 chunk without, and one still Writing.
        let mut w = store
            .put(id(1), meta(body.len() as u64), 0, Some(facts()))
            .await
            .unwrap();
        feed(&mut w, &body, 65_536).await;
        w.finish().await.unwrap();
        put_all(&store, id(2), &body).await;
        let mut w = store.put(id(3), meta(2 * MIB), 0, None).await.unwrap();
        feed(&mut w, &body[..MIB as usize], 65_536).await;
        w.interrupt().await.unwrap();

        let recorded = store
            .mark(&[
                (id(1), committed(1)),
                (id(2), committed(2)),
                (id(3), committed(3)),
                (id(9), committed(9)),
            ])
            .await
            .unwrap();
        assert_eq!(
            recorded, 2,
            "only Complete chunks the store holds are marked"
        );
        drop(store);

        let store = open(dir.path()).await;
        let items = store.inventory(None, 10).await;
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].stat.chunk_id, id(1));
        assert_eq!(items[0].header_version, 2);
        assert_eq!(items[0].facts, Some(facts()));
        assert_eq!(items[0].mark, Some(committed(1)));
        assert_eq!(items[1].header_version, 1);
        assert_eq!(items[1].facts, None);
        assert_eq!(items[1].mark, Some(committed(2)));
        assert_eq!(items[2].mark, None);
        assert_eq!(items[2].stat.state, ChunkState::Writing);

        // A deleted chunk loses its mark, and a reopen does not bring it back.
        store.delete(id(2)).await.unwrap();
        assert_eq!(store.mark_of(id(2)), None);
        drop(store);
        let store = open(dir.path()).await;
        assert_eq!(store.mark_of(id(2)), None);
        assert_eq!(store.mark_of(id(1)), Some(committed(1)));
    });
}

#[test]
fn a_resumed_put_keeps_the_facts_it_was_created_with() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 2 * MIB + 3;
        let body = data(len, 4);
        let mut w = store.put(id(1), meta(len), 0, Some(facts())).await.unwrap();
        feed(&mut w, &body[..MIB as usize], 65_536).await;
        assert_eq!(w.interrupt().await.unwrap(), MIB);
        let mut w = store.put(id(1), meta(len), MIB, None).await.unwrap();
        feed(&mut w, &body[MIB as usize..], 65_536).await;
        w.finish().await.unwrap();
        let items = store.inventory(None, 1).await;
        assert_eq!(items[0].facts, Some(facts()));
        assert_eq!(read_all(&store, id(1), 0, len).await.unwrap(), body);
    });
}

#[test]
fn verify_reads_the_whole_chunk_and_finds_a_flipped_byte() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 3 * MIB + 11;
        let body = data(len, 5);
        let done = put_all(&store, id(1), &body).await;
        assert_eq!(store.verify(id(1)).await.unwrap(), (len, done.crc32c));
        let path = chunk_path(&store.inner_chunks_dir(), &id(1));
        flip_byte(
            &path,
            Layout::for_length(len).unwrap().body_offset + 2 * MIB + 5,
        );
        assert!(matches!(
            store.verify(id(1)).await,
            Err(VerifyError::ChecksumMismatch { block: 2 })
        ));
        assert!(matches!(
            store.verify(id(8)).await,
            Err(VerifyError::NotFound)
        ));
    });
}

#[test]
fn a_torn_marks_log_tail_is_dropped_at_open_and_later_marks_still_count() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let body = data(100, 6);
        put_all(&store, id(1), &body).await;
        put_all(&store, id(2), &body).await;
        store.mark(&[(id(1), committed(1))]).await.unwrap();
        drop(store);
        // A crash in the middle of an append: half a record at the end.
        let log = dir.path().join("marks.log");
        let mut bytes = std::fs::read(&log).unwrap();
        bytes.extend_from_slice(&[0x39; 20]);
        std::fs::write(&log, &bytes).unwrap();

        let store = open(dir.path()).await;
        assert_eq!(store.mark_of(id(1)), Some(committed(1)));
        store.mark(&[(id(2), committed(2))]).await.unwrap();
        drop(store);
        let store = open(dir.path()).await;
        assert_eq!(store.mark_of(id(1)), Some(committed(1)));
        assert_eq!(store.mark_of(id(2)), Some(committed(2)));
    });
}

#[test]
fn paced_verify_sees_every_block_and_stops_when_told() {
    let dir = tmp();
    run(async {
        let store = open(dir.path()).await;
        let len = 3 * MIB + 11;
        let body = data(len, 7);
        let done = put_all(&store, id(1), &body).await;
        let mut seen = Vec::new();
        let got = store
            .verify_paced(id(1), async |n| {
                seen.push(n);
                true
            })
            .await;
        assert_eq!(got.unwrap().unwrap(), (len, done.crc32c));
        assert_eq!(seen, [MIB, MIB, MIB, 11]);
        let mut calls = 0;
        let got = store
            .verify_paced(id(1), async |_| {
                calls += 1;
                calls < 2
            })
            .await;
        assert!(got.is_none(), "stopped after the second block");
        assert_eq!(calls, 2);
    });
}
