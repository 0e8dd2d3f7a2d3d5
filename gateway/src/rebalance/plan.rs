//! The move planner (issue 15): which parts of which files move to which node. Pure: the
//! files and nodes are passed in, the moves come out; no I/O, no clock.
//!
//! # The rule
//!
//! Each file has a set of **winners**: the nodes an upload would choose for its parts among
//! the **eligible** nodes (state `up`), by weighted rendezvous hashing with distinct nodes per
//! file ([`crate::placement`]: parts take their best-scored node in index order, each skipping
//! the nodes earlier parts took), but scored by **capacity**,
//! `capacity / -ln(u(file, part, node))` ([`crate::placement::weighted_score`]), not by free
//! space.
//!
//! Uploads place by *free* space, which changes as data moves; planning by it would chase its
//! own tail (every move changes the weights that decided it). Capacity only changes when an
//! operator changes a node, so the winners are a function of the file id and the set of
//! eligible nodes alone, and planning again on the planned result moves nothing.
//!
//! A part moves when its node is not one of its file's winners: it goes to the best-scored
//! (for that part) winner that no other part of the file holds. A part already on a winner
//! stays, even if the greedy order would have given it another winner: that is what keeps the
//! **distinct-node knock-on** away. Adding one node changes a file's winners by at most one
//! node (the newcomer in, one old node out: the greedy picks differ by a single exchange), so
//! exactly the part on the node that left moves, to the newcomer; a per-part comparison would
//! also move every later part whose pick the exchange shifted (for six parts on seven nodes,
//! almost as many again). The same holds for a node that stops being eligible: only its parts
//! move. So a seventh node takes 1/7 of the parts and nothing else moves.
//!
//! # Modes
//!
//! - [`Mode::Converge`]: every readable part off its file's winners moves. This is what a new
//!   node triggers, and what an on-demand rebalance does when the fill is uneven.
//! - [`Mode::DrainOnly`]: only the parts on draining nodes move (to the same targets
//!   `Converge` would give them). Setting a node `draining` plans this way.
//!
//! An on-demand rebalance (`POST /admin/rebalance`) converges only when the fill spread
//! between the fullest and the emptiest eligible node (`used / capacity`) exceeds the
//! configured threshold (or when forced); below it, it only drains ([`choose_mode`]).
//!
//! # What never moves, what always does
//!
//! - A part on a `draining` node always moves (in both modes), as long as some eligible node
//!   without a part of its file has room.
//! - A part on a `down` node never moves (it cannot be read), nor one on a `read_only` node
//!   (it keeps its parts, it only takes no new ones), nor one on a node the planner does not
//!   know. Those parts still occupy their node for the distinct-node rule.
//! - No two parts of a file are ever on one node, not even between two moves: a move's target
//!   is a winner that no part of the file is on, so a file's moves can run in any order.
//! - A target must have room: `capacity - used` minus what earlier moves of the plan send
//!   there.

use std::collections::HashMap;

use uuid::Uuid;

use crate::meta::NodeState;
use crate::placement::weighted_score;

/// What the planner needs to know about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanNode {
    pub id: Uuid,
    pub capacity: u64,
    pub used: u64,
    /// The effective state (down, draining, read-only, up).
    pub state: NodeState,
}

impl PlanNode {
    fn eligible(&self) -> bool {
        self.state == NodeState::Up && self.capacity > 0
    }

    /// Whether parts on this node may be moved (read) at all.
    fn readable(&self) -> bool {
        matches!(self.state, NodeState::Up | NodeState::Draining)
    }

    /// `used / capacity`.
    pub fn fill(&self) -> f64 {
        if self.capacity == 0 {
            1.0
        } else {
            self.used as f64 / self.capacity as f64
        }
    }
}

/// A stored part: where it is and how many bytes its chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPart {
    pub index: u32,
    pub node: Uuid,
    pub len: u64,
}

/// A file's parts, in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFile {
    pub id: Uuid,
    pub parts: Vec<PlanPart>,
}

/// One move: part `part_index` of `file_id`, from `from` to `to`. A file's moves are to be run
/// in the order the plan lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub file_id: Uuid,
    pub part_index: u32,
    pub from: Uuid,
    pub to: Uuid,
    pub len: u64,
}

/// How far a plan goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only parts on draining nodes move.
    DrainOnly,
    /// Every movable part goes to its ideal node.
    Converge,
}

/// What asked for a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A node registered for the first time.
    NodeAdded,
    /// A node was set `draining`.
    Draining,
    /// `POST /admin/rebalance`; `force` converges whatever the spread.
    OnDemand { force: bool },
}

/// The fill spread among eligible nodes: the fullest one's `used / capacity` minus the
/// emptiest one's (0 with fewer than two eligible nodes).
pub fn fill_spread(nodes: &[PlanNode]) -> f64 {
    let fills = nodes.iter().filter(|n| n.eligible()).map(PlanNode::fill);
    let (lo, hi) = fills.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), f| {
        (lo.min(f), hi.max(f))
    });
    if hi >= lo { hi - lo } else { 0.0 }
}

/// The mode a trigger plans in: a new node converges, a drain only drains, an on-demand
/// rebalance converges when forced or when the fill spread exceeds `threshold`.
pub fn choose_mode(trigger: Trigger, spread: f64, threshold: f64) -> Mode {
    match trigger {
        Trigger::NodeAdded => Mode::Converge,
        Trigger::Draining => Mode::DrainOnly,
        Trigger::OnDemand { force: true } => Mode::Converge,
        Trigger::OnDemand { force: false } if spread > threshold => Mode::Converge,
        Trigger::OnDemand { force: false } => Mode::DrainOnly,
    }
}

