//! The gateway's live view of the storage nodes: what each node last reported, whether it is
//! up, and what the gateway holds on it for uploads in flight (reserved bytes and in-flight
//! parts, see [`super::in_flight`]).
//!
//! Pure state: every method takes the current time as arguments, so state transitions are
//! tested with a fake clock. [`super::Cluster`] keeps it behind a lock and does the I/O
//! (persisting records, logging) around it.
//!
//! Free space for placement is `capacity - used - held`: `used` is the node's last report,
//! `held` what the gateway knows the report does not include yet: parts reserved and not
//! settled, and parts acknowledged since the last two reports (see [`Held`]). A part being
//! written can be counted twice meanwhile (the node reports preallocated chunks as used),
//! which errs on the side of refusing, never of overcommitting.
//!
//! A report proves only that a holder of *some* node certificate spoke for the node id in its
//! certificate. A node is `joining` (no new parts, not counted up) until the gateway has
//! reached it over QUIC at the reported addresses and found that node's certificate there
//! ([`Registry::mark_verified`]); it is verified again after it restarts, moves or comes back
//! from down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Serialize;
use sixfold_wire::ChunkId;
use uuid::Uuid;

use super::error::NodeError;
use super::in_flight::{Hold, Settle};
use super::shard::shard_addr;
use crate::meta::{NodeRecord, NodeState, OperatorState, effective_state};
use crate::placement::{Candidate, PlacementError, PlacementOptions, place};
use crate::split::PartRange;

/// A node report that passed validation (see [`super::registration::parse_report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidReport {
    pub id: Uuid,
    pub name: String,
    pub shard_addrs: Vec<SocketAddr>,
    pub capacity: u64,
    pub used: u64,
    pub chunk_count: u64,
    pub in_flight: u32,
    pub draining: bool,
    /// The node's disk is full: it serves reads and deletes, takes no new parts.
    pub read_only: bool,
    pub software: String,
    /// The id of the cluster the node joined, as kept in its data dir (report version 3).
    pub cluster_id: Option<Uuid>,
}

/// Which endpoint a report arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Sent once when the node process starts.
    Register,
    /// Sent periodically.
    Heartbeat,
}

/// The timing rules of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Silence after which a node is down.
    pub down_after: Duration,
    /// Longest a node's changing figures stay unpersisted.
    pub persist_interval: Duration,
    /// Delay between a node (re)joining and its first orphan scan.
    pub orphan_scan_delay: Duration,
}

/// What the registry knows of one node.
#[derive(Debug)]
struct NodeEntry {
    record: NodeRecord,
    /// The state the node itself last reported (up, stopping, disk full); `record.state` is
    /// this with the operator's state applied ([`effective_state`]).
    reported: NodeState,
    software: String,
    /// When the last report arrived (`None` for nodes loaded from metadata and not yet heard).
    last_seen: Option<Instant>,
    /// When the record was last handed out for persisting.
    last_persist: Option<Instant>,
    /// What uploads in flight hold on the node.
    held: Held,
    /// Bumped whenever the node (re)starts or its addresses change: pooled connections of an
    /// older generation are stale.
    generation: u64,
    /// When the node's next orphan scan is due.
    next_orphan_scan: Option<Instant>,
    /// The generation at which the gateway last verified the node over QUIC; the node is
    /// verified while this equals `generation` (and it has not been down since).
    verified: Option<u64>,
    /// When a verification probe was handed out and has not reported back.
    probing: Option<Instant>,
    /// Probes failed in a row since the node last (re)started or moved, and the earliest time
    /// the next may go out: a node that keeps failing is probed (and warned about) with
    /// exponential backoff, not on every heartbeat.
    probe_failures: u32,
    probe_after: Option<Instant>,
    /// New addresses a verified node reported, held until a probe finds the node's certificate
    /// there: a report cannot move a node to addresses where it is not.
    pending: Option<PendingMove>,
}

/// Reported addresses waiting for verification, with the generation they will get.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingMove {
    addrs: Vec<SocketAddr>,
    generation: u64,
}

impl NodeEntry {
    /// Verified at its current addresses, and not reported elsewhere meanwhile.
    fn is_verified(&self) -> bool {
        self.pending.is_none() && self.verified == Some(self.generation)
    }

    /// Up as placement and `/health` count it: reported up and verified.
    fn is_up(&self) -> bool {
        self.record.state == NodeState::Up && self.is_verified()
    }
}

/// A verification probe is handed out again after this long without an answer (the probe
/// itself is bounded by the request timeout; this only guards against a lost result).
const PROBE_RETRY: Duration = Duration::from_secs(30);
/// Wait after the first failed probe; doubles with every further failure up to
/// [`PROBE_BACKOFF_MAX`].
const PROBE_BACKOFF: Duration = Duration::from_millis(500);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the gateway counts on a node beyond the node's last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Held {
    /// Bytes of parts placed and neither acknowledged nor released.
    reserved: u64,
    /// How many such parts: the parts in flight (`node_max_parts`, two choices).
    parts: u32,
    /// Bytes acknowledged since the last report arrived.
    acked_recent: u64,
    /// Bytes acknowledged between the last two reports: the last one may have been built
    /// before those acks. The node refreshes its figures before it acknowledges, and sends
    /// one report at a time, so the next report is built after them and these can go then.
    acked_older: u64,
}

impl Held {
    fn bytes(&self) -> u64 {
        self.reserved
            .saturating_add(self.acked_recent)
            .saturating_add(self.acked_older)
    }

    fn report_arrived(&mut self) {
        self.acked_older = self.acked_recent;
        self.acked_recent = 0;
    }
}

/// The result of applying one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOutcome {
    /// `(before, after)` when the node's state changed; `before` is `None` for a new node.
    pub transition: Option<(Option<NodeState>, NodeState)>,
    /// The record to store durably, when something worth persisting changed.
    pub persist: Option<NodeRecord>,
    /// Connections to this node opened before now must not be reused (it restarted or moved).
    pub reconnect: bool,
    /// The node is not verified: probe it over QUIC and report back with
    /// [`Registry::mark_verified`] (with this generation) or [`Registry::probe_failed`].
    pub probe: Option<u64>,
}

/// A node's state changed without a report (it went silent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: Uuid,
    pub name: String,
    pub from: NodeState,
    pub to: NodeState,
    pub record: NodeRecord,
}

/// Where a request about one chunk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub addr: SocketAddr,
    pub generation: u64,
}

