//! The rebuild itself (`POST /admin/recover`): read every node's inventory, have the nodes
//! verify the chunks of files the metadata does not know, apply the [`super::rules`], and add
//! the files they bring back. One run at a time, in the background; its progress and report
//! are read with `GET /admin/recover`.
//!
//! It refuses to start while a known node is down or not yet verified: the parts on such a node
//! would be missing from the inventory, and complete files would be judged incomplete.
//! Memory grows with the number of chunks of files the metadata does not know (one entry
//! each, about 200 bytes), the price of judging every set as a whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::file_hash::Xxh3;
use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::found::found_chunk;
use super::rules::{FoundChunk, NotRestored, RestoredFile, plan_rebuild};
use crate::cluster::{Cluster, NodeError};
use crate::meta::{FileRecord, MetaError, NodeState, QuarantineMark, Restored, unix_ms_now};

/// Chunks the nodes verify at once, over the whole cluster.
const VERIFY_CONCURRENCY: usize = 4;
/// Sets not restored that the report lists one by one (all are counted).
const REPORT_LIMIT: usize = 100;

/// Why a rebuild could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("no node is registered: start the nodes first, then recover")]
    NoNodes,
    #[error(
        "node {0} is {1}: its parts would be missing from the inventory; wait until it is up, or remove it (DELETE /admin/nodes/{0}) if it is gone for good"
    )]
    NodeNotReady(Uuid, &'static str),
    #[error("node {0}: {1}")]
    Node(Uuid, NodeError),
    #[error(
        "the nodes keep the ids of several clusters ({0}): a rebuild needs the nodes of one cluster; remove the others first"
    )]
    SeveralClusters(String),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("metadata task failed: {0}")]
    Task(String),
    #[error("a rebuild is already running")]
    AlreadyRunning,
}

/// A set of chunks that did not come back, as the report shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotRestoredView {
    pub file_id: Uuid,
    pub reason: String,
    pub chunks: usize,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RecoveryReport {
    pub files_restored: u64,
    /// Files found on the nodes that the metadata already had.
    pub files_known: u64,
    /// Sets of chunks that make no file (missing parts, never committed, deleted, ...).
    pub sets_not_restored: u64,
    /// The first of them, with the reason.
    pub not_restored: Vec<NotRestoredView>,
    /// Chunks set aside: kept for the orphan grace period, never served.
    pub chunks_quarantined: u64,
    /// Files restored from version 1 chunks only: no commit mark tells whether they were
    /// deleted or never committed before the loss; named after their id.
    pub files_from_version_1_chunks: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Idle,
    Running,
    Done,
    Failed,
}

/// `GET /admin/recover`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryStatus {
    pub state: RunState,
    /// `inventory`, `verify`, `checksums`, `restore` while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    pub nodes: usize,
    pub nodes_read: usize,
    pub chunks_found: u64,
    pub chunks_to_verify: u64,
    pub chunks_verified: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<RecoveryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The rebuild runner: cheap to clone, one run at a time.
