//! What several gateways over one shared metadata store tell each other (issue 16): each
//! gateway's liveness, the leases that let one gateway at a time run a background job, and the
//! node reports each gateway received, relayed so that a heartbeat to any gateway keeps a node
//! up for all of them.
//!
//! Only a store that several gateway processes can open at once has this side
//! ([`super::MetaStore::coordination`]): PostgreSQL. redb's file is locked by one process, so
//! a redb gateway is alone by construction and needs none of it.
//!
//! The records are versioned codec bytes like every other record. The decisions (is a lease
//! free, has a gateway lapsed, is a relayed report news) are pure functions here, tested in
//! milliseconds; the backends only store and fetch.

use std::net::SocketAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{MetaError, NodeRecord};

/// One gateway process as the others see it, refreshed while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayBeat {
    /// The gateway's id, kept in its data dir (the same over restarts).
    pub id: Uuid,
    /// What logs and `/gateways`-like views call it: its public listen address, by default.
    pub name: String,
    /// When the running process started (Unix ms): sessions it recorded before that were left
    /// by an earlier process of the same gateway.
    pub started_unix_ms: u64,
    /// The last time the gateway said it was alive (Unix ms, its own clock).
    pub seen_unix_ms: u64,
}

/// Whether `beat` has lapsed at `now_ms`: its gateway said nothing for `timeout_ms`.
pub fn lapsed(beat: &GatewayBeat, now_ms: u64, timeout_ms: u64) -> bool {
    beat.seen_unix_ms.saturating_add(timeout_ms) <= now_ms
}

/// A claim on a background job, good until `expires_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: Uuid,
    pub expires_unix_ms: u64,
}

/// Whether `holder` may take (or keep) a lease found as `current` at `now_ms`: it is free, it
/// ran out, or it is the holder's already.
pub fn may_claim(current: Option<&Lease>, holder: Uuid, now_ms: u64) -> bool {
    current.is_none_or(|l| l.holder == holder || l.expires_unix_ms <= now_ms)
}

/// A registration or a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Register,
    Heartbeat,
}

/// A node's last report as the gateway that received it passed it on. The figures are the
/// node's own; the certificate check was the receiving gateway's, and every other gateway
/// checks the node again over QUIC before it counts it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedReport {
    pub node_id: Uuid,
    /// The gateway that received it.
    pub via: Uuid,
    pub kind: ReportKind,
    /// When the node process last registered (Unix ms, receiving gateway's clock): a change
    /// means the node restarted.
    pub registered_unix_ms: u64,
    /// When the report arrived (Unix ms, receiving gateway's clock).
    pub received_unix_ms: u64,
    pub name: String,
    pub shard_addrs: Vec<SocketAddr>,
    pub capacity: u64,
    pub used: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
    pub draining: bool,
    pub read_only: bool,
    pub software: String,
    pub cluster_id: Option<Uuid>,
}

/// What a gateway does with a relayed report it reads, given the last one it applied for the
/// same node (`None`: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayVerdict {
    /// Already applied, or older than the node's silence limit: nothing to do.
    Stale,
    /// A newer heartbeat: the node is alive.
    Heartbeat,
    /// The node process restarted since the last report applied: reconnect and verify again.
    Restarted,
}

/// The rule for a relayed report read at `now_ms` by gateway `me`. Reports this gateway relayed
/// itself were applied when they arrived. A report as old as `down_after_ms` says nothing about
/// the node now.
pub fn judge_relayed(
    report: &RelayedReport,
    last_applied: Option<&RelayedReport>,
    me: Uuid,
    now_ms: u64,
    down_after_ms: u64,
) -> RelayVerdict {
    if report.via == me || report.received_unix_ms.saturating_add(down_after_ms) <= now_ms {
        return RelayVerdict::Stale;
    }
    match last_applied {
        None => RelayVerdict::Restarted,
        Some(last) if last.registered_unix_ms != report.registered_unix_ms => {
            RelayVerdict::Restarted
        }
        Some(last) if report.received_unix_ms > last.received_unix_ms => RelayVerdict::Heartbeat,
        Some(_) => RelayVerdict::Stale,
    }
}

