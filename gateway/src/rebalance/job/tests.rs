//! The job over in-memory nodes: a run moves what the planner says, the files keep their
//! bytes, a failed copy leaves the part where it was, and sources go after the grace period.

use std::sync::Mutex;

use super::*;
use crate::meta::{Meta, PlannedPart, UploadSession};
use crate::node_client::NodeClient;
use crate::node_client::memory::{Fault, MemoryNodes};
use crate::split::{SplitPolicy, plan as split};

#[test]
fn the_stronger_trigger_wins() {
    assert_eq!(stronger(None, Trigger::Draining), Trigger::Draining);
    assert_eq!(
        stronger(Some(Trigger::NodeAdded), Trigger::Draining),
        Trigger::NodeAdded
    );
    assert_eq!(
        stronger(Some(Trigger::Draining), Trigger::OnDemand { force: true }),
        Trigger::OnDemand { force: true }
    );
}

/// The planner's view of the memory nodes, with states the test sets.
struct States {
    nodes: MemoryNodes,
    states: Mutex<HashMap<Uuid, NodeState>>,
}

impl NodeSource for States {
    fn plan_nodes(&self) -> Vec<PlanNode> {
        let states = self.states.lock().expect("states");
        self.nodes
            .candidates()
            .into_iter()
            .map(|c| PlanNode {
                id: c.id,
                capacity: c.capacity,
                used: c.used,
                state: states.get(&c.id).copied().unwrap_or(NodeState::Up),
            })
            .collect()
    }
}

/// Writes a file of `size` pattern bytes to its placement on the first `on` nodes.
async fn store_file(
    meta: &Meta,
    nodes: &MemoryNodes,
    on: &[Uuid],
    n: u64,
    size: u64,
) -> FileRecord {
    let policy = SplitPolicy {
        min_part_size: 1024,
        ..SplitPolicy::default()
    };
    let ranges = split(size, &policy);
    let file_id = Uuid::from_u64_pair(0xf11e, n);
    let cands: Vec<PlanNode> = on
        .iter()
        .map(|id| PlanNode {
            id: *id,
            capacity: 1 << 40,
            used: 0,
            state: NodeState::Up,
        })
        .collect();
    let indexes: Vec<u32> = ranges.iter().map(|r| r.index).collect();
    let at: Vec<Uuid> = plan::ideal(&file_id, &indexes, &cands)
        .into_iter()
        .flatten()
        .collect();
    let session = UploadSession {
        file_id,
        name: format!("f{n}"),
        content_type: None,
        size: Some(size),
        created_unix_ms: 1,
        expires_unix_ms: u64::MAX,
        parts: PlannedPart::plan(&ranges, &at).expect("plan"),
        multipart: false,
        owner: None,
    };
    meta.begin_session(&session).expect("begin");
    let body: Vec<u8> = (0..size).map(|i| (i * 7 + n) as u8).collect();
    let mut acks = Vec::new();
    for p in &session.parts {
        let bytes = Bytes::copy_from_slice(&body[p.offset as usize..(p.offset + p.len) as usize]);
        let (tx, rx) = mpsc::channel(1);
        tx.send(bytes.clone()).await.expect("send");
        drop(tx);
        let meta_of = ChunkMeta {
            file_id: *file_id.as_bytes(),
            part_index: p.index,
            part_count: session.parts.len() as u32,
            file_offset: p.offset,
            length: p.len,
        };
        let ack = nodes
            .put_chunk(p.node_id, p.chunk_id, meta_of, None, rx)
            .await
            .expect("put");
        acks.push(
            p.verify_ack(ack.length, ack.crc32c, crc32c::crc32c(&bytes))
                .expect("ack"),
        );
    }
    meta.commit_session(&file_id, acks, format!("{:032x}", n), size)
        .expect("commit")
}

async fn read_back(nodes: &MemoryNodes, file: &FileRecord) -> Vec<u8> {
    let mut out = Vec::new();
    for p in &file.parts {
        out.extend_from_slice(&nodes.chunk(p.node_id, &p.chunk_id).expect("chunk is there"));
    }
    out
}

