//! What the node knows about its data's health, and the decisions about it: pure code, time
//! passed in, no I/O. The shard tasks and the heartbeat thread share one [`ScrubState`] behind a
//! mutex (`scrub/mod.rs`); everything here is tested without a disk.
//!
//! - [`classify`]: a verify's result → what to record ([`Verdict`]).
//! - [`ScrubState`]: counters, the bounded book of damaged chunks, and each shard's part of the
//!   current pass; [`ScrubState::report`] is what the heartbeat sends (report version 4).
//! - [`pace`]: when the next block may be read at the scrub's rate.

use std::collections::BTreeMap;
use std::time::Duration;

use sixfold_wire::registration::{
    Damage, DamagedChunk, FoundBy, MAX_DAMAGED_REPORTED, ScrubPass, ScrubReport,
};

use crate::store::{ChunkId, VerifyError};

/// What one check of a chunk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every block and the whole body match their crcs.
    Clean,
    /// Something is wrong with the chunk: record it.
    Damaged { damage: Damage, block: Option<u64> },
    /// The chunk is gone (deleted or not complete) since it was listed: nothing to record.
    Gone,
}

/// What a verify (a scrub's or a `Verify` request's) came to.
pub fn classify(result: &Result<(u64, u32), VerifyError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Clean,
        Err(VerifyError::NotFound) => Verdict::Gone,
        Err(VerifyError::ChecksumMismatch { block }) => Verdict::Damaged {
            damage: Damage::ChecksumMismatch,
            block: Some(*block),
        },
        // The header and the crc table are crc-protected themselves, and a body whose blocks
        // pass but whose whole crc does not is corrupt too: each is a checksum failure.
        Err(VerifyError::Corrupt(_)) => Verdict::Damaged {
            damage: Damage::ChecksumMismatch,
            block: None,
        },
        Err(VerifyError::Io(_)) => Verdict::Damaged {
            damage: Damage::Unreadable,
            block: None,
        },
    }
}

/// How the scrub runs: `rate` bytes/s for the whole node (0: no scrub at all) and a new pass
/// `interval` after the last one ended (zero: only on request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubSettings {
    pub rate: u64,
    pub interval: Duration,
}

impl ScrubSettings {
    pub const OFF: ScrubSettings = ScrubSettings {
        rate: 0,
        interval: Duration::ZERO,
    };

    pub fn enabled(&self) -> bool {
        self.rate > 0
    }
}

/// One shard's part of a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardPass {
    pub round: u64,
    pub started_unix_ms: u64,
    pub ended_unix_ms: Option<u64>,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub found: u64,
}

/// A damaged chunk as the book keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    damage: Damage,
    block: Option<u64>,
    found_by: FoundBy,
    found_unix_ms: u64,
}

/// The node's scrub and damage state.
#[derive(Debug)]
pub struct ScrubState {
    settings: ScrubSettings,
    started_unix_ms: u64,
    checksum_mismatches: u64,
    io_errors: u64,
    chunks_scrubbed: u64,
    bytes_scrubbed: u64,
    passes: u64,
    /// The latest pass started (0: none yet).
    round: u64,
    /// When the last pass every shard finished ended.
    last_end_unix_ms: Option<u64>,
    shards: Vec<ShardPass>,
    damaged: BTreeMap<[u8; 16], Entry>,
    damaged_dropped: u64,
    /// The last pass end written to the data dir.
    persisted_end: Option<u64>,
}

impl ScrubState {
    /// `last_end_unix_ms`: when the last pass ended, as kept in the data dir from an earlier
    /// run of the node, so that restarts do not put the next pass off.
    pub fn new(
        settings: ScrubSettings,
        shards: u16,
        now_unix_ms: u64,
        last_end_unix_ms: Option<u64>,
    ) -> Self {
        Self {
            persisted_end: last_end_unix_ms,
            settings,
            started_unix_ms: now_unix_ms,
            checksum_mismatches: 0,
            io_errors: 0,
            chunks_scrubbed: 0,
            bytes_scrubbed: 0,
            passes: 0,
            round: 0,
            last_end_unix_ms,
            shards: vec![ShardPass::default(); usize::from(shards.max(1))],
            damaged: BTreeMap::new(),
            damaged_dropped: 0,
        }
    }

    pub fn settings(&self) -> ScrubSettings {
        self.settings
    }

    /// The end of the last finished pass, when it is not yet written to the data dir.
    pub fn unpersisted_end(&self) -> Option<u64> {
        self.last_end_unix_ms
            .filter(|&end| Some(end) != self.persisted_end)
    }

    /// `end` is written to the data dir.
    pub fn persisted(&mut self, end: u64) {
        self.persisted_end = Some(end);
    }

