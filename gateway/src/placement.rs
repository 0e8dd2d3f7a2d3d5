//! Which node stores each part of a file (DESIGN §3): weighted rendezvous (highest random weight)
//! hashing, one distinct node per part, with an optional "two choices" step that steers parts
//! away from nodes that are busy right now. Pure: no I/O, no clock, no randomness.

use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

use crate::split::PartRange;

/// What placement needs to know about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: Uuid,
    /// Bytes the node offers in total.
    pub capacity: u64,
    /// Bytes already taken (including space reserved by uploads in progress, if the caller
    /// accounts for them).
    pub used: u64,
    /// Parts being written to the node right now.
    pub in_flight: u32,
    /// Up, and neither draining nor read-only.
    pub eligible: bool,
}

impl Candidate {
    /// Free bytes: the node's weight.
    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used)
    }

    /// Whether the node may take a part of `len` bytes at all.
    pub fn can_take(&self, len: u64) -> bool {
        self.eligible && self.free() >= len && self.free() > 0
    }

    /// Whether the node may take a part of `len` bytes now, with at most `max_in_flight`
    /// parts in flight per node.
    fn can_take_now(&self, len: u64, max_in_flight: u32) -> bool {
        self.can_take(len) && self.in_flight < max_in_flight
    }
}

/// Placement knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementOptions {
    /// Between the two best-scored nodes for a part, take the one with fewer parts in flight.
    /// Off gives pure rendezvous hashing (only a function of ids and free space).
    pub two_choices: bool,
    /// A node with this many parts in flight takes no new part (`node_max_parts`).
    pub max_in_flight: u32,
}

impl Default for PlacementOptions {
    fn default() -> Self {
        Self {
            two_choices: true,
            max_in_flight: u32::MAX,
        }
    }
}

/// Why a file cannot be placed. Both are decided before any byte moves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer nodes are up (and accepting writes) than the file has parts (HTTP 503).
    #[error(
        "not enough nodes: {needed} parts need {needed} distinct nodes, {eligible} are eligible"
    )]
    NotEnoughNodes { needed: usize, eligible: usize },
    /// Enough nodes are up, but too few have room for the parts (HTTP 507).
    #[error(
        "not enough free space: {needed} parts need {needed} distinct nodes with room, {with_room} have it"
    )]
    InsufficientSpace { needed: usize, with_room: usize },
    /// There is room, but too many nodes are at their limit of parts in flight right now
    /// (HTTP 503 with `Retry-After`).
    #[error(
        "nodes busy: {needed} parts need {needed} distinct nodes below their limit of {limit} parts in flight, {available} are"
    )]
    Busy {
        needed: usize,
        available: usize,
        limit: u32,
    },
}

/// The rendezvous hash of (file, part, node) mapped into the open interval (0, 1).
///
/// 52 bits keep `x + 0.5` exact in an f64 mantissa, so `u` is never 0 or 1 and `-ln(u)` is
/// finite and positive.
fn unit_hash(file_id: &Uuid, part_index: u32, node_id: &Uuid) -> f64 {
    let mut key = [0u8; 36];
    key[..16].copy_from_slice(file_id.as_bytes());
    key[16..20].copy_from_slice(&part_index.to_le_bytes());
    key[20..].copy_from_slice(node_id.as_bytes());
    let h = xxh3_64(&key);
    const SCALE: f64 = (1u64 << 52) as f64;
    ((h >> 12) as f64 + 0.5) / SCALE
}

/// Score of `node` for part `part_index` of `file_id`; the highest score wins.
///
/// `-ln(u)` is exponentially distributed, so `free / -ln(u)` makes each node win with probability
/// proportional to its free bytes. Free bytes go in unscaled: at most 1.8e19 / 1.1e-16 ≈ 1.7e35,
/// far below f64's range, and only the order of scores matters.
pub fn score(file_id: &Uuid, part_index: u32, node: &Candidate) -> f64 {
    weighted_score(file_id, part_index, &node.id, node.free())
}

/// The rendezvous score of `node_id` for part `part_index` of `file_id` under any `weight`:
/// `weight / -ln(u)`. Placement weighs by free bytes ([`score`]); rebalancing weighs by
/// capacity, which does not change as parts move ([`crate::rebalance::plan`]).
pub fn weighted_score(file_id: &Uuid, part_index: u32, node_id: &Uuid, weight: u64) -> f64 {
    weight as f64 / -unit_hash(file_id, part_index, node_id).ln()
}