/// A node as shown by `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub id: Uuid,
    pub name: String,
    pub shard_addrs: Vec<SocketAddr>,
    /// The reported state (`up`, `down`, `draining`, `read_only`); not serialized, see
    /// `state_name`.
    #[serde(skip)]
    pub state: NodeState,
    /// `up`, `joining` (reported up, not yet verified over QUIC), `down`, `draining` or
    /// `read_only`.
    #[serde(rename = "state")]
    pub state_name: &'static str,
    /// The state an operator set (`read_only`, `draining`), if any: it outlasts restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_state: Option<OperatorState>,
    pub capacity: u64,
    pub used: u64,
    pub free: u64,
    pub chunk_count: u64,
    /// Parts the gateway is writing to the node right now.
    pub parts_in_flight: u32,
    /// Bytes the gateway counts beyond the node's `used`: parts in flight, and parts
    /// acknowledged since the node last reported.
    pub reserved: u64,
    /// Requests in progress as the node last reported them.
    pub node_in_flight: u32,
    pub software: String,
    pub registered_unix_ms: u64,
    /// `None` if the node never reported.
    pub last_heartbeat_unix_ms: Option<u64>,
    /// The same instant, RFC 3339 in UTC.
    pub last_heartbeat: Option<String>,
}

/// The live node table.
#[derive(Debug)]
pub struct Registry {
    timing: Timing,
    nodes: HashMap<Uuid, NodeEntry>,
    next_generation: u64,
}