    /// The latest pass the shards should have run.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Whether a pass runs: started, and not every shard has finished it.
    pub fn running(&self) -> bool {
        self.round > 0
            && self
                .shards
                .iter()
                .any(|s| s.round < self.round || s.ended_unix_ms.is_none())
    }

    /// An operator asks for a pass now. Returns whether one was started (not when the scrub is
    /// off or a pass already runs).
    pub fn request(&mut self) -> bool {
        if !self.settings.enabled() || self.running() {
            return false;
        }
        self.round += 1;
        true
    }

    /// Starts the periodic pass when it is due: `interval` after the last pass ended (after
    /// the node started, for the first). Returns whether it started one.
    pub fn tick(&mut self, now_unix_ms: u64) -> bool {
        let interval = self.settings.interval;
        if !self.settings.enabled() || interval.is_zero() || self.running() {
            return false;
        }
        let since = self.last_end_unix_ms.unwrap_or(self.started_unix_ms);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        if now_unix_ms < since.saturating_add(interval_ms) {
            return false;
        }
        self.round += 1;
        true
    }

    /// A shard starts its part of pass `round` over `chunks` chunks of `bytes` bytes.
    pub fn shard_started(
        &mut self,
        shard: u16,
        round: u64,
        chunks: u64,
        bytes: u64,
        now_unix_ms: u64,
    ) {
        if let Some(s) = self.shards.get_mut(usize::from(shard)) {
            *s = ShardPass {
                round,
                started_unix_ms: now_unix_ms,
                ended_unix_ms: None,
                chunks_done: 0,
                chunks_total: chunks,
                bytes_done: 0,
                bytes_total: bytes,
                found: 0,
            };
        }
    }

    /// A shard checked one chunk of `bytes` bytes (its pass's, or a read's when `found_by` is
    /// [`FoundBy::Read`]).
    pub fn checked(
        &mut self,
        shard: u16,
        chunk: ChunkId,
        bytes: u64,
        verdict: Verdict,
        found_by: FoundBy,
        now_unix_ms: u64,
    ) {
        if found_by == FoundBy::Scrub {
            self.chunks_scrubbed += 1;
            self.bytes_scrubbed += bytes;
            if let Some(s) = self.shards.get_mut(usize::from(shard)) {
                s.chunks_done += 1;
                s.bytes_done += bytes;
                if matches!(verdict, Verdict::Damaged { .. }) {
                    s.found += 1;
                }
            }
        }
        match verdict {
            Verdict::Clean | Verdict::Gone => {
                self.damaged.remove(&chunk.0);
            }
            Verdict::Damaged { damage, block } => {
                match damage {
                    Damage::ChecksumMismatch => self.checksum_mismatches += 1,
                    Damage::Unreadable => self.io_errors += 1,
                }
                self.record(chunk, damage, block, found_by, now_unix_ms);
            }
        }
    }

    /// A read (`Get`) of a chunk failed its checks: counted and recorded like a scrub's find.
    pub fn read_failed(&mut self, chunk: ChunkId, damage: Damage, block: Option<u64>, now: u64) {
        self.checked(
            0,
            chunk,
            0,
            Verdict::Damaged { damage, block },
            FoundBy::Read,
            now,
        );
    }

    fn record(
        &mut self,
        chunk: ChunkId,
        damage: Damage,
        block: Option<u64>,
        found_by: FoundBy,
        now_unix_ms: u64,
    ) {
        if self.damaged.contains_key(&chunk.0) {
            // The first finding stays: when and how it was first seen.
            return;
        }
        if self.damaged.len() >= MAX_DAMAGED_REPORTED {
            self.damaged_dropped += 1;
            return;
        }
        self.damaged.insert(
            chunk.0,
            Entry {
                damage,
                block,
                found_by,
                found_unix_ms: now_unix_ms,
            },
        );
    }

    /// The chunk was deleted: nothing about it is reported any more.
    pub fn forget(&mut self, chunk: ChunkId) {
        self.damaged.remove(&chunk.0);
    }

    /// A shard finished its part of `round` (stopped early: `complete` false, the pass stays
    /// unfinished). The pass ends when every shard has finished it.
    pub fn shard_finished(&mut self, shard: u16, round: u64, now_unix_ms: u64) {
        if let Some(s) = self.shards.get_mut(usize::from(shard))
            && s.round == round
        {
            s.ended_unix_ms = Some(now_unix_ms);
        }
        if round == self.round
            && self
                .shards
                .iter()
                .all(|s| s.round == round && s.ended_unix_ms.is_some())
        {
            self.passes += 1;
            self.last_end_unix_ms = Some(now_unix_ms);
        }
    }

