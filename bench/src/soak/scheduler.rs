//! Which operation a soak worker does next, and on which file.
//!
//! The scheduler owns the set of files this soak uploaded and has not deleted, and knows which
//! of them have reads in flight. The rule that keeps a delete from racing a read: **a delete
//! only takes a file with no read in flight, and takes it out of the set at once**, so no read
//! can start on it either. A `404` on a read is therefore always an error, never an expected
//! race. An operation that has no file to work on (a read before any upload, a delete while
//! every file is being read) becomes another one (`substituted` in the report): first a write,
//! then a delete, then a read, whichever is possible. The files on the gateway (live, being
//! written, being deleted) are bounded by `max_files`: at the bound, writes give way to deletes
//! (or reads).

use super::mix::{Mix, Op};
use super::sizes::SizeDist;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::HashMap;

/// A file this soak uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The soak's own number for the file; its content is the generated stream of
    /// (seed, index), its name `{prefix}-{seed}-{index}`.
    pub index: u64,
    /// The id the gateway gave it.
    pub id: String,
    pub size: u64,
}

/// One operation to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Read(FileEntry),
    Write { index: u64, size: u64 },
    Delete(FileEntry),
}

impl Planned {
    pub fn op(&self) -> Op {
        match self {
            Planned::Read(_) => Op::Read,
            Planned::Write { .. } => Op::Write,
            Planned::Delete(_) => Op::Delete,
        }
    }
}

/// How a planned operation ended, as far as the file set cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read ended (well or not: the file stays either way).
    Read,
    /// A write ended; `Some(id)` when the gateway stored the file.
    Written(Option<String>),
    /// A delete ended; `false` when it failed and the file may still exist, so it goes back
    /// to the set (cleanup tries again).
    Deleted(bool),
}

/// Items keyed by file index, with O(1) insert, remove and uniform random choice.
#[derive(Debug)]
struct Slots<T> {
    items: Vec<(u64, T)>,
    pos: HashMap<u64, usize>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            items: Vec::new(),
            pos: HashMap::new(),
        }
    }
}

impl<T> Slots<T> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn insert(&mut self, key: u64, value: T) {
        self.pos.insert(key, self.items.len());
        self.items.push((key, value));
    }

    fn remove(&mut self, key: u64) -> Option<T> {
        let at = *self.pos.get(&key)?;
        Some(self.remove_at(at).1)
    }

    /// Removes the item at `at` (below `len()`).
    fn remove_at(&mut self, at: usize) -> (u64, T) {
        let (key, value) = self.items.swap_remove(at);
        self.pos.remove(&key);
        if let Some((moved, _)) = self.items.get(at) {
            self.pos.insert(*moved, at);
        }
        (key, value)
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let at = *self.pos.get(&key)?;
        Some(&mut self.items[at].1)
    }
}

pub struct Scheduler {
    mix: Mix,
    sizes: SizeDist,
    max_files: usize,
    rng: Xoshiro256PlusPlus,
    /// Live files with no read in flight: the only ones a delete may take.
    idle: Slots<FileEntry>,
    /// Live files with reads in flight, and how many.
    reading: Slots<(FileEntry, u32)>,
    writing: usize,
    /// Deletes in flight: their files are out of the set but may still be on the gateway.
    deleting: usize,
    next_index: u64,
    substituted: u64,
}

impl Scheduler {
    /// `max_files` bounds the soak's files that may be on the gateway: live ones plus writes
    /// and deletes in flight. It must be at least the number of workers, so that a worker at
    /// the bound always finds a file to read or delete.
    pub fn new(mix: Mix, sizes: SizeDist, max_files: usize, seed: u64) -> Self {
        Scheduler {
            mix,
            sizes,
            max_files,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            idle: Slots::default(),
            reading: Slots::default(),
            writing: 0,
            deleting: 0,
            next_index: 0,
            substituted: 0,
        }
    }

    pub fn live(&self) -> usize {
        self.idle.len() + self.reading.len()
    }

    /// Operations done as another kind than the mix drew, for want of a file.
    pub fn substituted(&self) -> u64 {
        self.substituted
    }

    fn possible(&self, op: Op) -> bool {
        match op {
            Op::Read => self.live() > 0,
            Op::Delete => self.idle.len() > 0,
            Op::Write => self.live() + self.writing + self.deleting < self.max_files,
        }
    }

