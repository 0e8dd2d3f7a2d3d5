//! A node's inventory entry as the rebuild rules see it.

use sixfold_wire::{ChunkState, InventoryEntry, MarkKind};
use uuid::Uuid;

use super::rules::{CommitMark, Committed, FileFacts, FoundChunk};

/// The chunk `entry` of `node`, not yet verified (the node reads it whole on request).
pub fn found_chunk(node: Uuid, entry: &InventoryEntry) -> FoundChunk {
    let info = &entry.info;
    let commit = match (&entry.mark, entry.header_version) {
        (Some(m), _) if m.kind == MarkKind::Deleted => CommitMark::Deleted,
        (Some(m), _) => CommitMark::Committed(Committed {
            size: m.file_size,
            checksum: format!("{:032x}", u128::from_be_bytes(m.checksum)),
            committed_unix_ms: m.unix_ms,
        }),
        // Version 2 headers come with commit marks: no mark means no commit.
        (None, 2..) => CommitMark::Uploading,
        (None, _) => CommitMark::Unknown,
    };
    FoundChunk {
        node,
        chunk_id: info.chunk_id,
        // A header the node could not read again (version 0) is not trusted.
        complete: info.state == ChunkState::Complete && entry.header_version != 0,
        verified: false,
        crc32c: info.crc32c,
        file_id: Uuid::from_bytes(info.meta.file_id),
        part_index: info.meta.part_index,
        part_count: info.meta.part_count,
        offset: info.meta.file_offset,
        length: info.meta.length,
        file: entry.facts.as_ref().map(|f| FileFacts {
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            created_unix_ms: f.created_unix_ms,
        }),
        commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixfold_wire::{ChunkInfo, ChunkMeta, Mark};

    fn entry(version: u16, mark: Option<Mark>) -> InventoryEntry {
        InventoryEntry {
            info: ChunkInfo {
                chunk_id: [1; 16],
                meta: ChunkMeta {
                    file_id: [2; 16],
                    part_index: 1,
                    part_count: 6,
                    file_offset: 100,
                    length: 100,
                },
                durable_len: 100,
                crc32c: 7,
                state: ChunkState::Complete,
            },
            header_version: version,
            facts: (version == 2).then(|| sixfold_wire::FileFacts {
                name: "a".into(),
                content_type: None,
                created_unix_ms: 5,
            }),
            mark,
        }
    }

    #[test]
    fn marks_and_header_versions_give_the_commit_state() {
        let node = Uuid::from_u128(1);
        let mark = Mark {
            kind: MarkKind::Committed,
            file_size: 550,
            checksum: 0x0123_4567_89ab_cdef_0011_2233_4455_6677u128.to_be_bytes(),
            unix_ms: 9,
        };
        let c = found_chunk(node, &entry(2, Some(mark)));
        assert_eq!(
            c.commit,
            CommitMark::Committed(Committed {
                size: 550,
                checksum: "0123456789abcdef0011223344556677".into(),
                committed_unix_ms: 9,
            })
        );
        assert!(c.complete && !c.verified);
        assert_eq!(
            (c.file_id, c.part_index, c.offset),
            (Uuid::from_bytes([2; 16]), 1, 100)
        );
        assert_eq!(c.file.map(|f| f.name), Some("a".into()));
        assert_eq!(
            found_chunk(node, &entry(2, None)).commit,
            CommitMark::Uploading
        );
        assert_eq!(
            found_chunk(node, &entry(1, None)).commit,
            CommitMark::Unknown
        );
        let deleted = Mark {
            kind: MarkKind::Deleted,
            ..mark
        };
        assert_eq!(
            found_chunk(node, &entry(1, Some(deleted))).commit,
            CommitMark::Deleted
        );
        assert!(!found_chunk(node, &entry(0, None)).complete);
    }
}