    /// The current or last pass over all shards.
    pub fn pass(&self) -> Option<ScrubPass> {
        if self.round == 0 {
            return None;
        }
        let mut pass = ScrubPass {
            started_unix_ms: u64::MAX,
            ..ScrubPass::default()
        };
        let mut ended = Some(0u64);
        for s in &self.shards {
            if s.round != self.round {
                // Not started yet: nothing done, its totals not known yet.
                ended = None;
                continue;
            }
            pass.started_unix_ms = pass.started_unix_ms.min(s.started_unix_ms);
            pass.chunks_done += s.chunks_done;
            pass.chunks_total += s.chunks_total;
            pass.bytes_done += s.bytes_done;
            pass.bytes_total += s.bytes_total;
            pass.found += s.found;
            ended = match (ended, s.ended_unix_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        if pass.started_unix_ms == u64::MAX {
            pass.started_unix_ms = 0;
        }
        pass.ended_unix_ms = ended;
        Some(pass)
    }

    /// What the heartbeat reports.
    pub fn report(&self) -> ScrubReport {
        ScrubReport {
            checksum_mismatches: self.checksum_mismatches,
            io_errors: self.io_errors,
            chunks_scrubbed: self.chunks_scrubbed,
            bytes_scrubbed: self.bytes_scrubbed,
            passes: self.passes,
            rate: self.settings.rate,
            pass: self.pass(),
            damaged: self
                .damaged
                .iter()
                .map(|(id, e)| DamagedChunk {
                    chunk_id: ChunkId(*id).to_hex(),
                    damage: e.damage,
                    block: e.block,
                    found_by: e.found_by,
                    found_unix_ms: e.found_unix_ms,
                })
                .collect(),
            damaged_dropped: self.damaged_dropped,
        }
    }
}

/// Pacing at `rate` bytes/s: given when the scrub may next read (`due`, as a duration since any
/// fixed start) and the bytes just read, when it may read again, and how long to wait from
/// `now` for that. A scrub that fell behind (a slow disk) does not burst to catch up: `due`
/// never lies more than one `burst` behind `now`.
pub fn pace(due: Duration, now: Duration, bytes: u64, rate: u64) -> (Duration, Duration) {
    const BURST: Duration = Duration::from_millis(100);
    let rate = rate.max(1);
    let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
    let cost = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    let base = due.max(now.saturating_sub(BURST));
    let next = base + cost;
    (next, next.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    const ON: ScrubSettings = ScrubSettings {
        rate: 1 << 20,
        interval: Duration::from_secs(3600),
    };

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 16])
    }

    #[test]
    fn a_flipped_byte_is_a_mismatch_and_an_io_error_makes_a_chunk_unreadable() {
        assert_eq!(classify(&Ok((5, 7))), Verdict::Clean);
        assert_eq!(
            classify(&Err(VerifyError::ChecksumMismatch { block: 3 })),
            Verdict::Damaged {
                damage: Damage::ChecksumMismatch,
                block: Some(3)
            }
        );
        assert_eq!(
            classify(&Err(VerifyError::Corrupt("crc table".into()))),
            Verdict::Damaged {
                damage: Damage::ChecksumMismatch,
                block: None
            }
        );
        assert_eq!(
            classify(&Err(VerifyError::Io(io::Error::from_raw_os_error(
                libc::EIO
            )))),
            Verdict::Damaged {
                damage: Damage::Unreadable,
                block: None
            }
        );
        assert_eq!(classify(&Err(VerifyError::NotFound)), Verdict::Gone);
    }

    #[test]
    fn a_pass_counts_what_it_finds_and_the_book_reports_it() {
        let mut s = ScrubState::new(ON, 2, 1_000, None);
        assert!(s.pass().is_none());
        assert!(s.request());
        assert!(!s.request(), "a pass already runs");
        assert_eq!(s.round(), 1);
        s.shard_started(0, 1, 2, 200, 1_010);
        s.checked(0, id(1), 100, Verdict::Clean, FoundBy::Scrub, 1_020);
        let bad = Verdict::Damaged {
            damage: Damage::ChecksumMismatch,
            block: Some(4),
        };
        s.checked(0, id(2), 100, bad, FoundBy::Scrub, 1_030);
        s.shard_finished(0, 1, 1_040);
        // Shard 1 has not started: the pass runs on.
        let pass = s.pass().unwrap();
        assert_eq!(
            (
                pass.chunks_done,
                pass.chunks_total,
                pass.found,
                pass.ended_unix_ms
            ),
            (2, 2, 1, None)
        );
        assert!(s.running());
        s.shard_started(1, 1, 0, 0, 1_050);
        s.shard_finished(1, 1, 1_060);
        let r = s.report();
        assert_eq!(r.passes, 1);
        assert!(!s.running());
        let pass = r.pass.unwrap();
        assert_eq!(
            (pass.started_unix_ms, pass.ended_unix_ms, pass.bytes_done),
            (1_010, Some(1_060), 200)
        );
        assert_eq!((r.checksum_mismatches, r.io_errors), (1, 0));
        assert_eq!((r.chunks_scrubbed, r.bytes_scrubbed), (2, 200));
        assert_eq!(r.damaged.len(), 1);
        let d = &r.damaged[0];
        assert_eq!(d.chunk_id, id(2).to_hex());
        assert_eq!(
            (d.damage, d.block, d.found_by, d.found_unix_ms),
            (Damage::ChecksumMismatch, Some(4), FoundBy::Scrub, 1_030)
        );
    }