/// Chooses a node for every part of `file_id`: `result[k]` is the node of `parts[k]`.
///
/// Parts are placed in order; each takes the best-scored node not used by an earlier part of the
/// same file that is eligible, has room for it and is below `max_in_flight`. With
/// `two_choices`, of the two best such nodes the one with fewer parts in flight wins (a tie
/// keeps the better score).
///
/// When the in-flight limit alone is what stops the file, the error is
/// [`PlacementError::Busy`] (worth a retry soon); otherwise it names the lack of nodes or space.
pub fn place(
    file_id: &Uuid,
    parts: &[PartRange],
    candidates: &[Candidate],
    options: PlacementOptions,
) -> Result<Vec<Uuid>, PlacementError> {
    match place_within(file_id, parts, candidates, options) {
        Err(_) if options.max_in_flight < u32::MAX => {
            let unlimited = PlacementOptions {
                max_in_flight: u32::MAX,
                ..options
            };
            place_within(file_id, parts, candidates, unlimited)?;
            let largest = parts.iter().map(|p| p.len).max().unwrap_or(0);
            Err(PlacementError::Busy {
                needed: parts.len(),
                available: candidates
                    .iter()
                    .filter(|c| c.can_take_now(largest, options.max_in_flight))
                    .count(),
                limit: options.max_in_flight,
            })
        }
        result => result,
    }
}