#[derive(Clone)]
pub struct Recovery {
    cluster: Cluster,
    status: Arc<Mutex<RecoveryStatus>>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Recovery {
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            status: Arc::default(),
        }
    }

    pub fn status(&self) -> RecoveryStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut RecoveryStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Starts a run in the background, unless one is running.
    pub fn start(&self) -> Result<RecoveryStatus, RecoveryError> {
        {
            let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            if s.state == RunState::Running {
                return Err(RecoveryError::AlreadyRunning);
            }
            *s = RecoveryStatus {
                state: RunState::Running,
                phase: Some("inventory"),
                started: Some(now_rfc3339()),
                ..RecoveryStatus::default()
            };
        }
        let job = self.clone();
        tokio::spawn(async move {
            let result = job.run().await;
            job.update(|s| {
                s.phase = None;
                s.finished = Some(now_rfc3339());
                match result {
                    Ok(report) => {
                        s.state = RunState::Done;
                        s.report = Some(report);
                    }
                    Err(e) => {
                        s.state = RunState::Failed;
                        s.error = Some(e.to_string());
                    }
                }
            });
        });
        Ok(self.status())
    }

    async fn run(&self) -> Result<RecoveryReport, RecoveryError> {
        let result = self.rebuild().await;
        match &result {
            Ok(r) => tracing::warn!(
                restored = r.files_restored,
                known = r.files_known,
                not_restored = r.sets_not_restored,
                quarantined = r.chunks_quarantined,
                "metadata rebuild from the nodes finished"
            ),
            Err(e) => tracing::error!(error = %e, "metadata rebuild from the nodes failed"),
        }
        result
    }

    async fn rebuild(&self) -> Result<RecoveryReport, RecoveryError> {
        let cluster = &self.cluster;
        let nodes = cluster.nodes();
        if nodes.is_empty() {
            return Err(RecoveryError::NoNodes);
        }
        if let Some(n) = nodes
            .iter()
            .find(|n| n.state == NodeState::Down || n.state_name == "joining")
        {
            return Err(RecoveryError::NodeNotReady(n.id, n.state_name));
        }
        // The nodes' chunks were written under the cluster id they keep: the rebuilt metadata
        // takes it, so that they are members again.
        let claims = cluster.claimed_cluster_ids();
        let claimed: std::collections::BTreeSet<Uuid> = nodes
            .iter()
            .filter_map(|n| claims.get(&n.id))
            .copied()
            .collect();
        if claimed.len() > 1 {
            let list: Vec<String> = claimed.iter().map(Uuid::to_string).collect();
            return Err(RecoveryError::SeveralClusters(list.join(", ")));
        }
        self.update(|s| s.nodes = nodes.len());
        tracing::warn!(
            nodes = nodes.len(),
            "metadata rebuild from the nodes started"
        );

        // 1. Inventories, keeping only chunks of files the metadata does not know.
        let mut found: Vec<FoundChunk> = Vec::new();
        let mut known_files: HashSet<Uuid> = HashSet::new();
        let mut unknown_files: HashSet<Uuid> = HashSet::new();
        for node in &nodes {
            let shards = cluster
                .shard_count(node.id)
                .map_err(|e| RecoveryError::Node(node.id, e))?;
            for shard in 0..shards {
                let mut after = None;
                loop {
                    let (entries, more) = cluster
                        .inventory(node.id, shard, after)
                        .await
                        .map_err(|e| RecoveryError::Node(node.id, e))?;
                    after = entries.last().map(|e| e.info.chunk_id);
                    let page: Vec<FoundChunk> =
                        entries.iter().map(|e| found_chunk(node.id, e)).collect();
                    let fresh: Vec<Uuid> = page
                        .iter()
                        .map(|c| c.file_id)
                        .filter(|id| !known_files.contains(id) && !unknown_files.contains(id))
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect();
                    let mut known = Vec::with_capacity(fresh.len());
                    for id in fresh {
                        known.push((id, cluster.meta().knows_file_id(&id).await?));
                    }
                    for (id, k) in known {
                        if k {
                            known_files.insert(id);
                        } else {
                            unknown_files.insert(id);
                        }
                    }
                    self.update(|s| s.chunks_found += page.len() as u64);
                    found.extend(
                        page.into_iter()
                            .filter(|c| !known_files.contains(&c.file_id)),
                    );
                    if !more || after.is_none() {
                        break;
                    }
                }
            }
            self.update(|s| s.nodes_read += 1);
        }

        // 2. The nodes read every complete chunk whole and check it.
        let to_verify: Vec<usize> = (0..found.len()).filter(|&i| found[i].complete).collect();
        self.update(|s| {
            s.phase = Some("verify");
            s.chunks_to_verify = to_verify.len() as u64;
        });
        let checks: Vec<(usize, bool)> = futures_util::stream::iter(to_verify)
            .map(|i| {
                let c = &found[i];
                let (node, chunk, length, crc) = (c.node, c.chunk_id, c.length, c.crc32c);
                async move {
                    let ok = match cluster.verify_chunk(node, chunk, length).await {
                        Ok((l, got)) => l == length && got == crc,
                        Err(e) => {
                            tracing::warn!(%node, chunk = %Uuid::from_bytes(chunk), error = %e, "chunk failed verification; it is not restored");
                            false
                        }
                    };
                    self.update(|s| s.chunks_verified += 1);
                    (i, ok)
                }
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
        for (i, ok) in checks {
            found[i].verified = ok;
        }

        // 3. The rules.
        let plan = plan_rebuild(&found);
        drop(found);
        let mut report = RecoveryReport {
            files_known: known_files.len() as u64,
            sets_not_restored: plan.not_restored.len() as u64,
            not_restored: plan
                .not_restored
                .iter()
                .take(REPORT_LIMIT)
                .map(|u| NotRestoredView {
                    file_id: u.file_id,
                    reason: reason(&u.why),
                    chunks: u.chunks,
                })
                .collect(),
            ..RecoveryReport::default()
        };
        for u in &plan.not_restored {
            tracing::warn!(file_id = %u.file_id, reason = %reason(&u.why), chunks = u.chunks, "chunks found on the nodes make no file; quarantined");
        }

        // 4. Files of version 1 chunks have no checksum yet: computed from their bytes.
        self.update(|s| s.phase = Some("checksums"));
        let mut records = Vec::with_capacity(plan.restore.len());
        for file in plan.restore {
            if file.committed.is_none() {
                report.files_from_version_1_chunks += 1;
            }
            let checksum = match &file.committed {
                Some(c) => c.checksum.clone(),
                None => match checksum_of(cluster, &file).await {
                    Ok(c) => c,
                    Err((node, e)) => {
                        tracing::warn!(file_id = %file.id, %node, error = %e, "cannot read a version 1 file to checksum it; not restored");
                        report.sets_not_restored += 1;
                        continue;
                    }
                },
            };
            records.push(record_of(file, checksum));
        }

        // 5. Restore, quarantine the rest, and account for every node read.
        self.update(|s| s.phase = Some("restore"));
        for record in records {
            let id = record.id;
            let name = record.name.clone();
            match cluster.meta().restore_file(&record).await? {
                Restored::Added => {
                    report.files_restored += 1;
                    tracing::warn!(file_id = %id, name = ?name, "file restored from the nodes");
                }
                Restored::AlreadyKnown => report.files_known += 1,
                Restored::ChunkTaken => {
                    report.sets_not_restored += 1;
                    tracing::warn!(file_id = %id, "a chunk of a found file belongs to another file or is being deleted; not restored");
                }
            }
        }
        let mut by_node: BTreeMap<Uuid, Vec<([u8; 16], QuarantineMark)>> = BTreeMap::new();
        let now = unix_ms_now();
        for a in plan.quarantine {
            by_node.entry(a.node).or_default().push((
                a.chunk_id,
                QuarantineMark {
                    file_id: a.file_id,
                    part_index: a.part_index,
                    first_seen_unix_ms: now,
                },
            ));
        }
        for (node, marks) in by_node {
            let n = cluster.meta().update_quarantine(&node, &marks, &[]).await?;
            report.chunks_quarantined += n as u64;
        }
        if let Some(id) = claimed.first().copied()
            && id != cluster.meta().cluster_id()
        {
            cluster.meta().adopt_cluster_id(id).await?;
        }
        for node in &nodes {
            let id = node.id;
            if cluster.meta().clear_unaccounted(&id).await? {
                tracing::warn!(node = %id, "node accounted for by the rebuild");
            }
        }
        cluster.wake_cleanup();
        Ok(report)
    }
}

fn reason(why: &NotRestored) -> String {
    match why {
        NotRestored::Deleted => "deleted".into(),
        NotRestored::NeverCommitted => "never committed (the upload did not answer 201)".into(),
        NotRestored::MissingPart(i) => format!("part {i} is missing or did not verify"),
        NotRestored::Inconsistent(why) => format!("inconsistent: {why}"),
        NotRestored::AmbiguousPart(i) => format!("two copies of part {i} differ"),
    }
}

fn record_of(file: RestoredFile, checksum: String) -> FileRecord {
    let (name, content_type) = match file.facts {
        Some(f) => (f.name, f.content_type),
        None => (file.id.to_string(), None),
    };
    FileRecord {
        id: file.id,
        name,
        content_type,
        size: file.size,
        created_unix_ms: file
            .committed
            .as_ref()
            .map_or_else(unix_ms_now, |c| c.committed_unix_ms),
        checksum,
        parts: file.parts,
    }
}

/// xxh3-128 of a file's bytes, read part by part from its nodes.
async fn checksum_of(cluster: &Cluster, file: &RestoredFile) -> Result<String, (Uuid, NodeError)> {
    let mut hasher = Xxh3::new();
    for p in &file.parts {
        if p.len == 0 {
            continue;
        }
        let mut reader = cluster
            .get_chunk(p.node_id, p.chunk_id, 0, p.len)
            .await
            .map_err(|e| (p.node_id, e))?;
        while let Some(piece) = reader.next().await {
            hasher.update(&piece.map_err(|e| (p.node_id, e))?);
        }
    }
    Ok(format!("{:032x}", hasher.digest128()))
}