impl Registry {
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            nodes: HashMap::new(),
            next_generation: 1,
        }
    }

    /// Adds nodes known from metadata. They stay down until they report: a record says where a
    /// node was, not that it is alive.
    pub fn load(&mut self, records: impl IntoIterator<Item = NodeRecord>) {
        for mut record in records {
            record.state = NodeState::Down;
            let generation = self.bump();
            self.nodes.insert(
                record.id,
                NodeEntry {
                    record,
                    reported: NodeState::Down,
                    software: String::new(),
                    last_seen: None,
                    last_persist: None,
                    held: Held::default(),
                    generation,
                    next_orphan_scan: None,
                    verified: None,
                    probing: None,
                    probe_failures: 0,
                    probe_after: None,
                    pending: None,
                },
            );
        }
    }

    fn bump(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    /// Applies a registration or heartbeat received at `now` (`now_ms` is the same instant in
    /// Unix milliseconds). A heartbeat from a node the registry does not know (the gateway lost
    /// its metadata, or the registration was missed) is accepted like a registration.
    pub fn apply_report(
        &mut self,
        report: &ValidReport,
        kind: ReportKind,
        now: Instant,
        now_ms: u64,
    ) -> ReportOutcome {
        let reported_state = if report.draining {
            NodeState::Draining
        } else if report.read_only {
            NodeState::ReadOnly
        } else {
            NodeState::Up
        };
        let timing = self.timing;
        let generation = self.bump();
        let Some(entry) = self.nodes.get_mut(&report.id) else {
            let record = NodeRecord {
                id: report.id,
                name: report.name.clone(),
                shard_addrs: report.shard_addrs.clone(),
                capacity: report.capacity,
                used: report.used,
                chunk_count: report.chunk_count,
                in_flight: report.in_flight,
                state: reported_state,
                registered_unix_ms: now_ms,
                last_heartbeat_unix_ms: now_ms,
                operator_state: None,
            };
            self.nodes.insert(
                report.id,
                NodeEntry {
                    record: record.clone(),
                    reported: reported_state,
                    software: report.software.clone(),
                    last_seen: Some(now),
                    last_persist: Some(now),
                    held: Held::default(),
                    generation,
                    next_orphan_scan: Some(now + timing.orphan_scan_delay),
                    verified: None,
                    probing: Some(now),
                    probe_failures: 0,
                    probe_after: None,
                    pending: None,
                },
            );
            return ReportOutcome {
                transition: Some((None, reported_state)),
                persist: Some(record),
                reconnect: true,
                probe: Some(generation),
            };
        };

        let before = entry.record.state;
        entry.reported = reported_state;
        let state = effective_state(reported_state, entry.record.operator_state);
        let restarted = kind == ReportKind::Register;
        let reported_move = entry.record.shard_addrs != report.shard_addrs;
        // A verified node that reports other addresses keeps its known ones until the new
        // ones are verified (see `PendingMove`); any other node takes them at once.
        let hold_move =
            reported_move && before != NodeState::Down && entry.verified == Some(entry.generation);
        let moved = reported_move && !hold_move;
        if hold_move {
            if entry
                .pending
                .as_ref()
                .is_none_or(|p| p.addrs != report.shard_addrs)
            {
                entry.pending = Some(PendingMove {
                    addrs: report.shard_addrs.clone(),
                    generation,
                });
                entry.probing = None;
            }
        } else if !reported_move {
            // The node confirms the addresses it is verified at.
            entry.pending = None;
        }
        let reshaped =
            moved || entry.record.capacity != report.capacity || entry.record.name != report.name;
        let rec = &mut entry.record;
        rec.name.clone_from(&report.name);
        if moved {
            rec.shard_addrs.clone_from(&report.shard_addrs);
        }
        rec.capacity = report.capacity;
        rec.used = report.used;
        rec.chunk_count = report.chunk_count;
        rec.in_flight = report.in_flight;
        rec.state = state;
        rec.last_heartbeat_unix_ms = now_ms;
        if restarted {
            rec.registered_unix_ms = now_ms;
        }
        if entry.software != report.software {
            entry.software.clone_from(&report.software);
        }
        entry.last_seen = Some(now);
        entry.held.report_arrived();

        let reconnect = (restarted && !hold_move) || moved;
        if reconnect {
            entry.generation = generation;
            // A new process or address: probe it at once, whatever failed before.
            entry.probing = None;
            entry.probe_failures = 0;
            entry.probe_after = None;
        }
        if before == NodeState::Down {
            // Whoever answers at its addresses now must prove again that it is this node.
            entry.verified = None;
        }
        let probe_stale = entry
            .probing
            .is_none_or(|at| now.saturating_duration_since(at) >= PROBE_RETRY);
        let backed_off = entry.probe_after.is_none_or(|at| now >= at);
        let probe = (!entry.is_verified() && probe_stale && backed_off).then(|| {
            entry.probing = Some(now);
            entry
                .pending
                .as_ref()
                .map_or(entry.generation, |p| p.generation)
        });
        // A node that (re)joins may have kept chunks the gateway has since forgotten.
        if restarted || before == NodeState::Down {
            entry.next_orphan_scan = Some(now + timing.orphan_scan_delay);
        }

        let stale = entry
            .last_persist
            .is_none_or(|at| now.saturating_duration_since(at) >= timing.persist_interval);
        let persist = (restarted || reshaped || before != state || stale).then(|| {
            entry.last_persist = Some(now);
            entry.record.clone()
        });
        ReportOutcome {
            transition: (before != state).then_some((Some(before), state)),
            persist,
            reconnect,
            probe,
        }
    }

    /// Sets (or with `None` clears) the operator's state of node `id`. Returns the record to
    /// persist and the change of the node's state, if any; `None` for an unknown node. A down
    /// node stays down; the state applies once it reports again.
    pub fn set_operator_state(
        &mut self,
        id: &Uuid,
        operator: Option<OperatorState>,
    ) -> Option<(NodeRecord, Option<(NodeState, NodeState)>)> {
        let entry = self.nodes.get_mut(id)?;
        entry.record.operator_state = operator;
        let before = entry.record.state;
        // Down is detected, not reported: it ends with the node's next report.
        let after = match before {
            NodeState::Down => NodeState::Down,
            _ => effective_state(entry.reported, operator),
        };
        entry.record.state = after;
        Some((
            entry.record.clone(),
            (before != after).then_some((before, after)),
        ))
    }

    /// A probe of generation `generation` reached the node and found its certificate. Returns
    /// true when this made the node verified (it was not before); a probe of an older
    /// generation (the node restarted or moved meanwhile) changes nothing.
    pub fn mark_verified(&mut self, id: &Uuid, generation: u64) -> bool {
        let Some(entry) = self.nodes.get_mut(id) else {
            return false;
        };
        if entry.record.state == NodeState::Down {
            return false;
        }
        if let Some(pending) = &entry.pending {
            if pending.generation != generation {
                return false;
            }
            // The node is at its new addresses: take them (persisted with the next report).
            let pending = entry.pending.take().map(|p| p.addrs).unwrap_or_default();
            entry.record.shard_addrs = pending;
            entry.generation = generation;
            entry.last_persist = None;
        }
        if entry.generation != generation {
            return false;
        }
        entry.probing = None;
        entry.probe_failures = 0;
        entry.probe_after = None;
        let newly = !entry.is_verified();
        entry.verified = Some(generation);
        newly
    }

    /// A probe of `generation` failed at `now`: a report hands out another after a backoff
    /// that doubles with each failure in a row. Returns that backoff (for the log line); a
    /// probe of an older generation changes nothing.
    pub fn probe_failed(&mut self, id: &Uuid, generation: u64, now: Instant) -> Duration {
        let Some(entry) = self.nodes.get_mut(id) else {
            return Duration::ZERO;
        };
        match &entry.pending {
            // The reported addresses are not this node's: forget them, keep the known ones.
            Some(p) if p.generation == generation => entry.pending = None,
            Some(_) => return Duration::ZERO,
            None if entry.generation != generation => return Duration::ZERO,
            None => {}
        }
        entry.probing = None;
        let backoff = PROBE_BACKOFF
            .saturating_mul(1u32 << entry.probe_failures.min(16))
            .min(PROBE_BACKOFF_MAX);
        entry.probe_failures = entry.probe_failures.saturating_add(1);
        entry.probe_after = Some(now + backoff);
        backoff
    }

    /// Marks down every node that has been silent for `down_after` at `now`. Nodes loaded from
    /// metadata and never heard from are down already.
    pub fn sweep(&mut self, now: Instant) -> Vec<Transition> {
        let down_after = self.timing.down_after;
        let mut changed = Vec::new();
        for entry in self.nodes.values_mut() {
            if entry.record.state == NodeState::Down {
                continue;
            }
            let silent = entry
                .last_seen
                .is_none_or(|seen| now.saturating_duration_since(seen) >= down_after);
            if silent {
                let from = entry.record.state;
                entry.record.state = NodeState::Down;
                entry.last_persist = Some(now);
                changed.push(Transition {
                    id: entry.record.id,
                    name: entry.record.name.clone(),
                    from,
                    to: NodeState::Down,
                    record: entry.record.clone(),
                });
            }
        }
        changed
    }

    /// The node's state as `/nodes` shows it and the chunk count of its last report, for
    /// [`super::Cluster::remove_node`].
    pub fn removal_facts(&self, id: &Uuid) -> Option<(&'static str, u64)> {
        self.nodes
            .get(id)
            .map(|e| (state_name(e), e.record.chunk_count))
    }

    /// Forgets a node (after its record was removed from the metadata).
    pub fn remove(&mut self, id: &Uuid) -> bool {
        self.nodes.remove(id).is_some()
    }

    /// Lets a failed persist be retried with the next report.
    pub fn persist_failed(&mut self, id: &Uuid) {
        if let Some(entry) = self.nodes.get_mut(id) {
            entry.last_persist = None;
        }
    }

    /// Records of every node, for a final persist at shutdown.
    pub fn records(&self) -> Vec<NodeRecord> {
        self.nodes.values().map(|e| e.record.clone()).collect()
    }

    pub fn state(&self, id: &Uuid) -> Option<NodeState> {
        self.nodes.get(id).map(|e| e.record.state)
    }

    /// When node `id`'s process last registered (Unix ms), if known.
    pub fn registered_unix_ms(&self, id: &Uuid) -> Option<u64> {
        self.nodes.get(id).map(|e| e.record.registered_unix_ms)
    }

    /// The shard address that serves `chunk_id` on node `id`, if the node can serve requests.
    pub fn route(&self, id: &Uuid, chunk_id: &ChunkId) -> Result<Route, NodeError> {
        let entry = self.reachable(id)?;
        let addr = shard_addr(&entry.record.shard_addrs, chunk_id).ok_or_else(|| {
            NodeError::Unavailable(format!("node {id} reported no shard addresses"))
        })?;
        Ok(Route {
            addr,
            generation: entry.generation,
        })
    }

    /// Where a verification probe of `generation` goes: the pending addresses it was handed
    /// out for, or the known ones; `None` for a stale generation.
    pub fn probe_routes(&self, id: &Uuid, generation: u64) -> Option<Vec<Route>> {
        let entry = self.nodes.get(id)?;
        let addrs = match &entry.pending {
            Some(p) if p.generation == generation => &p.addrs,
            _ if entry.generation == generation => &entry.record.shard_addrs,
            _ => return None,
        };
        Some(
            addrs
                .iter()
                .map(|&addr| Route { addr, generation })
                .collect(),
        )
    }

    /// Every shard address of node `id` (for per-shard operations such as `List`).
    pub fn shard_routes(&self, id: &Uuid) -> Result<Vec<Route>, NodeError> {
        let entry = self.reachable(id)?;
        Ok(entry
            .record
            .shard_addrs
            .iter()
            .map(|&addr| Route {
                addr,
                generation: entry.generation,
            })
            .collect())
    }

    fn reachable(&self, id: &Uuid) -> Result<&NodeEntry, NodeError> {
        let entry = self.nodes.get(id).ok_or(NodeError::UnknownNode)?;
        if entry.record.state == NodeState::Down {
            return Err(NodeError::Unavailable(format!(
                "node {} ({id}) is down",
                entry.record.name
            )));
        }
        Ok(entry)
    }

    /// Places the parts of `file_id` and holds each part's bytes and one in-flight slot on its
    /// node. All or nothing, in one call under the caller's lock: an upload never holds part
    /// of what it needs while waiting for the rest, so two uploads can never each hold what
    /// the other lacks (no hold-and-wait, hence no deadlock between them). A refused upload
    /// holds nothing.
    pub fn reserve(
        &mut self,
        file_id: &Uuid,
        parts: &[PartRange],
        options: PlacementOptions,
    ) -> Result<Vec<Hold>, PlacementError> {
        let nodes = place(file_id, parts, &self.candidates(), options)?;
        let holds: Vec<Hold> = nodes
            .into_iter()
            .zip(parts)
            .map(|(node, part)| Hold {
                node,
                len: part.len,
            })
            .collect();
        for hold in &holds {
            if let Some(entry) = self.nodes.get_mut(&hold.node) {
                entry.held.reserved = entry.held.reserved.saturating_add(hold.len);
                entry.held.parts = entry.held.parts.saturating_add(1);
            }
        }
        Ok(holds)
    }

    /// Ends a hold: its slot is free; acknowledged bytes stay counted until a report built
    /// after the ack arrives, released bytes are free at once.
    pub fn settle(&mut self, hold: Hold, how: Settle) {
        let Some(entry) = self.nodes.get_mut(&hold.node) else {
            return;
        };
        let held = &mut entry.held;
        held.reserved = held.reserved.saturating_sub(hold.len);
        held.parts = held.parts.saturating_sub(1);
        if how == Settle::Acknowledged {
            held.acked_recent = held.acked_recent.saturating_add(hold.len);
        }
    }

    /// Placement candidates: every known node, eligible when up and addressable, its free
    /// space net of what uploads hold on it.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .nodes
            .values()
            .map(|e| Candidate {
                id: e.record.id,
                capacity: e.record.capacity,
                used: e.record.used.saturating_add(e.held.bytes()),
                in_flight: e.held.parts,
                eligible: e.is_up() && !e.record.shard_addrs.is_empty(),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// Nodes up and verified.
    pub fn up_count(&self) -> usize {
        self.nodes.values().filter(|e| e.is_up()).count()
    }

    /// Nodes that answer requests (up or draining), for the cleanup task.
    pub fn serving_nodes(&self) -> Vec<Uuid> {
        let mut out: Vec<Uuid> = self
            .nodes
            .values()
            .filter(|e| e.record.state != NodeState::Down)
            .map(|e| e.record.id)
            .collect();
        out.sort();
        out
    }

    /// Serving nodes whose orphan scan is due at `now`; each is rescheduled `interval` later.
    pub fn take_due_orphan_scans(&mut self, now: Instant, interval: Duration) -> Vec<Uuid> {
        let mut due = Vec::new();
        for entry in self.nodes.values_mut() {
            if entry.record.state == NodeState::Down {
                continue;
            }
            let next = *entry.next_orphan_scan.get_or_insert(now + interval);
            if next <= now {
                entry.next_orphan_scan = Some(now + interval);
                due.push(entry.record.id);
            }
        }
        due.sort();
        due
    }

    /// Snapshot for `GET /nodes`, ordered by name then id.
    pub fn views(&self) -> Vec<NodeView> {
        let mut out: Vec<NodeView> = self.nodes.values().map(view).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }
}

fn view(e: &NodeEntry) -> NodeView {
    let r = &e.record;
    let last_ms = (r.last_heartbeat_unix_ms > 0).then_some(r.last_heartbeat_unix_ms);
    NodeView {
        id: r.id,
        name: r.name.clone(),
        shard_addrs: r.shard_addrs.clone(),
        state: r.state,
        state_name: state_name(e),
        operator_state: r.operator_state,
        capacity: r.capacity,
        used: r.used,
        free: r.capacity.saturating_sub(r.used),
        chunk_count: r.chunk_count,
        parts_in_flight: e.held.parts,
        reserved: e.held.bytes(),
        node_in_flight: r.in_flight,
        software: e.software.clone(),
        registered_unix_ms: r.registered_unix_ms,
        last_heartbeat_unix_ms: last_ms,
        last_heartbeat: last_ms.map(|ms| {
            let at = UNIX_EPOCH + Duration::from_millis(ms);
            humantime::format_rfc3339_millis(at).to_string()
        }),
    }
}

fn state_name(e: &NodeEntry) -> &'static str {
    match e.record.state {
        NodeState::Up if !e.is_verified() => "joining",
        NodeState::Up => "up",
        NodeState::Down => "down",
        NodeState::Draining => "draining",
        NodeState::ReadOnly => "read_only",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        down_after: Duration::from_secs(6),
        persist_interval: Duration::from_secs(30),
        orphan_scan_delay: Duration::from_secs(30),
    };

    fn report(n: u128) -> ValidReport {
        ValidReport {
            id: Uuid::from_u128(n),
            name: format!("node-{n}"),
            shard_addrs: vec![
                format!("127.0.0.1:{}", 7000 + n * 10).parse().unwrap(),
                format!("127.0.0.1:{}", 7001 + n * 10).parse().unwrap(),
            ],
            capacity: 1000,
            used: 100,
            chunk_count: 3,
            in_flight: 0,
            draining: false,
            read_only: false,
            software: "sixfold-node 0.1.0".into(),
            cluster_id: None,
        }
    }

    /// Applies a report and answers its probe, if any, as a successful verification.
    fn apply(
        reg: &mut Registry,
        report: &ValidReport,
        kind: ReportKind,
        now: Instant,
        now_ms: u64,
    ) -> ReportOutcome {
        let out = reg.apply_report(report, kind, now, now_ms);
        if let Some(generation) = out.probe {
            reg.mark_verified(&report.id, generation);
        }
        out
    }

    #[test]
    fn a_registered_node_is_joining_until_verified_and_again_after_a_restart_or_down() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        let id = Uuid::from_u128(1);
        let out = reg.apply_report(&report(1), ReportKind::Register, t0, 0);
        let generation = out.probe.expect("a new node is probed");
        assert_eq!(reg.up_count(), 0);
        assert!(
            !reg.candidates()[0].eligible,
            "no parts before verification"
        );
        assert_eq!(reg.views()[0].state_name, "joining");
        assert!(reg.route(&id, &[0; 16]).is_ok(), "the probe can reach it");
        // One probe at a time: heartbeats meanwhile hand out none.
        let out = reg.apply_report(&report(1), ReportKind::Heartbeat, secs(t0, 1), 0);
        assert_eq!(out.probe, None);
        // A failed probe: heartbeats probe again after a backoff that doubles per failure.
        assert_eq!(
            reg.probe_failed(&id, generation, secs(t0, 1)),
            Duration::from_millis(500)
        );
        let out = reg.apply_report(&report(1), ReportKind::Heartbeat, secs(t0, 2), 0);
        assert_eq!(out.probe, Some(generation));
        assert_eq!(
            reg.probe_failed(&id, generation, secs(t0, 2)),
            Duration::from_secs(1)
        );
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let out = reg.apply_report(&report(1), ReportKind::Heartbeat, at(2_900), 0);
        assert_eq!(out.probe, None, "still backing off");
        let out = reg.apply_report(&report(1), ReportKind::Heartbeat, at(3_000), 0);
        assert_eq!(out.probe, Some(generation));
        assert!(reg.mark_verified(&id, generation));
        assert!(!reg.mark_verified(&id, generation), "reported once");
        assert_eq!(reg.up_count(), 1);
        assert!(reg.candidates()[0].eligible);
        assert_eq!(reg.views()[0].state_name, "up");
        let out = reg.apply_report(&report(1), ReportKind::Heartbeat, secs(t0, 3), 0);
        assert_eq!(out.probe, None, "verified nodes are not probed");
        // New addresses: joining again; a probe of the old generation does not count.
        let mut moved = report(1);
        moved.shard_addrs.pop();
        let out = reg.apply_report(&moved, ReportKind::Heartbeat, secs(t0, 4), 0);
        let moved_generation = out.probe.expect("moved nodes are probed");
        assert_ne!(moved_generation, generation);
        assert!(!reg.mark_verified(&id, generation));
        assert_eq!(reg.views()[0].state_name, "joining");
        assert!(reg.mark_verified(&id, moved_generation));
        // Down and back: verified again before it is up.
        assert_eq!(reg.sweep(secs(t0, 20)).len(), 1);
        assert!(!reg.mark_verified(&id, moved_generation), "not while down");
        let out = reg.apply_report(&moved, ReportKind::Heartbeat, secs(t0, 21), 0);
        assert_eq!(out.probe, Some(moved_generation));
        assert_eq!(reg.up_count(), 0);
        assert!(reg.mark_verified(&id, moved_generation));
        assert_eq!(reg.up_count(), 1);
    }

    #[test]
    fn a_report_cannot_move_a_verified_node_to_addresses_where_it_is_not() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        let id = Uuid::from_u128(1);
        apply(&mut reg, &report(1), ReportKind::Register, t0, 0);
        let known = report(1).shard_addrs;
        let g = reg.route(&id, &[0; 16]).unwrap().generation;
        // A report (heartbeat or registration) naming another node's addresses.
        // (Ten seconds apart: a failed probe backs off the next one.)
        for (at, kind) in [(1, ReportKind::Heartbeat), (11, ReportKind::Register)] {
            let forged = ValidReport {
                shard_addrs: report(2).shard_addrs,
                ..report(1)
            };
            let out = reg.apply_report(&forged, kind, secs(t0, at), 0);
            assert!(!out.reconnect, "{kind:?}");
            let pending = out.probe.expect("probed");
            assert_eq!(reg.views()[0].shard_addrs, known, "{kind:?}");
            assert_eq!(reg.up_count(), 0, "no new parts while unverified");
            // The probe finds another certificate there: the move is dropped, the node is
            // up again where it is known to be.
            reg.probe_failed(&id, pending, secs(t0, at));
            assert_eq!(reg.views()[0].shard_addrs, known);
            assert_eq!(reg.views()[0].state_name, "up");
            assert_eq!(reg.route(&id, &[0; 16]).unwrap().generation, g);
            assert!(
                !reg.mark_verified(&id, pending),
                "a dropped move stays dropped"
            );
            assert_eq!(reg.views()[0].shard_addrs, known);
        }
        // A pending move is also dropped when the node reports its known addresses again.
        let forged = ValidReport {
            shard_addrs: report(2).shard_addrs,
            ..report(1)
        };
        reg.apply_report(&forged, ReportKind::Heartbeat, secs(t0, 60), 0);
        assert_eq!(reg.up_count(), 0);
        reg.apply_report(&report(1), ReportKind::Heartbeat, secs(t0, 61), 0);
        assert_eq!(reg.up_count(), 1);
        assert_eq!(reg.views()[0].shard_addrs, known);
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn registration_brings_a_node_up_and_persists_it() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        let out = apply(&mut reg, &report(1), ReportKind::Register, t0, 1_000);
        assert_eq!(out.transition, Some((None, NodeState::Up)));
        assert!(out.reconnect);
        let rec = out.persist.expect("a new node is persisted");
        assert_eq!(rec.state, NodeState::Up);
        assert_eq!(rec.shard_addrs.len(), 2);
        assert_eq!(reg.up_count(), 1);
        let c = reg.candidates();
        assert_eq!(c.len(), 1);
        assert!(c[0].eligible);
        assert_eq!(c[0].free(), 900);
    }

    #[test]
    fn heartbeats_keep_a_node_up_and_persist_only_changes_or_every_interval() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        apply(&mut reg, &report(1), ReportKind::Register, t0, 0);
        let mut r = report(1);
        r.used = 200;
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 2), 2_000);
        assert_eq!(out.transition, None);
        assert_eq!(out.persist, None, "used space alone is not worth a commit");
        assert!(!out.reconnect);
        assert_eq!(reg.candidates()[0].used, 200);
        // After the persist interval the figures are written even without a change.
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 31), 31_000);
        assert_eq!(out.persist.map(|p| p.used), Some(200));
        // A capacity change is persisted at once.
        r.capacity = 2000;
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 33), 33_000);
        assert_eq!(out.persist.map(|p| p.capacity), Some(2000));
        assert!(!out.reconnect);
        // New addresses: held until the node is verified there, then taken and persisted
        // with the next report.
        r.shard_addrs.pop();
        let out = reg.apply_report(&r, ReportKind::Heartbeat, secs(t0, 35), 35_000);
        assert!(!out.reconnect);
        let g = out.probe.expect("the new addresses are probed");
        assert_eq!(
            reg.views()[0].shard_addrs.len(),
            2,
            "not taken before verification"
        );
        assert_eq!(reg.views()[0].state_name, "joining");
        assert_eq!(
            reg.probe_routes(&r.id, g).unwrap()[0].addr,
            r.shard_addrs[0]
        );
        assert!(reg.mark_verified(&r.id, g));
        assert_eq!(reg.views()[0].shard_addrs, r.shard_addrs);
        assert_eq!(reg.route(&r.id, &[0; 16]).unwrap().generation, g);
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 36), 36_000);
        assert_eq!(
            out.persist.map(|p| p.shard_addrs),
            Some(r.shard_addrs.clone())
        );
        for s in [36, 40] {
            assert!(reg.sweep(secs(t0, s)).is_empty());
        }
    }

    #[test]
    fn silence_marks_a_node_down_and_a_heartbeat_brings_it_back() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        apply(&mut reg, &report(1), ReportKind::Register, t0, 0);
        apply(&mut reg, &report(2), ReportKind::Register, t0, 0);
        apply(
            &mut reg,
            &report(2),
            ReportKind::Heartbeat,
            secs(t0, 4),
            4_000,
        );
        assert!(reg.sweep(secs(t0, 5)).is_empty());
        let down = reg.sweep(secs(t0, 6));
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].id, Uuid::from_u128(1));
        assert_eq!((down[0].from, down[0].to), (NodeState::Up, NodeState::Down));
        assert_eq!(down[0].record.state, NodeState::Down);
        assert!(reg.sweep(secs(t0, 7)).is_empty(), "reported once");
        assert_eq!(reg.up_count(), 1);
        let cands = reg.candidates();
        assert!(
            !cands
                .iter()
                .find(|c| c.id == Uuid::from_u128(1))
                .unwrap()
                .eligible
        );
        assert!(matches!(
            reg.route(&Uuid::from_u128(1), &[0; 16]),
            Err(NodeError::Unavailable(_))
        ));
        let out = apply(
            &mut reg,
            &report(1),
            ReportKind::Heartbeat,
            secs(t0, 8),
            8_000,
        );
        assert_eq!(out.transition, Some((Some(NodeState::Down), NodeState::Up)));
        assert!(out.persist.is_some());
        assert_eq!(reg.up_count(), 2);
    }

    #[test]
    fn draining_nodes_serve_but_take_no_new_parts() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        apply(&mut reg, &report(1), ReportKind::Register, t0, 0);
        let mut r = report(1);
        r.draining = true;
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 1), 1_000);
        assert_eq!(
            out.transition,
            Some((Some(NodeState::Up), NodeState::Draining))
        );
        assert!(!reg.candidates()[0].eligible);
        assert_eq!(reg.up_count(), 0);
        assert!(reg.route(&r.id, &[1; 16]).is_ok());
        assert_eq!(reg.serving_nodes(), vec![r.id]);
        assert_eq!(
            reg.sweep(secs(t0, 7)).len(),
            1,
            "a silent draining node goes down"
        );
    }

    #[test]
    fn loaded_nodes_are_down_until_they_report() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        let rec = NodeRecord {
            id: Uuid::from_u128(9),
            name: "old".into(),
            shard_addrs: report(9).shard_addrs,
            capacity: 10,
            used: 1,
            chunk_count: 1,
            in_flight: 0,
            state: NodeState::Up,
            registered_unix_ms: 5,
            last_heartbeat_unix_ms: 7,
            operator_state: None,
        };
        reg.load([rec.clone()]);
        assert_eq!(reg.state(&rec.id), Some(NodeState::Down));
        assert!(reg.sweep(t0).is_empty());
        assert!(matches!(
            reg.route(&rec.id, &[0; 16]),
            Err(NodeError::Unavailable(_))
        ));
        assert!(matches!(
            reg.route(&Uuid::from_u128(10), &[0; 16]),
            Err(NodeError::UnknownNode)
        ));
        let views = reg.views();
        assert_eq!(views[0].last_heartbeat_unix_ms, Some(7));
        assert_eq!(
            views[0].last_heartbeat.as_deref(),
            Some("1970-01-01T00:00:00.007Z")
        );
        let out = apply(&mut reg, &report(9), ReportKind::Heartbeat, t0, 100);
        assert_eq!(out.transition, Some((Some(NodeState::Down), NodeState::Up)));
    }

    #[test]
    fn a_restart_invalidates_connections_and_schedules_an_orphan_scan() {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        let id = Uuid::from_u128(1);
        apply(&mut reg, &report(1), ReportKind::Register, t0, 0);
        let g1 = reg.route(&id, &[3; 16]).unwrap().generation;
        let interval = Duration::from_secs(600);
        assert!(reg.take_due_orphan_scans(secs(t0, 29), interval).is_empty());
        assert_eq!(reg.take_due_orphan_scans(secs(t0, 30), interval), vec![id]);
        assert!(reg.take_due_orphan_scans(secs(t0, 31), interval).is_empty());
        assert_eq!(reg.take_due_orphan_scans(secs(t0, 630), interval), vec![id]);
        apply(
            &mut reg,
            &report(1),
            ReportKind::Heartbeat,
            secs(t0, 631),
            0,
        );
        assert_eq!(reg.route(&id, &[3; 16]).unwrap().generation, g1);
        let out = apply(&mut reg, &report(1), ReportKind::Register, secs(t0, 632), 0);
        assert!(out.reconnect && out.persist.is_some());
        assert_ne!(reg.route(&id, &[3; 16]).unwrap().generation, g1);
        assert!(
            reg.take_due_orphan_scans(secs(t0, 661), interval)
                .is_empty()
        );
        assert_eq!(reg.take_due_orphan_scans(secs(t0, 662), interval), vec![id]);
    }

    #[test]
    fn routes_follow_the_wire_shard_rule() {
        let mut reg = Registry::new(TIMING);
        let r = report(1);
        apply(&mut reg, &r, ReportKind::Register, Instant::now(), 0);
        for i in 0u8..64 {
            let chunk = [i; 16];
            let shard = sixfold_wire::shard_for(&chunk, 2) as usize;
            assert_eq!(reg.route(&r.id, &chunk).unwrap().addr, r.shard_addrs[shard]);
        }
        assert_eq!(reg.shard_routes(&r.id).unwrap().len(), 2);
    }

    fn parts(lens: &[u64]) -> Vec<PartRange> {
        let mut offset = 0;
        lens.iter()
            .enumerate()
            .map(|(index, &len)| {
                let p = PartRange {
                    index: index as u32,
                    offset,
                    len,
                };
                offset += len;
                p
            })
            .collect()
    }

    fn cluster(n: u128) -> (Registry, Instant) {
        let mut reg = Registry::new(TIMING);
        let t0 = Instant::now();
        for i in 1..=n {
            apply(&mut reg, &report(i), ReportKind::Register, t0, 0);
        }
        (reg, t0)
    }

    /// (free, in flight) of every node, by id.
    fn load(reg: &Registry) -> Vec<(u64, u32)> {
        reg.candidates()
            .iter()
            .map(|c| (c.free(), c.in_flight))
            .collect()
    }

    const ANY: PlacementOptions = PlacementOptions {
        two_choices: true,
        max_in_flight: u32::MAX,
    };

    #[test]
    fn reserved_bytes_count_until_released_or_acknowledged_and_reported() {
        // Six nodes of capacity 1000 with 100 used: 900 free each.
        let (mut reg, t0) = cluster(6);
        let file = |n: u128| Uuid::from_u128(0xf00 + n);
        let first = reg.reserve(&file(1), &parts(&[400; 6]), ANY).expect("fits");
        assert_eq!(first.len(), 6);
        assert_eq!(load(&reg), vec![(500, 1); 6]);
        let second = reg.reserve(&file(2), &parts(&[400; 6]), ANY).expect("fits");
        assert_eq!(load(&reg), vec![(100, 2); 6]);
        // No room for a third: refused, and it holds nothing.
        assert_eq!(
            reg.reserve(&file(3), &parts(&[400; 6]), ANY),
            Err(PlacementError::InsufficientSpace {
                needed: 6,
                with_room: 0
            })
        );
        assert_eq!(load(&reg), vec![(100, 2); 6]);
        // The first upload fails: its space is free at once.
        for h in first {
            reg.settle(h, Settle::Released);
        }
        assert_eq!(load(&reg), vec![(500, 1); 6]);
        // The second commits: slots free, bytes still counted as used.
        for h in second {
            reg.settle(h, Settle::Acknowledged);
        }
        assert_eq!(load(&reg), vec![(500, 0); 6]);
        // The next report may have been built before the ack (it still says 100 used): the
        // acknowledged bytes stay counted.
        for n in 1..=6 {
            apply(
                &mut reg,
                &report(n),
                ReportKind::Heartbeat,
                secs(t0, 1),
                1_000,
            );
        }
        assert_eq!(load(&reg), vec![(500, 0); 6]);
        // The one after is built after the ack and includes the part: only its figure counts.
        for n in 1..=6 {
            let mut r = report(n);
            r.used = 500;
            apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 2), 2_000);
        }
        assert_eq!(load(&reg), vec![(500, 0); 6]);
        assert_eq!(reg.views()[0].reserved, 0);
        // Settling something unknown or twice changes nothing and never underflows.
        reg.settle(
            Hold {
                node: Uuid::from_u128(99),
                len: 5,
            },
            Settle::Released,
        );
        reg.settle(
            Hold {
                node: Uuid::from_u128(1),
                len: 5,
            },
            Settle::Released,
        );
        assert_eq!(load(&reg), vec![(500, 0); 6]);
    }

    #[test]
    fn reports_do_not_drop_what_is_still_in_flight() {
        let (mut reg, t0) = cluster(6);
        let holds = reg
            .reserve(&Uuid::from_u128(7), &parts(&[300; 6]), ANY)
            .expect("fits");
        for s in 1..=3 {
            for n in 1..=6 {
                apply(&mut reg, &report(n), ReportKind::Heartbeat, secs(t0, s), 0);
            }
            assert_eq!(load(&reg), vec![(600, 1); 6], "after report {s}");
        }
        let view = &reg.views()[0];
        assert_eq!((view.parts_in_flight, view.reserved), (1, 300));
        // A node restart does not forget the holds of uploads still running to it.
        apply(&mut reg, &report(1), ReportKind::Register, secs(t0, 4), 0);
        assert_eq!(load(&reg), vec![(600, 1); 6]);
        for h in holds {
            reg.settle(h, Settle::Released);
        }
        assert_eq!(load(&reg), vec![(900, 0); 6]);
    }

    #[test]
    fn a_reservation_is_all_or_nothing() {
        let (mut reg, _) = cluster(6);
        // One node keeps room for 300 bytes only.
        let small = reg
            .reserve(&Uuid::from_u128(1), &parts(&[600; 1]), ANY)
            .expect("fits");
        let on = small[0].node;
        // Refused as a whole when only five nodes can take a 400-byte part...
        let wide = reg.reserve(&Uuid::from_u128(2), &parts(&[400; 6]), ANY);
        assert_eq!(
            wide,
            Err(PlacementError::InsufficientSpace {
                needed: 6,
                with_room: 5
            })
        );
        let mut expect: Vec<(u64, u32)> = reg
            .candidates()
            .iter()
            .map(|c| if c.id == on { (300, 1) } else { (900, 0) })
            .collect();
        assert_eq!(load(&reg), expect);
        // ... and a file that fits (the small node takes a 300-byte part) is held in full.
        let fits = reg
            .reserve(&Uuid::from_u128(3), &parts(&[300; 6]), ANY)
            .expect("fits");
        assert_eq!(fits.len(), 6);
        for (c, e) in reg.candidates().iter().zip(expect.iter_mut()) {
            let h = fits.iter().find(|h| h.node == c.id).expect("one part each");
            *e = (e.0 - h.len, e.1 + 1);
        }
        assert_eq!(load(&reg), expect);
    }

    #[test]
    fn nodes_at_the_in_flight_limit_take_no_part_and_busy_holds_nothing() {
        let (mut reg, _) = cluster(7);
        let one = PlacementOptions {
            max_in_flight: 1,
            ..ANY
        };
        let first = reg
            .reserve(&Uuid::from_u128(1), &parts(&[10; 6]), one)
            .expect("seven idle nodes");
        let busy: Vec<Uuid> = first.iter().map(|h| h.node).collect();
        let in_flight = |reg: &Registry| -> u32 { load(reg).iter().map(|l| l.1).sum() };
        assert_eq!(in_flight(&reg), 6);
        // One node is free of parts: a second file cannot be placed without waiting.
        assert_eq!(
            reg.reserve(&Uuid::from_u128(2), &parts(&[10; 6]), one),
            Err(PlacementError::Busy {
                needed: 6,
                available: 1,
                limit: 1
            })
        );
        assert_eq!(in_flight(&reg), 6, "a refused reservation holds nothing");
        // A one-part file goes to the only idle node.
        let single = reg
            .reserve(&Uuid::from_u128(3), &parts(&[10]), one)
            .expect("one node idle");
        assert!(!busy.contains(&single[0].node));
        reg.settle(single[0], Settle::Acknowledged);
        // Acknowledging frees the slot at once (the bytes stay counted).
        let mut first = first.into_iter();
        for h in first.by_ref().take(5) {
            reg.settle(h, Settle::Acknowledged);
        }
        assert!(
            reg.reserve(&Uuid::from_u128(4), &parts(&[10; 6]), one)
                .is_ok()
        );
        // Read-only or down nodes do not count as busy: with too few nodes up it is a 503 for
        // lack of nodes, not busy.
        let (mut reg, _) = cluster(6);
        let mut r = report(6);
        r.read_only = true;
        apply(&mut reg, &r, ReportKind::Heartbeat, Instant::now(), 0);
        assert!(matches!(
            reg.reserve(&Uuid::from_u128(5), &parts(&[10; 6]), one),
            Err(PlacementError::NotEnoughNodes { .. })
        ));
    }

    #[test]
    fn an_operator_state_holds_across_reports_and_outlasts_a_down_spell() {
        let (mut reg, t0) = cluster(1);
        let id = Uuid::from_u128(1);
        let (record, change) = reg
            .set_operator_state(&id, Some(OperatorState::ReadOnly))
            .expect("known node");
        assert_eq!(record.operator_state, Some(OperatorState::ReadOnly));
        assert_eq!(change, Some((NodeState::Up, NodeState::ReadOnly)));
        assert_eq!(reg.up_count(), 0);
        assert!(!reg.candidates()[0].eligible);
        // The node keeps reporting up: it stays read-only.
        let out = apply(
            &mut reg,
            &report(1),
            ReportKind::Register,
            secs(t0, 1),
            1_000,
        );
        assert_eq!(out.transition, None);
        assert_eq!(reg.views()[0].state_name, "read_only");
        assert_eq!(reg.views()[0].operator_state, Some(OperatorState::ReadOnly));
        // Draining replaces read-only; it outlasts a down spell and applies at the next report.
        reg.set_operator_state(&id, Some(OperatorState::Draining));
        let down = reg.sweep(secs(t0, 3600));
        assert_eq!(down.len(), 1);
        let (_, change) = reg
            .set_operator_state(&id, Some(OperatorState::Draining))
            .unwrap();
        assert_eq!(change, None, "a down node stays down");
        assert_eq!(reg.state(&id), Some(NodeState::Down));
        let out = apply(
            &mut reg,
            &report(1),
            ReportKind::Register,
            secs(t0, 3601),
            2_000,
        );
        assert_eq!(
            out.transition,
            Some((Some(NodeState::Down), NodeState::Draining))
        );
        assert_eq!(
            out.persist.map(|r| r.operator_state),
            Some(Some(OperatorState::Draining))
        );
        // Cleared: up again, unless the node itself says its disk is full.
        let (_, change) = reg.set_operator_state(&id, None).unwrap();
        assert_eq!(change, Some((NodeState::Draining, NodeState::Up)));
        assert_eq!(reg.up_count(), 1);
        let mut full = report(1);
        full.read_only = true;
        apply(
            &mut reg,
            &full,
            ReportKind::Heartbeat,
            secs(t0, 3602),
            3_000,
        );
        reg.set_operator_state(&id, Some(OperatorState::ReadOnly));
        let (_, change) = reg.set_operator_state(&id, None).unwrap();
        assert_eq!(change, None, "still full: read-only by its own report");
        assert_eq!(reg.state(&id), Some(NodeState::ReadOnly));
        assert!(reg.set_operator_state(&Uuid::from_u128(99), None).is_none());
    }

    #[test]
    fn a_read_only_node_serves_but_takes_no_parts_until_it_has_room_again() {
        let (mut reg, t0) = cluster(1);
        let id = Uuid::from_u128(1);
        let mut r = report(1);
        r.read_only = true;
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 1), 1_000);
        assert_eq!(
            out.transition,
            Some((Some(NodeState::Up), NodeState::ReadOnly))
        );
        assert!(out.persist.is_some(), "a state change is persisted");
        assert!(!reg.candidates()[0].eligible);
        assert_eq!(reg.up_count(), 0);
        assert!(
            reg.route(&id, &[1; 16]).is_ok(),
            "reads and deletes still go there"
        );
        assert_eq!(reg.serving_nodes(), vec![id]);
        assert_eq!(reg.views()[0].state, NodeState::ReadOnly);
        // Draining wins over read-only: the node is stopping either way.
        r.draining = true;
        let out = apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 2), 2_000);
        assert_eq!(
            out.transition,
            Some((Some(NodeState::ReadOnly), NodeState::Draining))
        );
        r.draining = false;
        r.read_only = false;
        apply(&mut reg, &r, ReportKind::Heartbeat, secs(t0, 3), 3_000);
        assert_eq!(reg.state(&id), Some(NodeState::Up));
        assert!(reg.candidates()[0].eligible);
    }
}
