//! Several gateways over one shared metadata store (issue 16): what this gateway tells the
//! others and learns from them, through [`Coordination`].
//!
//! - **Liveness**: the gateway beats every [`beat_interval`]; one silent for `gateway_timeout`
//!   has lapsed, and its upload sessions are aborted by whoever runs the cleanup.
//! - **Node reports**: every report a node sends this gateway is relayed; every other gateway
//!   applies the fresh ones to its own registry, so a heartbeat to any gateway keeps the node
//!   up for all. A relayed report never makes a node up by itself: each gateway verifies the
//!   node over QUIC (its certificate) before it places parts there.
//! - **Operator states and removals** made through another gateway are picked up from the
//!   node records.
//! - **Job leases** ([`JobLease`]): background jobs run on the one gateway holding their lease.
//!
//! With a store one process owns (redb) there are no peers and none of this runs.

use std::collections::HashMap;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::registry::{ReportKind, ValidReport};
use super::{Cluster, Inner};
use crate::meta::coordination::{
    self, Coordination, GatewayBeat, RelayVerdict, RelayedReport, judge_relayed,
};

/// How often this gateway says it is alive: six beats per timeout, so that one or two lost
/// beats (a slow database) do not make it look dead.
pub fn beat_interval(gateway_timeout: Duration) -> Duration {
    (gateway_timeout / 6).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

/// How often relayed node reports are read: twice per heartbeat interval, so that a node
/// heartbeating another gateway is seen alive here well within `down_after`.
pub fn sync_interval(heartbeat_interval: Duration) -> Duration {
    (heartbeat_interval / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// The report as relayed to the other gateways.
pub(super) fn relayed(
    report: &ValidReport,
    kind: ReportKind,
    via: Uuid,
    registered_unix_ms: u64,
    received_unix_ms: u64,
) -> RelayedReport {
    RelayedReport {
        node_id: report.id,
        via,
        kind: match kind {
            ReportKind::Register => coordination::ReportKind::Register,
            ReportKind::Heartbeat => coordination::ReportKind::Heartbeat,
        },
        registered_unix_ms,
        received_unix_ms,
        name: report.name.clone(),
        shard_addrs: report.shard_addrs.clone(),
        capacity: report.capacity,
        used: report.used,
        chunk_count: report.chunk_count,
        in_flight: report.in_flight,
        draining: report.draining,
        read_only: report.read_only,
        software: report.software.clone(),
        cluster_id: report.cluster_id,
    }
}

fn as_report(r: &RelayedReport) -> ValidReport {
    ValidReport {
        id: r.node_id,
        name: r.name.clone(),
        shard_addrs: r.shard_addrs.clone(),
        capacity: r.capacity,
        used: r.used,
        chunk_count: r.chunk_count,
        in_flight: r.in_flight,
        draining: r.draining,
        read_only: r.read_only,
        software: r.software.clone(),
        cluster_id: r.cluster_id,
    }
}

/// A background job that runs on one gateway at a time.
#[derive(Debug)]
pub struct JobLease {
    pub job: &'static str,
    held: AtomicBool,
    /// Passes this gateway ran holding the lease.
    passes: AtomicU64,
}

impl JobLease {
    pub const fn new(job: &'static str) -> Self {
        JobLease {
            job,
            held: AtomicBool::new(false),
            passes: AtomicU64::new(0),
        }
    }

    /// Whether this gateway held the lease at its last claim.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Passes of the job this gateway ran.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    pub(super) fn ran(&self) {
        self.passes.fetch_add(1, Ordering::Relaxed);
    }

    /// Claims (or renews) the lease for `ttl`. Alone (no coordination) the gateway always
    /// holds it. A metadata failure counts as not holding it: two gateways must never run the
    /// job together, and skipping a pass loses nothing.
    pub(super) async fn claim(&self, cluster: &Cluster, ttl: Duration) -> bool {
        let Some(coord) = cluster.meta().coordination() else {
            self.held.store(true, Ordering::Relaxed);
            return true;
        };
        let me = cluster.gateway_id();
        let now = cluster.clock().unix_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let held = match coord.claim_lease(self.job, me, now, ttl_ms).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(job = self.job, error = %e, "cannot claim the job's lease; the pass is skipped");
                false
            }
        };
        let before = self.held.swap(held, Ordering::Relaxed);
        if held != before {
            if held {
                tracing::info!(job = self.job, gateway = %me, "this gateway runs the job now");
            } else {
                tracing::info!(job = self.job, gateway = %me, "another gateway runs the job now");
            }
        }
        held
    }

    pub(super) async fn release(&self, coord: &dyn Coordination, me: Uuid) {
        if self.held.swap(false, Ordering::Relaxed)
            && let Err(e) = coord.release_lease(self.job, me).await
        {
            tracing::warn!(job = self.job, error = %e, "cannot give the job's lease up; it runs out by itself");
        }
    }
}