    #[test]
    fn reads_count_too_and_deleted_or_clean_chunks_leave_the_book() {
        let mut s = ScrubState::new(ScrubSettings::OFF, 1, 0, None);
        s.read_failed(id(1), Damage::ChecksumMismatch, Some(0), 5);
        s.read_failed(id(1), Damage::ChecksumMismatch, Some(0), 9);
        s.read_failed(id(2), Damage::Unreadable, None, 6);
        let r = s.report();
        assert_eq!((r.checksum_mismatches, r.io_errors), (2, 1));
        assert_eq!(r.chunks_scrubbed, 0, "reads are not scrubbing");
        assert_eq!(r.damaged.len(), 2);
        assert_eq!(r.damaged[0].found_unix_ms, 5, "the first finding stays");
        assert_eq!(r.damaged[0].found_by, FoundBy::Read);
        s.forget(id(1));
        s.checked(0, id(2), 0, Verdict::Clean, FoundBy::Scrub, 7);
        assert!(s.report().damaged.is_empty());
        // The scrub is off: no pass on request or on time.
        assert!(!s.request());
        assert!(!s.tick(u64::MAX));
    }

    #[test]
    fn the_book_is_bounded() {
        let mut s = ScrubState::new(ON, 1, 0, None);
        for n in 0..(MAX_DAMAGED_REPORTED + 3) {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&(n as u64).to_be_bytes());
            s.read_failed(ChunkId(raw), Damage::Unreadable, None, 1);
        }
        let r = s.report();
        assert_eq!(r.damaged.len(), MAX_DAMAGED_REPORTED);
        assert_eq!(r.damaged_dropped, 3);
        assert_eq!(r.io_errors, MAX_DAMAGED_REPORTED as u64 + 3);
    }

    #[test]
    fn periodic_passes_start_an_interval_after_the_last_one_ended() {
        let mut s = ScrubState::new(ON, 1, 1_000, None);
        assert!(!s.tick(1_000 + 3_599_999));
        assert!(s.tick(1_000 + 3_600_000));
        assert!(!s.tick(u64::MAX), "one runs");
        s.shard_started(0, 1, 0, 0, 4_000_000);
        s.shard_finished(0, 1, 5_000_000);
        assert!(!s.tick(5_000_000 + 3_599_999));
        assert!(s.tick(5_000_000 + 3_600_000));
        assert_eq!(s.round(), 2);
        // Only on request when the interval is zero.
        let mut s = ScrubState::new(
            ScrubSettings {
                interval: Duration::ZERO,
                ..ON
            },
            1,
            0,
            None,
        );
        assert!(!s.tick(u64::MAX));
        assert!(s.request());
    }

    #[test]
    fn the_last_pass_end_kept_from_an_earlier_run_times_the_next_pass() {
        // Restarted 10 s after a pass that ended at 5 000 000: due an interval after it.
        let mut s = ScrubState::new(ON, 1, 5_010_000, Some(5_000_000));
        assert_eq!(s.unpersisted_end(), None);
        assert!(!s.tick(5_000_000 + 3_599_999));
        assert!(s.tick(5_000_000 + 3_600_000));
        s.shard_started(0, 1, 0, 0, 8_600_000);
        assert_eq!(s.unpersisted_end(), None, "not finished");
        s.shard_finished(0, 1, 8_700_000);
        assert_eq!(s.unpersisted_end(), Some(8_700_000));
        s.persisted(8_700_000);
        assert_eq!(s.unpersisted_end(), None);
    }

    #[test]
    fn pacing_spreads_reads_at_the_rate_without_bursting_after_a_stall() {
        let ms = Duration::from_millis;
        // 1 MiB at 10 MiB/s: 100 ms apart.
        let (due, wait) = pace(ms(0), ms(0), 1 << 20, 10 << 20);
        assert_eq!((due, wait), (ms(100), ms(100)));
        let (due, wait) = pace(due, ms(100), 1 << 20, 10 << 20);
        assert_eq!((due, wait), (ms(200), ms(100)));
        // Ten seconds stalled: the next read waits a little again, no catching up.
        let (due, wait) = pace(due, ms(10_200), 1 << 20, 10 << 20);
        assert_eq!((due, wait), (ms(10_200), Duration::ZERO));
        let (_, wait) = pace(due, ms(10_200), 1 << 20, 10 << 20);
        assert_eq!(wait, ms(100));
    }
}