fn place_within(
    file_id: &Uuid,
    parts: &[PartRange],
    candidates: &[Candidate],
    options: PlacementOptions,
) -> Result<Vec<Uuid>, PlacementError> {
    let needed = parts.len();
    let eligible = candidates.iter().filter(|c| c.eligible).count();
    if eligible < needed {
        return Err(PlacementError::NotEnoughNodes { needed, eligible });
    }
    let mut used = vec![false; candidates.len()];
    let mut chosen = Vec::with_capacity(needed);
    for part in parts {
        let mut best: Option<(usize, f64)> = None;
        let mut second: Option<(usize, f64)> = None;
        for (i, node) in candidates.iter().enumerate() {
            if used[i] || !node.can_take_now(part.len, options.max_in_flight) {
                continue;
            }
            let s = score(file_id, part.index, node);
            // Equal scores fall back to the id so the outcome never depends on input order.
            let beats = |other: Option<(usize, f64)>| match other {
                None => true,
                Some((j, t)) => s > t || (s == t && node.id > candidates[j].id),
            };
            if beats(best) {
                second = best;
                best = Some((i, s));
            } else if beats(second) {
                second = Some((i, s));
            }
        }
        let Some((mut pick, _)) = best else {
            let largest = parts.iter().map(|p| p.len).max().unwrap_or(0);
            let with_room = candidates.iter().filter(|c| c.can_take(largest)).count();
            return Err(PlacementError::InsufficientSpace { needed, with_room });
        };
        if options.two_choices
            && let Some((runner_up, _)) = second
            && candidates[runner_up].in_flight < candidates[pick].in_flight
        {
            pick = runner_up;
        }
        used[pick] = true;
        chosen.push(candidates[pick].id);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{SplitPolicy, plan};
    use std::collections::{HashMap, HashSet};

    const GIB: u64 = 1 << 30;
    const PURE: PlacementOptions = PlacementOptions {
        two_choices: false,
        max_in_flight: u32::MAX,
    };

    fn node(n: u128, free: u64) -> Candidate {
        Candidate {
            id: Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 | n),
            capacity: free,
            used: 0,
            in_flight: 0,
            eligible: true,
        }
    }

    fn nodes(count: u128, free: u64) -> Vec<Candidate> {
        (0..count).map(|n| node(n, free)).collect()
    }

    /// Part ranges of `count` equal parts (what a large file gets).
    fn equal_parts(count: u32) -> Vec<PartRange> {
        (0..count)
            .map(|index| PartRange {
                index,
                offset: u64::from(index) * 1024,
                len: 1024,
            })
            .collect()
    }

    fn file(n: u64) -> Uuid {
        Uuid::from_u64_pair(0xf11e, n)
    }

    fn tally(
        files: u64,
        parts: &[PartRange],
        cands: &[Candidate],
        options: PlacementOptions,
    ) -> HashMap<Uuid, u64> {
        let mut counts = HashMap::new();
        for f in 0..files {
            for id in place(&file(f), parts, cands, options).expect("placement") {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    fn unit_hash_stays_inside_the_open_interval() {
        const SCALE: f64 = (1u64 << 52) as f64;
        let top = ((u64::MAX >> 12) as f64 + 0.5) / SCALE;
        let bottom = 0.5 / SCALE;
        assert!(top < 1.0 && -top.ln() > 0.0);
        assert!(bottom > 0.0 && (-bottom.ln()).is_finite());
    }

    #[test]
    fn equal_nodes_fill_evenly() {
        let cands = nodes(12, 4 * GIB);
        let counts = tally(100_000, &equal_parts(6), &cands, PURE);
        let mean = 600_000.0 / 12.0;
        assert_eq!(counts.len(), 12);
        for (id, &c) in &counts {
            let dev = (c as f64 - mean).abs() / mean;
            assert!(dev < 0.03, "node {id} got {c} parts, mean {mean}");
        }
    }

    #[test]
    fn a_new_node_moves_about_one_part_in_thirteen() {
        let parts = equal_parts(6);
        let twelve = nodes(12, 4 * GIB);
        let mut thirteen = twelve.clone();
        thirteen.push(node(12, 4 * GIB));
        let newcomer = thirteen[12].id;
        let files = 50_000;
        let (mut moved, mut to_newcomer) = (0u64, 0u64);
        for f in 0..files {
            let before = place(&file(f), &parts, &twelve, PURE).expect("12 nodes");
            let after = place(&file(f), &parts, &thirteen, PURE).expect("13 nodes");
            for (b, a) in before.iter().zip(&after) {
                if a != b {
                    moved += 1;
                    to_newcomer += u64::from(*a == newcomer);
                }
            }
        }
        let total = (files * 6) as f64;
        let moved = moved as f64 / total;
        let to_newcomer = to_newcomer as f64 / total;
        // The newcomer takes its fair share, 1/13 of the parts ...
        assert!((to_newcomer - 1.0 / 13.0).abs() < 0.004, "{to_newcomer}");
        // ... and, because a file's parts must stay on distinct nodes, a part the newcomer takes
        // can free a node for a later part of the same file: that knock-on adds about a quarter
        // again (sum over k of 1/(13-k), averaged over the 6 parts ≈ 0.098), never more.
        assert!(moved >= to_newcomer);
        assert!((0.085..0.11).contains(&moved), "{moved}");
    }

    #[test]
    fn parts_of_one_file_land_on_distinct_nodes() {
        let cands = nodes(7, 4 * GIB);
        for f in 0..2_000 {
            for opts in [PURE, PlacementOptions::default()] {
                let chosen = place(&file(f), &equal_parts(6), &cands, opts).expect("placement");
                let distinct: HashSet<_> = chosen.iter().collect();
                assert_eq!(distinct.len(), 6, "file {f}: {chosen:?}");
            }
        }
    }

    #[test]
    fn ineligible_and_full_nodes_are_never_chosen() {
        // Small nodes, so the nearly full one keeps a weight comparable to the others.
        let mut cands = nodes(10, 2048);
        cands[0].eligible = false;
        cands[1].used = cands[1].capacity; // full
        cands[2].used = cands[2].capacity - 1000; // less room than a 1024-byte part
        let excluded: HashSet<Uuid> = cands[..3].iter().map(|c| c.id).collect();
        for f in 0..5_000 {
            let chosen = place(&file(f), &equal_parts(6), &cands, PURE).expect("placement");
            assert!(chosen.iter().all(|id| !excluded.contains(id)), "file {f}");
        }
        // A part small enough for the nearly full node may go there.
        let small = [PartRange {
            index: 0,
            offset: 0,
            len: 1000,
        }];
        let counts = tally(5_000, &small, &cands, PURE);
        assert!(counts.get(&cands[2].id).is_some_and(|&c| c > 0));
        assert!(!counts.contains_key(&cands[0].id) && !counts.contains_key(&cands[1].id));
    }

    #[test]
    fn too_few_nodes_is_an_error_before_anything_is_placed() {
        let parts = equal_parts(6);
        let mut cands = nodes(6, 4 * GIB);
        cands[3].eligible = false;
        assert_eq!(
            place(&file(1), &parts, &cands, PURE),
            Err(PlacementError::NotEnoughNodes {
                needed: 6,
                eligible: 5
            })
        );
        cands[3].eligible = true;
        cands[4].used = cands[4].capacity;
        assert_eq!(
            place(&file(1), &parts, &cands, PURE),
            Err(PlacementError::InsufficientSpace {
                needed: 6,
                with_room: 5
            })
        );
        assert_eq!(place(&file(1), &[], &[], PURE), Ok(vec![]));
    }

    #[test]
    fn weight_follows_free_space() {
        // One part per file isolates the weighting from the distinct-node rule (which caps a
        // node at one part per file and so dampens the ratio for multi-part files).
        let mut cands = nodes(24, 4 * GIB);
        cands[0].capacity = 8 * GIB;
        let single = equal_parts(1);
        let counts = tally(60_000, &single, &cands, PURE);
        let big = counts[&cands[0].id] as f64;
        let others: f64 = cands[1..].iter().map(|c| counts[&c.id] as f64).sum::<f64>() / 23.0;
        let ratio = big / others;
        assert!((1.9..2.1).contains(&ratio), "ratio {ratio}");
        // Six-part files over many nodes: a node takes at most one part of each file, which
        // dampens the ratio a little (about 1.85 with 60 nodes), but weight still shows.
        let mut many = nodes(60, 4 * GIB);
        many[0].capacity = 8 * GIB;
        let counts = tally(10_000, &equal_parts(6), &many, PURE);
        let big = counts[&many[0].id] as f64;
        let others: f64 = many[1..].iter().map(|c| counts[&c.id] as f64).sum::<f64>() / 59.0;
        let ratio = big / others;
        assert!((1.75..2.05).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn placement_is_deterministic_and_order_independent() {
        let cands = nodes(12, 4 * GIB);
        let mut reversed = cands.clone();
        reversed.reverse();
        let parts = plan(10 * GIB, &SplitPolicy::default());
        for f in 0..500 {
            let a = place(&file(f), &parts, &cands, PURE).expect("placement");
            let b = place(&file(f), &parts, &cands, PURE).expect("placement");
            let c = place(&file(f), &parts, &reversed, PURE).expect("placement");
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
    }

    #[test]
    fn two_choices_prefers_the_less_busy_of_the_best_two() {
        let parts = equal_parts(1);
        let mut cands = nodes(12, 4 * GIB);
        for f in 0..1_000 {
            let id = file(f);
            let mut ranked: Vec<&Candidate> = cands.iter().collect();
            ranked.sort_by(|a, b| score(&id, 0, b).total_cmp(&score(&id, 0, a)));
            let (first, second) = (ranked[0].id, ranked[1].id);
            // Idle nodes: two choices changes nothing.
            let pick = place(&id, &parts, &cands, PlacementOptions::default()).expect("p");
            assert_eq!(pick, vec![first]);
            // Busy winner: the runner-up takes the part, and no one else.
            for c in cands.iter_mut() {
                c.in_flight = if c.id == first { 3 } else { 0 };
            }
            let pick = place(&id, &parts, &cands, PlacementOptions::default()).expect("p");
            assert_eq!(pick, vec![second]);
            // Equally busy: the better score wins.
            for c in cands.iter_mut() {
                c.in_flight = 3;
            }
            let pick = place(&id, &parts, &cands, PlacementOptions::default()).expect("p");
            assert_eq!(pick, vec![first]);
            // Pure rendezvous ignores load.
            let pick = place(&id, &parts, &cands, PURE).expect("p");
            assert_eq!(pick, vec![first]);
            for c in cands.iter_mut() {
                c.in_flight = 0;
            }
        }
    }

    #[test]
    fn a_node_at_its_in_flight_limit_is_skipped_and_busy_is_told_apart() {
        let parts = equal_parts(6);
        let limited = PlacementOptions {
            two_choices: true,
            max_in_flight: 2,
        };
        // Seven nodes, one at its limit: every file still places, never on that node.
        let mut cands = nodes(7, 4 * GIB);
        cands[3].in_flight = 2;
        for f in 0..500 {
            let chosen = place(&file(f), &parts, &cands, limited).expect("placement");
            assert!(!chosen.contains(&cands[3].id), "file {f}");
        }
        // Six nodes, one at its limit: busy, since without the limit it would fit.
        cands.truncate(6);
        assert_eq!(
            place(&file(1), &parts, &cands, limited),
            Err(PlacementError::Busy {
                needed: 6,
                available: 5,
                limit: 2
            })
        );
        // Below the limit again: placed.
        cands[3].in_flight = 1;
        assert!(place(&file(1), &parts, &cands, limited).is_ok());
        // A lack of space is reported as such even when a node is also busy: retrying soon
        // would not help.
        cands[3].in_flight = 2;
        cands[4].used = cands[4].capacity;
        assert_eq!(
            place(&file(1), &parts, &cands, limited),
            Err(PlacementError::InsufficientSpace {
                needed: 6,
                with_room: 5
            })
        );
        cands[4].used = 0;
        cands[5].eligible = false;
        assert_eq!(
            place(&file(1), &parts, &cands, limited),
            Err(PlacementError::NotEnoughNodes {
                needed: 6,
                eligible: 5
            })
        );
    }
}