/// Runs until the cluster shuts down or is dropped: beats, and applies the other gateways'
/// relayed reports and the node records they changed.
pub(super) async fn run(inner: Weak<Inner>) {
    let Some((shutdown, sync_every, beat_every)) = inner.upgrade().map(|i| {
        (
            i.shutdown.clone(),
            sync_interval(i.cfg.heartbeat_interval),
            beat_interval(i.cfg.gateway_timeout),
        )
    }) else {
        return;
    };
    let mut tick = tokio::time::interval(sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut applied: HashMap<Uuid, RelayedReport> = HashMap::new();
    let mut last_beat: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(cluster) = inner.upgrade().map(|inner| Cluster { inner }) else {
            return;
        };
        if cluster.meta().coordination().is_none() {
            return;
        }
        let now = cluster.clock().now();
        if last_beat.is_none_or(|at| now.saturating_duration_since(at) >= beat_every) {
            cluster.beat().await;
            last_beat = Some(now);
        }
        // Bounded: every call below waits at most the pool's wait and statement times.
        cluster.sync_reports(&mut applied).await;
        cluster.sync_records().await;
    }
}

impl Cluster {
    /// This gateway's id (kept in its data dir).
    pub fn gateway_id(&self) -> Uuid {
        self.inner.cfg.gateway_id
    }

    /// The cleanup job's lease, as this gateway last saw it.
    pub fn cleanup_lease(&self) -> &std::sync::Arc<JobLease> {
        &self.inner.cleanup_lease
    }

    /// The rebalancer's lease, as this gateway last saw it.
    pub fn rebalance_lease(&self) -> &std::sync::Arc<JobLease> {
        &self.inner.rebalance_lease
    }

    /// Claims (or renews) the rebalancer's lease; whether this gateway runs it now.
    pub async fn claim_rebalance(&self) -> bool {
        let lease = &self.inner.rebalance_lease;
        let held = lease.claim(self, self.inner.cfg.gateway_timeout).await;
        if held {
            lease.ran();
        }
        held
    }

    /// Says this gateway is alive.
    async fn beat(&self) {
        let Some(coord) = self.meta().coordination() else {
            return;
        };
        let beat = GatewayBeat {
            id: self.gateway_id(),
            name: self.inner.cfg.gateway_name.clone(),
            started_unix_ms: self.started_unix_ms(),
            seen_unix_ms: self.clock().unix_ms(),
        };
        if let Err(e) = coord.beat(&beat).await {
            tracing::warn!(error = %e, "cannot record this gateway's liveness; will retry");
        }
    }

    /// The gateways that beat, by id (empty when alone).
    pub(super) async fn peers(&self) -> HashMap<Uuid, GatewayBeat> {
        let Some(coord) = self.meta().coordination() else {
            return HashMap::new();
        };
        match coord.gateways().await {
            Ok(list) => list.into_iter().map(|b| (b.id, b)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other gateways' liveness");
                HashMap::new()
            }
        }
    }

    /// Relays a report this gateway received to the others. A failure is logged: the next
    /// heartbeat relays again, and meanwhile the others count the node as silent, the safe side.
    pub(super) async fn relay(&self, report: &ValidReport, kind: ReportKind) {
        let Some(coord) = self.meta().coordination() else {
            return;
        };
        let registered = self
            .read()
            .registered_unix_ms(&report.id)
            .unwrap_or_else(|| self.clock().unix_ms());
        let relayed = relayed(
            report,
            kind,
            self.gateway_id(),
            registered,
            self.clock().unix_ms(),
        );
        if let Err(e) = coord.relay_report(&relayed).await {
            tracing::warn!(node = %report.id, error = %e, "cannot relay the node's report to the other gateways");
        }
    }