    pub fn plan(&mut self) -> Planned {
        let wanted = self.mix.pick(&mut self.rng);
        let op = [wanted, Op::Write, Op::Delete, Op::Read]
            .into_iter()
            .find(|&op| self.possible(op))
            // Only reachable with fewer max_files than workers: go past the bound, do not stall.
            .unwrap_or(Op::Write);
        if op != wanted {
            self.substituted += 1;
        }
        match op {
            Op::Read => Planned::Read(self.start_read()),
            Op::Delete => {
                let at = self.rng.random_range(0..self.idle.len());
                self.deleting += 1;
                Planned::Delete(self.idle.remove_at(at).1)
            }
            Op::Write => {
                self.writing += 1;
                let index = self.next_index;
                self.next_index += 1;
                Planned::Write {
                    index,
                    size: self.sizes.sample(&mut self.rng),
                }
            }
        }
    }

    fn start_read(&mut self) -> FileEntry {
        let at = self.rng.random_range(0..self.live());
        if at < self.idle.len() {
            let (key, entry) = self.idle.remove_at(at);
            self.reading.insert(key, (entry.clone(), 1));
            entry
        } else {
            let slot = &mut self.reading.items[at - self.idle.len()].1;
            slot.1 += 1;
            slot.0.clone()
        }
    }

    /// Records the end of `planned`.
    pub fn done(&mut self, planned: &Planned, outcome: Outcome) {
        match (planned, outcome) {
            (Planned::Read(f), _) => {
                let last = match self.reading.get_mut(f.index) {
                    Some(slot) => {
                        slot.1 -= 1;
                        slot.1 == 0
                    }
                    None => false,
                };
                if last && let Some((entry, _)) = self.reading.remove(f.index) {
                    self.idle.insert(entry.index, entry);
                }
            }
            (Planned::Write { index, size }, outcome) => {
                self.writing -= 1;
                if let Outcome::Written(Some(id)) = outcome {
                    let entry = FileEntry {
                        index: *index,
                        id,
                        size: *size,
                    };
                    self.idle.insert(entry.index, entry);
                }
            }
            (Planned::Delete(f), outcome) => {
                self.deleting -= 1;
                if outcome == Outcome::Deleted(false) {
                    self.idle.insert(f.index, f.clone());
                }
            }
        }
    }