/// The shared side of a metadata store several gateways open at once.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Records (replaces) this gateway's liveness.
    async fn beat(&self, beat: &GatewayBeat) -> Result<(), MetaError>;
    /// Every gateway that ever beat, lapsed or not.
    async fn gateways(&self) -> Result<Vec<GatewayBeat>, MetaError>;
    /// Forgets a gateway's liveness (it stopped cleanly).
    async fn forget_gateway(&self, id: Uuid) -> Result<(), MetaError>;
    /// Takes or renews lease `job` for `holder` until `now_ms + ttl_ms`, in one transaction,
    /// if [`may_claim`] allows; returns whether `holder` holds it now.
    async fn claim_lease(
        &self,
        job: &str,
        holder: Uuid,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, MetaError>;
    /// Gives lease `job` up if `holder` holds it.
    async fn release_lease(&self, job: &str, holder: Uuid) -> Result<(), MetaError>;
    /// The lease `job` as stored, if any.
    async fn lease(&self, job: &str) -> Result<Option<Lease>, MetaError>;
    /// Records (replaces) a node's latest report.
    async fn relay_report(&self, report: &RelayedReport) -> Result<(), MetaError>;
    /// Every node's latest relayed report.
    async fn relayed_reports(&self) -> Result<Vec<RelayedReport>, MetaError>;
    /// Drops a node's relayed report (the node was removed).
    async fn forget_report(&self, node_id: Uuid) -> Result<(), MetaError>;
    /// Stores a node's figures from a report (as `upsert_node`) but keeps the stored
    /// `operator_state`, which an operator may have changed through another gateway: one
    /// transaction.
    async fn save_node_figures(&self, node: &NodeRecord) -> Result<(), MetaError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(via: u128, registered: u64, received: u64) -> RelayedReport {
        RelayedReport {
            node_id: Uuid::from_u128(9),
            via: Uuid::from_u128(via),
            kind: ReportKind::Heartbeat,
            registered_unix_ms: registered,
            received_unix_ms: received,
            name: "n".into(),
            shard_addrs: vec![],
            capacity: 1,
            used: 0,
            chunk_count: 0,
            in_flight: 0,
            draining: false,
            read_only: false,
            software: "s".into(),
            cluster_id: None,
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_or_run_out_and_kept_by_its_holder() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert!(may_claim(None, a, 10));
        let held = Lease {
            holder: a,
            expires_unix_ms: 100,
        };
        assert!(may_claim(Some(&held), a, 50), "the holder renews");
        assert!(!may_claim(Some(&held), b, 99), "another waits");
        assert!(may_claim(Some(&held), b, 100), "until it runs out");
    }

    #[test]
    fn a_gateway_lapses_after_its_timeout_of_silence() {
        let beat = GatewayBeat {
            id: Uuid::from_u128(1),
            name: "a".into(),
            started_unix_ms: 0,
            seen_unix_ms: 1_000,
        };
        assert!(!lapsed(&beat, 1_999, 1_000));
        assert!(lapsed(&beat, 2_000, 1_000));
    }

    #[test]
    fn relayed_reports_count_once_when_fresh_and_not_our_own() {
        let me = 1;
        let other = 2;
        let down_after = 1_000;
        let first = report(other, 10, 500);
        // Our own relays were applied when they arrived.
        assert_eq!(
            judge_relayed(
                &report(me, 10, 500),
                None,
                Uuid::from_u128(me),
                600,
                down_after
            ),
            RelayVerdict::Stale
        );
        // The first report seen of a node: it (re)joins.
        assert_eq!(
            judge_relayed(&first, None, Uuid::from_u128(me), 600, down_after),
            RelayVerdict::Restarted
        );
        // The same report read again changes nothing.
        assert_eq!(
            judge_relayed(&first, Some(&first), Uuid::from_u128(me), 700, down_after),
            RelayVerdict::Stale
        );
        let later = report(other, 10, 900);
        assert_eq!(
            judge_relayed(&later, Some(&first), Uuid::from_u128(me), 950, down_after),
            RelayVerdict::Heartbeat
        );
        // Too old to say the node is alive now.
        assert_eq!(
            judge_relayed(&later, Some(&first), Uuid::from_u128(me), 1_900, down_after),
            RelayVerdict::Stale
        );
        // A new registration time: the node restarted.
        assert_eq!(
            judge_relayed(
                &report(other, 20, 900),
                Some(&first),
                Uuid::from_u128(me),
                950,
                down_after
            ),
            RelayVerdict::Restarted
        );
    }
}