async fn wait_idle(job: &Rebalancer, since_ms: u64) -> Status {
    for _ in 0..2_000 {
        let s = job.status().await;
        if s.state == JobState::Idle
            && s.started_unix_ms.is_some_and(|t| t >= since_ms)
            && s.finished_unix_ms.is_some()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the run did not finish");
}

#[tokio::test]
async fn a_run_moves_parts_to_a_new_node_keeps_every_byte_and_releases_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
    let ids: Vec<Uuid> = (1..=7).map(|n| Uuid::from_u128(0xabc0 + n)).collect();
    let nodes = MemoryNodes::with_node_ids(ids.clone());
    let mut files = Vec::new();
    for n in 0..40 {
        files.push(store_file(&meta, &nodes, &ids[..6], n, 6 * 1024 + n * 100).await);
    }
    let mut before = Vec::new();
    for f in &files {
        before.push(read_back(&nodes, f).await);
    }
    let source = Arc::new(States {
        nodes: nodes.clone(),
        states: Mutex::new(HashMap::new()),
    });
    // The seventh node fails its writes at first: those moves fail and change nothing.
    nodes.set_fault(ids[6], Fault::FailWrites);
    let job = Rebalancer::start(
        Arc::new(meta.clone()),
        Arc::new(nodes.clone()),
        source.clone(),
        RebalanceSettings {
            rate: 0,
            concurrency: 2,
            threshold: 0.05,
            grace: Duration::from_millis(50),
        },
    )
    .await
    .expect("start");
    let t0 = unix_ms_now();
    job.trigger(Trigger::NodeAdded);
    let s = wait_idle(&job, t0).await;
    assert!(s.parts_planned > 0);
    assert_eq!(s.parts_failed, s.parts_planned, "{s:?}");
    assert_eq!(s.parts_done, 0);
    for (f, bytes) in files.iter().zip(&before) {
        let now = meta.get_file(&f.id).expect("get").expect("file");
        assert_eq!(&now, f);
        assert_eq!(&read_back(&nodes, &now).await, bytes);
    }
    assert_eq!(meta.move_count().expect("count"), 0);
    // Now it works: every file with the newcomer among its winners moves one part.
    nodes.set_fault(ids[6], Fault::None);
    let t1 = unix_ms_now();
    job.trigger(Trigger::NodeAdded);
    let s = wait_idle(&job, t1).await;
    assert_eq!(
        (s.parts_failed, s.parts_done),
        (0, s.parts_planned),
        "{s:?}"
    );
    let mut moved = 0;
    for (f, bytes) in files.iter().zip(&before) {
        let now = meta.get_file(&f.id).expect("get").expect("file");
        let changed: Vec<_> = now
            .parts
            .iter()
            .zip(&f.parts)
            .filter(|(a, b)| a.node_id != b.node_id)
            .collect();
        assert!(changed.len() <= 1);
        for (a, _) in &changed {
            assert_eq!(a.node_id, ids[6]);
        }
        moved += changed.len() as u64;
        assert_eq!(&read_back(&nodes, &now).await, bytes, "{}", f.id);
    }
    assert_eq!(moved, s.parts_done);
    // After the grace period the sources are queued for deletion and the records gone.
    for _ in 0..2_000 {
        if meta.move_count().expect("count") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(meta.move_count().expect("count"), 0);
    let queued: usize = ids
        .iter()
        .map(|id| meta.pending_deletes(id, 1000).expect("queue").len())
        .sum();
    // The failed copies of the first run and the sources of the second.
    assert_eq!(queued as u64, moved + s.parts_planned);
    let mut text = String::new();
    job.render_metrics(&mut text);
    assert!(
        text.contains(&format!("sixfold_rebalance_parts_done {moved}")),
        "{text}"
    );
    assert!(
        text.contains("sixfold_rebalance_state{state=\"idle\"} 1"),
        "{text}"
    );
    // A drain: every part leaves the node.
    source
        .states
        .lock()
        .expect("states")
        .insert(ids[0], NodeState::Draining);
    let t2 = unix_ms_now();
    job.trigger(Trigger::Draining);
    let s = wait_idle(&job, t2).await;
    assert_eq!(s.mode, Some(Mode::DrainOnly));
    assert_eq!(s.parts_failed, 0);
    for (f, bytes) in files.iter().zip(&before) {
        let now = meta.get_file(&f.id).expect("get").expect("file");
        assert!(now.parts.iter().all(|p| p.node_id != ids[0]));
        assert_eq!(&read_back(&nodes, &now).await, bytes);
    }
    job.stop();
}

#[tokio::test]
async fn pause_holds_new_moves_and_limits_change_at_run_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
    let ids: Vec<Uuid> = (1..=7).map(|n| Uuid::from_u128(0xdef0 + n)).collect();
    let nodes = MemoryNodes::with_node_ids(ids.clone());
    for n in 0..10 {
        store_file(&meta, &nodes, &ids[..6], n, 6 * 1024).await;
    }
    let source = Arc::new(States {
        nodes: nodes.clone(),
        states: Mutex::new(HashMap::new()),
    });
    let job = Rebalancer::start(
        Arc::new(meta.clone()),
        Arc::new(nodes.clone()),
        source,
        RebalanceSettings::default(),
    )
    .await
    .expect("start");
    job.pause();
    let t0 = unix_ms_now();
    job.trigger(Trigger::OnDemand { force: true });
    let mut s = job.status().await;
    for _ in 0..1_000 {
        s = job.status().await;
        if s.state == JobState::Paused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.state, JobState::Paused);
    assert_eq!(s.parts_done, 0);
    assert_eq!(
        job.set_limits(None, Some(0)),
        Err(SettingsError::ZeroConcurrency)
    );
    job.set_limits(Some(0), Some(3)).expect("limits");
    let s = job.status().await;
    assert_eq!((s.rate_limit_bytes_per_sec, s.concurrency_per_node), (0, 3));
    job.resume();
    let s = wait_idle(&job, t0).await;
    assert_eq!(s.mode, Some(Mode::Converge));
    assert_eq!(s.parts_done, s.parts_planned);
    job.stop();
}