    /// Applies the fresh reports other gateways relayed.
    async fn sync_reports(&self, applied: &mut HashMap<Uuid, RelayedReport>) {
        let Some(coord) = self.meta().coordination() else {
            return;
        };
        let reports = match coord.relayed_reports().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the nodes' relayed reports");
                return;
            }
        };
        let me = self.gateway_id();
        let now_ms = self.clock().unix_ms();
        let down_after_ms = u64::try_from(self.inner.cfg.down_after.as_millis()).unwrap_or(0);
        for r in reports {
            let verdict = judge_relayed(&r, applied.get(&r.node_id), me, now_ms, down_after_ms);
            let kind = match verdict {
                RelayVerdict::Stale => continue,
                RelayVerdict::Heartbeat => ReportKind::Heartbeat,
                RelayVerdict::Restarted => ReportKind::Register,
            };
            let age = Duration::from_millis(now_ms.saturating_sub(r.received_unix_ms));
            self.apply_relayed(&as_report(&r), kind, age, r.received_unix_ms)
                .await;
            applied.insert(r.node_id, r);
        }
    }

    /// Takes the operator states set and the nodes removed through other gateways.
    async fn sync_records(&self) {
        let records = match self.meta().list_nodes().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node records");
                return;
            }
        };
        let stored: HashMap<Uuid, _> = records
            .into_iter()
            .map(|r| (r.id, r.operator_state))
            .collect();
        for view in self.nodes() {
            match stored.get(&view.id) {
                Some(&operator) if operator != view.operator_state => {
                    let changed = self.write().set_operator_state(&view.id, operator);
                    if changed.is_some() {
                        tracing::info!(node = %view.id, operator_state = ?operator, "operator state set through another gateway");
                    }
                }
                None if view.state_name == "down" => {
                    let removed = self.write().remove(&view.id);
                    if removed {
                        self.inner.pool.forget_node(view.id);
                        tracing::info!(node = %view.id, "node removed through another gateway");
                    }
                }
                // Unchanged; or a node that reports to this gateway whose record is not stored
                // yet (a persist failed): it stays.
                _ => {}
            }
        }
    }

    /// Says goodbye: gives the leases up and removes this gateway's liveness, so the others
    /// take over at once instead of after `gateway_timeout`.
    pub(super) async fn leave(&self) {
        let Some(coord) = self.meta().coordination() else {
            return;
        };
        let me = self.gateway_id();
        self.inner.cleanup_lease.release(coord, me).await;
        self.inner.rebalance_lease.release(coord, me).await;
        if let Err(e) = coord.forget_gateway(me).await {
            tracing::warn!(error = %e, "cannot remove this gateway's liveness; it lapses by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_and_syncs_come_often_enough() {
        assert_eq!(
            beat_interval(Duration::from_secs(30)),
            Duration::from_secs(5)
        );
        assert_eq!(
            beat_interval(Duration::from_millis(60)),
            Duration::from_millis(100)
        );
        assert_eq!(
            sync_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sync_interval(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_relayed_report_reads_back_as_the_node_sent_it() {
        let report = ValidReport {
            id: Uuid::from_u128(5),
            name: "node-5".into(),
            shard_addrs: vec!["127.0.0.1:7000".parse().expect("addr")],
            capacity: 10,
            used: 3,
            chunk_count: 2,
            in_flight: 1,
            draining: true,
            read_only: false,
            software: "sixfold-node 0.1".into(),
            cluster_id: Some(Uuid::from_u128(77)),
        };
        let r = relayed(&report, ReportKind::Heartbeat, Uuid::from_u128(1), 5, 9);
        assert_eq!(as_report(&r), report);
        assert_eq!(r.kind, coordination::ReportKind::Heartbeat);
        assert_eq!((r.registered_unix_ms, r.received_unix_ms), (5, 9));
    }
}