/// The planner's view of the nodes, with the room each has left in this plan.
struct Nodes<'a> {
    by_id: HashMap<Uuid, &'a PlanNode>,
    eligible: Vec<&'a PlanNode>,
    room: HashMap<Uuid, u64>,
}

impl<'a> Nodes<'a> {
    fn new(nodes: &'a [PlanNode]) -> Self {
        let mut eligible: Vec<&PlanNode> = nodes.iter().filter(|n| n.eligible()).collect();
        eligible.sort_by_key(|n| n.id);
        Nodes {
            by_id: nodes.iter().map(|n| (n.id, n)).collect(),
            room: eligible
                .iter()
                .map(|n| (n.id, n.capacity.saturating_sub(n.used)))
                .collect(),
            eligible,
        }
    }

    /// Eligible nodes for part `index` of `file`, best score first (ties by id, so the order
    /// never depends on the input's).
    fn ranked(&self, file: &Uuid, index: u32) -> Vec<Uuid> {
        let mut scored: Vec<(f64, Uuid)> = self
            .eligible
            .iter()
            .map(|n| (weighted_score(file, index, &n.id, n.capacity), n.id))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        scored.into_iter().map(|(_, id)| id).collect()
    }

    fn readable(&self, id: &Uuid) -> bool {
        self.by_id.get(id).is_some_and(|n| n.readable())
    }

    fn draining(&self, id: &Uuid) -> bool {
        self.by_id
            .get(id)
            .is_some_and(|n| n.state == NodeState::Draining)
    }

    fn has_room(&self, id: &Uuid, len: u64) -> bool {
        self.room.get(id).is_some_and(|&r| r >= len)
    }

    fn take(&mut self, to: &Uuid, from: &Uuid, len: u64) {
        if let Some(r) = self.room.get_mut(to) {
            *r = r.saturating_sub(len);
        }
        if let Some(r) = self.room.get_mut(from) {
            *r = r.saturating_add(len);
        }
    }
}

/// The ideal node of every part of `file` (`None` where the eligible nodes run out).
pub fn ideal(file: &Uuid, indexes: &[u32], nodes: &[PlanNode]) -> Vec<Option<Uuid>> {
    let view = Nodes::new(nodes);
    ideal_in(&view, file, indexes)
}

fn ideal_in(nodes: &Nodes<'_>, file: &Uuid, indexes: &[u32]) -> Vec<Option<Uuid>> {
    let mut taken: Vec<Uuid> = Vec::with_capacity(indexes.len());
    indexes
        .iter()
        .map(|&index| {
            let pick = nodes
                .ranked(file, index)
                .into_iter()
                .find(|id| !taken.contains(id));
            if let Some(id) = pick {
                taken.push(id);
            }
            pick
        })
        .collect()
}

/// Plans the moves of every file in `files` over `nodes`, in `mode`. Files come out in the
/// order given; each file's moves in the order they must run.
pub fn plan(files: &[PlanFile], nodes: &[PlanNode], mode: Mode) -> Vec<Move> {
    let mut view = Nodes::new(nodes);
    let mut out = Vec::new();
    for file in files {
        plan_file(&mut view, file, mode, &mut out);
    }
    out
}

fn plan_file(nodes: &mut Nodes<'_>, file: &PlanFile, mode: Mode, out: &mut Vec<Move>) {
    let indexes: Vec<u32> = file.parts.iter().map(|p| p.index).collect();
    let winners: Vec<Uuid> = ideal_in(nodes, &file.id, &indexes)
        .into_iter()
        .flatten()
        .collect();
    let moves_off = |p: &PlanPart| match mode {
        Mode::DrainOnly => nodes.draining(&p.node),
        // Off the winners and readable (a draining node is never a winner).
        Mode::Converge => nodes.readable(&p.node) && !winners.contains(&p.node),
    };
    let moving: Vec<usize> = (0..file.parts.len())
        .filter(|&k| moves_off(&file.parts[k]))
        .collect();
    if moving.is_empty() {
        return;
    }
    // The winners no staying part holds: each is free, so no move ever lands on a node that
    // holds another part of the file, and the moves need no order among themselves.
    let mut free: Vec<Uuid> = winners
        .iter()
        .copied()
        .filter(|w| {
            !file
                .parts
                .iter()
                .enumerate()
                .any(|(k, p)| p.node == *w && !moving.contains(&k))
        })
        .collect();
    for k in moving {
        let part = &file.parts[k];
        let target = nodes
            .ranked(&file.id, part.index)
            .into_iter()
            .find(|id| free.contains(id) && nodes.has_room(id, part.len));
        let Some(to) = target else {
            continue;
        };
        free.retain(|id| *id != to);
        nodes.take(&to, &part.node, part.len);
        out.push(Move {
            file_id: file.id,
            part_index: part.index,
            from: part.node,
            to,
            len: part.len,
        });
    }
}

/// Applies `moves` to `files` (what the metadata looks like once they ran).
pub fn apply(files: &mut [PlanFile], moves: &[Move]) {
    let mut by_id: HashMap<Uuid, usize> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        by_id.insert(f.id, i);
    }
    for m in moves {
        let Some(&i) = by_id.get(&m.file_id) else {
            continue;
        };
        for p in files[i].parts.iter_mut() {
            if p.index == m.part_index && p.node == m.from {
                p.node = m.to;
            }
        }
    }
}

#[cfg(test)]
mod tests;
