//! The rebuild rules: which files the chunks found on the nodes bring back, decided without
//! any I/O from the nodes' inventories, so that every rule is tested on its own.
//!
//! - Only Complete chunks whose crc32c verifies count; the others are quarantined.
//! - A file comes back only when all its parts are there and agree on the part count, the
//!   offsets tile the file from 0, and (version 2 headers) the file facts agree.
//! - Two verified copies of one part with the same crc32c are one part (the extra copy is
//!   quarantined); copies that differ make the set ambiguous, and it is not served.
//! - Commit marks (version 2): a set any of whose chunks is marked deleted stays deleted; a set
//!   none of whose chunks is marked committed is an upload that never got its 201. Neither
//!   comes back. Version 1 chunks carry no mark: a complete, consistent version 1 set is
//!   restored (named after its id, its checksum computed from the bytes), which may bring back a
//!   file deleted or never committed before the loss; the report says which files are such.
//! - Everything not brought back is reported and quarantined, never served and never deleted
//!   by the rebuild itself.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::meta::{ChunkId, PartRecord};

/// What a chunk header says about the file it belongs to (version 2 headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub name: String,
    pub content_type: Option<String>,
    /// When the upload began.
    pub created_unix_ms: u64,
}

/// What a commit mark says: only known once the file was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub size: u64,
    /// xxh3-128, 32 lowercase hex digits.
    pub checksum: String,
    pub committed_unix_ms: u64,
}

/// The commit state a chunk was last told of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitMark {
    /// A version 1 chunk: nothing is known.
    Unknown,
    /// Written by an upload not (yet) known to have committed.
    Uploading,
    /// Its file was committed.
    Committed(Committed),
    /// Its file was deleted.
    Deleted,
}

/// One chunk as a node's inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundChunk {
    pub node: Uuid,
    pub chunk_id: ChunkId,
    /// Every byte is durable (not an interrupted write).
    pub complete: bool,
    /// The chunk's blocks and its whole-chunk crc32c verified when the node read it.
    pub verified: bool,
    pub crc32c: u32,
    pub file_id: Uuid,
    pub part_index: u32,
    pub part_count: u32,
    pub offset: u64,
    /// Bytes in the chunk.
    pub length: u64,
    /// `None` for version 1 headers.
    pub file: Option<FileFacts>,
    pub commit: CommitMark,
}

/// A file the rebuild brings back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredFile {
    pub id: Uuid,
    /// `None`: only version 1 chunks; the file is named after its id.
    pub facts: Option<FileFacts>,
    /// `None`: only version 1 chunks; the checksum must be computed from the bytes before the
    /// file is served.
    pub committed: Option<Committed>,
    pub size: u64,
    /// In part order, clipped to the file's size.
    pub parts: Vec<PartRecord>,
}

/// Why a set of chunks does not come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRestored {
    /// A chunk is marked deleted: a `DELETE` answered 204 for the file.
    Deleted,
    /// No chunk is marked committed: the upload never answered 201.
    NeverCommitted,
    /// Part `0` of the set's parts is missing.
    MissingPart(u32),
    /// The chunks disagree on the part count, a part's offset or length, or the file facts.
    Inconsistent(String),
    /// Two verified copies of a part hold different bytes.
    AmbiguousPart(u32),
}

/// A file id whose chunks do not make a file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrestored {
    pub file_id: Uuid,
    pub why: NotRestored,
    pub chunks: usize,
}

/// The outcome of the rules over every inventory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildPlan {
    pub restore: Vec<RestoredFile>,
    pub not_restored: Vec<Unrestored>,
    /// Chunks no restored file uses: kept aside, never served.
    pub quarantine: Vec<Aside>,
}

/// A chunk set aside, with what its header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aside {
    pub node: Uuid,
    pub chunk_id: ChunkId,
    pub file_id: Uuid,
    pub part_index: u32,
}

impl Aside {
    fn of(c: &FoundChunk) -> Aside {
        Aside {
            node: c.node,
            chunk_id: c.chunk_id,
            file_id: c.file_id,
            part_index: c.part_index,
        }
    }
}