    /// Every live file, for the cleanup at the end (when no operation is in flight).
    pub fn take_all(&mut self) -> Vec<FileEntry> {
        let idle = std::mem::take(&mut self.idle)
            .items
            .into_iter()
            .map(|(_, f)| f);
        let reading = std::mem::take(&mut self.reading)
            .items
            .into_iter()
            .map(|(_, (f, _))| f);
        idle.chain(reading).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn mix(read: u32, write: u32, delete: u32) -> Mix {
        Mix {
            read,
            write,
            delete,
        }
    }

    fn written(s: &mut Scheduler, p: &Planned) -> FileEntry {
        let Planned::Write { index, size } = p else {
            panic!("expected a write, got {p:?}")
        };
        s.done(p, Outcome::Written(Some(format!("id-{index}"))));
        FileEntry {
            index: *index,
            id: format!("id-{index}"),
            size: *size,
        }
    }

    #[test]
    fn the_first_operation_is_a_write_whatever_the_mix() {
        let mut s = Scheduler::new(mix(100, 1, 100), SizeDist::Fixed(5), 10, 1);
        let p = s.plan();
        assert_eq!(p, Planned::Write { index: 0, size: 5 });
        // Until the write is done there is still nothing to read or delete.
        for i in 1..5 {
            assert_eq!(s.plan().op(), Op::Write, "op {i}");
        }
        assert!(s.substituted() >= 4);
    }

    #[test]
    fn a_file_being_read_is_never_deleted() {
        // Deletes nearly always wanted.
        let mut s = Scheduler::new(mix(0, 1, 1_000_000), SizeDist::Fixed(5), 10, 2);
        let w = s.plan();
        let f = written(&mut s, &w);
        let mut s2 = Scheduler::new(mix(1_000_000, 1, 0), SizeDist::Fixed(5), 10, 2);
        // Same state in a reader-heavy scheduler: start a read of the one file.
        let w2 = s2.plan();
        written(&mut s2, &w2);
        let read = s2.plan();
        assert_eq!(read, Planned::Read(f.clone()));
        s2.mix = mix(0, 1, 1_000_000);
        for _ in 0..50 {
            let p = s2.plan();
            assert!(
                !matches!(p, Planned::Delete(_)),
                "deleted while read: {p:?}"
            );
            s2.done(&p, Outcome::Written(None));
        }
        s2.done(&read, Outcome::Read);
        assert_eq!(s2.plan(), Planned::Delete(f.clone()));
        // And a file taken for deletion is never read.
        s2.mix = mix(1_000_000, 1, 0);
        for _ in 0..20 {
            let p = s2.plan();
            assert!(!matches!(p, Planned::Read(_)), "read after delete: {p:?}");
            s2.done(&p, Outcome::Written(None));
        }
        // A failed delete gives the file back.
        s.mix = mix(0, 1, 1_000_000);
        let d = s.plan();
        assert_eq!(d, Planned::Delete(f.clone()));
        s.done(&d, Outcome::Deleted(false));
        assert_eq!(s.take_all(), vec![f]);
    }

    /// Random interleavings of up to `workers` operations in flight, ended in random order,
    /// checked against a model of what exists on the gateway.
    #[test]
    fn invariants_hold_under_any_interleaving() {
        for seed in 0..20u64 {
            let workers = 1 + (seed as usize % 8);
            let max_files = workers + 3;
            let mut s = Scheduler::new(
                mix(60, 30, 10),
                SizeDist::Uniform { min: 1, max: 100 },
                max_files,
                seed,
            );
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed + 1000);
            let mut stored: HashSet<u64> = HashSet::new();
            let mut reads_in_flight: HashMap<u64, u32> = HashMap::new();
            let mut indices = HashSet::new();
            let mut in_flight: Vec<Planned> = Vec::new();
            let mut counts = HashMap::new();
            for _ in 0..3000 {
                if in_flight.len() < workers && (in_flight.is_empty() || rng.random_bool(0.5)) {
                    let p = s.plan();
                    *counts.entry(p.op()).or_insert(0) += 1;
                    match &p {
                        Planned::Read(f) => {
                            assert!(stored.contains(&f.index), "read of a file not stored");
                            *reads_in_flight.entry(f.index).or_insert(0) += 1;
                        }
                        Planned::Delete(f) => {
                            assert!(stored.contains(&f.index), "delete of a file not stored");
                            assert_eq!(reads_in_flight.get(&f.index), None, "delete during read");
                            stored.remove(&f.index);
                        }
                        Planned::Write { index, size } => {
                            assert!(indices.insert(*index), "index {index} reused");
                            assert!((1..=100).contains(size));
                        }
                    }
                    in_flight.push(p);
                    // Files a write or delete in flight may have on the gateway count too.
                    let pending = in_flight
                        .iter()
                        .filter(|p| !matches!(p, Planned::Read(_)))
                        .count();
                    assert!(stored.len() + pending <= max_files, "bound passed");
                } else {
                    let p = in_flight.swap_remove(rng.random_range(0..in_flight.len()));
                    let outcome = match &p {
                        Planned::Read(f) => {
                            let n = reads_in_flight.get_mut(&f.index).unwrap();
                            *n -= 1;
                            if *n == 0 {
                                reads_in_flight.remove(&f.index);
                            }
                            Outcome::Read
                        }
                        Planned::Write { index, .. } => {
                            // One write in ten fails and stores nothing.
                            if rng.random_bool(0.9) {
                                stored.insert(*index);
                                Outcome::Written(Some(format!("id-{index}")))
                            } else {
                                Outcome::Written(None)
                            }
                        }
                        Planned::Delete(_) => Outcome::Deleted(true),
                    };
                    s.done(&p, outcome);
                }
                assert_eq!(s.live(), stored.len(), "seed {seed}");
            }
            for p in in_flight.drain(..) {
                let o = match &p {
                    Planned::Read(_) => Outcome::Read,
                    Planned::Write { index, .. } => {
                        stored.insert(*index);
                        Outcome::Written(Some(format!("id-{index}")))
                    }
                    Planned::Delete(_) => Outcome::Deleted(true),
                };
                s.done(&p, o);
            }
            let left: HashSet<u64> = s.take_all().into_iter().map(|f| f.index).collect();
            assert_eq!(left, stored, "cleanup gets exactly the files that exist");
            for op in Op::ALL {
                assert!(
                    counts.get(&op).copied().unwrap_or(0) > 0,
                    "{op:?} never ran"
                );
            }
        }
    }
}