#[tokio::test]
async fn moves_keep_to_the_rate_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Meta::open(dir.path().join("meta.redb")).expect("open");
    let ids: Vec<Uuid> = (1..=7).map(|n| Uuid::from_u128(0x7a7e_0000 + n)).collect();
    let nodes = MemoryNodes::with_node_ids(ids.clone());
    for n in 0..12 {
        store_file(&meta, &nodes, &ids[..6], n, 6 * 64 * 1024).await;
    }
    let source = Arc::new(States {
        nodes: nodes.clone(),
        states: Mutex::new(HashMap::new()),
    });
    const RATE: u64 = 2 << 20;
    let job = Rebalancer::start(
        Arc::new(meta.clone()),
        Arc::new(nodes.clone()),
        source,
        RebalanceSettings {
            rate: RATE,
            concurrency: 4,
            threshold: 0.05,
            grace: Duration::from_secs(3600),
        },
    )
    .await
    .expect("start");
    let t0 = unix_ms_now();
    let started = Instant::now();
    job.trigger(Trigger::NodeAdded);
    let s = wait_idle(&job, t0).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(s.bytes_done > 0, "{s:?}");
    // A ratio, not a speed: the bytes moved over the time taken stay within the limit (plus
    // the tenth of a second of credit the pacing allows). A slow machine only lowers it.
    let ratio = s.bytes_done as f64 / elapsed / RATE as f64;
    let allowance = 1.0 + (RATE as f64 / 10.0) / s.bytes_done as f64;
    assert!(
        ratio <= 1.05 * allowance,
        "moved at {ratio:.2} times the limit"
    );
    job.stop();
}