/// Applies the rules to every chunk found.
pub fn plan_rebuild(found: &[FoundChunk]) -> RebuildPlan {
    let mut by_file: BTreeMap<Uuid, Vec<&FoundChunk>> = BTreeMap::new();
    let mut plan = RebuildPlan::default();
    for chunk in found {
        if chunk.complete && chunk.verified {
            by_file.entry(chunk.file_id).or_default().push(chunk);
        } else {
            plan.quarantine.push(Aside::of(chunk));
        }
    }
    for (file_id, chunks) in by_file {
        match assemble(file_id, &chunks) {
            Ok((file, extra)) => {
                plan.quarantine.extend(extra);
                plan.restore.push(file);
            }
            Err(why) => {
                plan.quarantine.extend(chunks.iter().map(|c| Aside::of(c)));
                plan.not_restored.push(Unrestored {
                    file_id,
                    why,
                    chunks: chunks.len(),
                });
            }
        }
    }
    plan
}

type Assembled = (RestoredFile, Vec<Aside>);

fn assemble(file_id: Uuid, chunks: &[&FoundChunk]) -> Result<Assembled, NotRestored> {
    if chunks.iter().any(|c| c.commit == CommitMark::Deleted) {
        return Err(NotRestored::Deleted);
    }
    let any_v2 = chunks.iter().any(|c| c.commit != CommitMark::Unknown);
    let committed = agreed_commit(chunks)?;
    if any_v2 && committed.is_none() {
        return Err(NotRestored::NeverCommitted);
    }
    let count = chunks[0].part_count;
    if count == 0 || chunks.iter().any(|c| c.part_count != count) {
        return Err(NotRestored::Inconsistent(
            "the chunks disagree on the part count".into(),
        ));
    }
    if let Some(c) = chunks.iter().find(|c| c.part_index >= count) {
        return Err(NotRestored::Inconsistent(format!(
            "a chunk claims part {} of {count}",
            c.part_index
        )));
    }
    let facts = agreed_facts(chunks)?;
    let mut parts = Vec::with_capacity(count as usize);
    let mut extra = Vec::new();
    let mut offset = 0u64;
    for index in 0..count {
        let mut copies: Vec<&&FoundChunk> =
            chunks.iter().filter(|c| c.part_index == index).collect();
        // Deterministic choice among equal copies.
        copies.sort_by_key(|c| (c.node, c.chunk_id));
        let Some(first) = copies.first() else {
            return Err(NotRestored::MissingPart(index));
        };
        for other in &copies[1..] {
            if other.crc32c != first.crc32c || other.length != first.length {
                return Err(NotRestored::AmbiguousPart(index));
            }
            if other.offset != first.offset {
                return Err(NotRestored::Inconsistent(format!(
                    "copies of part {index} disagree on its offset"
                )));
            }
            extra.push(Aside::of(other));
        }
        if first.offset != offset {
            return Err(NotRestored::Inconsistent(format!(
                "part {index} starts at {}, expected {offset}",
                first.offset
            )));
        }
        offset = offset
            .checked_add(first.length)
            .ok_or_else(|| NotRestored::Inconsistent(format!("part {index} ends past 2^64")))?;
        parts.push(PartRecord {
            index,
            offset: first.offset,
            len: first.length,
            node_id: first.node,
            chunk_id: first.chunk_id,
            crc32c: first.crc32c,
            stored_len: None,
        });
    }
    let size = match &committed {
        // A streamed form's chunks may run on past the file (its closing boundary).
        Some(c) if c.size <= offset => c.size,
        Some(c) => {
            return Err(NotRestored::Inconsistent(format!(
                "the parts hold {offset} bytes, the file has {}",
                c.size
            )));
        }
        None => offset,
    };
    let parts = parts.into_iter().map(|p| p.clipped_to(size)).collect();
    Ok((
        RestoredFile {
            id: file_id,
            facts,
            committed,
            size,
            parts,
        },
        extra,
    ))
}

/// The commit every committed mark of a set agrees on.
fn agreed_commit(chunks: &[&FoundChunk]) -> Result<Option<Committed>, NotRestored> {
    let mut found: Option<&Committed> = None;
    for c in chunks {
        if let CommitMark::Committed(m) = &c.commit {
            match found {
                None => found = Some(m),
                Some(f) if f.size == m.size && f.checksum == m.checksum => {}
                Some(_) => {
                    return Err(NotRestored::Inconsistent(
                        "the commit marks disagree on the file's size or checksum".into(),
                    ));
                }
            }
        }
    }
    Ok(found.cloned())
}

/// The file facts every version 2 chunk of a set agrees on.
fn agreed_facts(chunks: &[&FoundChunk]) -> Result<Option<FileFacts>, NotRestored> {
    let mut facts: Option<&FileFacts> = None;
    for c in chunks {
        match (facts, &c.file) {
            (_, None) => {}
            (None, Some(f)) => facts = Some(f),
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => {
                return Err(NotRestored::Inconsistent(
                    "the chunks disagree on the file's name, content type or start".into(),
                ));
            }
        }
    }
    Ok(facts.cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: Uuid = Uuid::from_u128(0xf11e);

    fn facts() -> FileFacts {
        FileFacts {
            name: "report.pdf".into(),
            content_type: Some("application/pdf".into()),
            created_unix_ms: 1_700_000_000_000,
        }
    }

    fn committed(size: u64) -> CommitMark {
        CommitMark::Committed(Committed {
            size,
            checksum: "0123456789abcdef0123456789abcdef".into(),
            committed_unix_ms: 1_700_000_000_500,
        })
    }

    /// Part `index` of three 10-byte parts, version 2, committed, on node `index + 1`.
    fn part(index: u32) -> FoundChunk {
        FoundChunk {
            node: Uuid::from_u128(u128::from(index) + 1),
            chunk_id: [index as u8 + 1; 16],
            complete: true,
            verified: true,
            crc32c: 0xc0 + index,
            file_id: FILE,
            part_index: index,
            part_count: 3,
            offset: u64::from(index) * 10,
            length: 10,
            file: Some(facts()),
            commit: committed(30),
        }
    }

    fn aside(plan: &RebuildPlan) -> Vec<(Uuid, ChunkId)> {
        plan.quarantine
            .iter()
            .map(|a| (a.node, a.chunk_id))
            .collect()
    }

    fn set() -> Vec<FoundChunk> {
        (0..3).map(part).collect()
    }

    #[test]
    fn all_parts_present_restore_the_file_as_committed() {
        let plan = plan_rebuild(&set());
        assert_eq!(plan.restore.len(), 1);
        assert!(plan.not_restored.is_empty() && plan.quarantine.is_empty());
        let file = &plan.restore[0];
        assert_eq!(file.id, FILE);
        assert_eq!(file.facts, Some(facts()));
        assert_eq!(file.size, 30);
        assert_eq!(
            file.committed.as_ref().map(|c| c.checksum.as_str()),
            Some("0123456789abcdef0123456789abcdef")
        );
        let offsets: Vec<(u64, u64)> = file.parts.iter().map(|p| (p.offset, p.len)).collect();
        assert_eq!(offsets, [(0, 10), (10, 10), (20, 10)]);
        assert_eq!(file.parts[1].node_id, Uuid::from_u128(2));
        assert_eq!(file.parts[2].crc32c, 0xc2);
    }

    #[test]
    fn a_missing_part_keeps_the_set_out_and_quarantined() {
        let mut chunks = set();
        chunks.remove(1);
        let plan = plan_rebuild(&chunks);
        assert!(plan.restore.is_empty());
        assert_eq!(plan.not_restored[0].why, NotRestored::MissingPart(1));
        assert_eq!(plan.quarantine.len(), 2);
    }

    #[test]
    fn a_duplicate_is_one_part_and_its_extra_copy_is_quarantined() {
        let mut chunks = set();
        let mut copy = part(2);
        copy.node = Uuid::from_u128(99);
        copy.chunk_id = [42; 16];
        chunks.push(copy);
        let plan = plan_rebuild(&chunks);
        assert_eq!(plan.restore.len(), 1);
        assert_eq!(plan.restore[0].parts[2].node_id, Uuid::from_u128(3));
        assert_eq!(aside(&plan), vec![(Uuid::from_u128(99), [42; 16])]);

        // Two verified copies with different bytes: which one is the file is unknowable.
        let mut chunks = set();
        let mut other = part(2);
        other.node = Uuid::from_u128(99);
        other.crc32c ^= 1;
        chunks.push(other);
        let plan = plan_rebuild(&chunks);
        assert!(plan.restore.is_empty());
        assert_eq!(plan.not_restored[0].why, NotRestored::AmbiguousPart(2));
        assert_eq!(plan.quarantine.len(), 4);
    }

    #[test]
    fn a_bad_crc_copy_loses_to_the_verifying_one_and_alone_it_is_missing() {
        let mut chunks = set();
        let mut bad = part(0);
        bad.node = Uuid::from_u128(50);
        bad.verified = false;
        chunks.push(bad);
        let plan = plan_rebuild(&chunks);
        assert_eq!(plan.restore.len(), 1);
        assert_eq!(plan.restore[0].parts[0].node_id, Uuid::from_u128(1));
        assert_eq!(aside(&plan), vec![(Uuid::from_u128(50), [1; 16])]);

        let mut chunks = set();
        chunks[0].verified = false;
        let plan = plan_rebuild(&chunks);
        assert_eq!(plan.not_restored[0].why, NotRestored::MissingPart(0));
        assert_eq!(plan.quarantine.len(), 3);
        // An interrupted write counts no more than a bad crc.
        let mut chunks = set();
        chunks[2].complete = false;
        assert_eq!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::MissingPart(2)
        );
    }

    #[test]
    fn commit_marks_keep_deleted_and_uncommitted_files_out() {
        let mut chunks = set();
        chunks[1].commit = CommitMark::Deleted;
        assert_eq!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Deleted
        );

        let mut chunks = set();
        for c in &mut chunks {
            c.commit = CommitMark::Uploading;
        }
        assert_eq!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::NeverCommitted
        );
        // The commit mark reached one node before the crash: the file was committed.
        chunks[0].commit = committed(30);
        assert_eq!(plan_rebuild(&chunks).restore.len(), 1);
        // Marks that disagree on the checksum make the set inconsistent.
        chunks[1].commit = CommitMark::Committed(Committed {
            size: 30,
            checksum: "ffffffffffffffffffffffffffffffff".into(),
            committed_unix_ms: 1,
        });
        assert!(matches!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Inconsistent(_)
        ));
    }

    #[test]
    fn a_mix_of_v1_and_v2_chunks_takes_the_facts_from_v2() {
        let mut chunks = set();
        chunks[0].file = None;
        chunks[0].commit = CommitMark::Unknown;
        chunks[2].file = None;
        chunks[2].commit = CommitMark::Unknown;
        let plan = plan_rebuild(&chunks);
        assert_eq!(plan.restore[0].facts, Some(facts()));

        // Only version 1: restored, named and checksummed later from the bytes.
        for c in &mut chunks {
            c.file = None;
            c.commit = CommitMark::Unknown;
        }
        let plan = plan_rebuild(&chunks);
        assert_eq!(plan.restore[0].facts, None);
        assert_eq!(plan.restore[0].committed, None);
        assert_eq!(plan.restore[0].size, 30);
        assert_eq!(plan.restore[0].parts.len(), 3);
    }

    #[test]
    fn disagreeing_chunks_are_inconsistent() {
        let mut chunks = set();
        chunks[1].part_count = 4;
        assert!(matches!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Inconsistent(_)
        ));
        let mut chunks = set();
        chunks[2].part_index = 3;
        assert!(matches!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Inconsistent(_)
        ));
        let mut chunks = set();
        chunks[2].offset = 21;
        assert!(matches!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Inconsistent(_)
        ));
        let mut chunks = set();
        if let Some(f) = chunks[1].file.as_mut() {
            f.name = "other.pdf".into();
        }
        assert!(matches!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Inconsistent(_)
        ));
        // Parts holding fewer bytes than the file has.
        let mut chunks = set();
        for c in &mut chunks {
            c.commit = committed(31);
        }
        assert!(matches!(
            plan_rebuild(&chunks).not_restored[0].why,
            NotRestored::Inconsistent(_)
        ));
    }

    #[test]
    fn a_streamed_form_is_clipped_to_the_file_size() {
        let mut chunks = set();
        for c in &mut chunks {
            c.commit = committed(15);
        }
        let plan = plan_rebuild(&chunks);
        let parts = &plan.restore[0].parts;
        assert_eq!(
            (parts[1].offset, parts[1].len, parts[1].stored_len()),
            (10, 5, 10)
        );
        assert_eq!(
            (parts[2].offset, parts[2].len, parts[2].stored_len()),
            (15, 0, 10)
        );
    }

    #[test]
    fn several_files_are_judged_one_by_one() {
        let mut chunks = set();
        let mut lone = part(0);
        lone.file_id = Uuid::from_u128(7);
        chunks.push(lone);
        let plan = plan_rebuild(&chunks);
        assert_eq!(plan.restore.len(), 1);
        assert_eq!(plan.not_restored.len(), 1);
        assert_eq!(plan.not_restored[0].file_id, Uuid::from_u128(7));
    }
}
