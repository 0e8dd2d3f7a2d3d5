//! The reads a byte range of a file needs, in order: pure, from the file record alone.

use sixfold_wire::ChunkId;
use uuid::Uuid;

use crate::meta::{DamagedFile, FileRecord};
use crate::split::parts_for_range;

/// One read from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub index: u32,
    pub node: Uuid,
    pub chunk_id: ChunkId,
    pub offset: u64,
    pub len: u64,
    /// Set when the read covers the whole part: its stored crc32c, checked on the way out.
    pub whole_crc: Option<u32>,
}

/// The reads that bytes `start..start + len` of `file` need, in order.
pub fn plan_fetches(file: &FileRecord, start: u64, len: u64) -> Vec<Fetch> {
    if len == 0 {
        return Vec::new();
    }
    let ranges = file.ranges();
    parts_for_range(&ranges, start, start + len - 1)
        .filter_map(|slice| {
            let part = file.parts.get(slice.index as usize)?;
            // The stored crc32c can check a read of the whole part only if it covers exactly
            // the file's bytes (not a part that also stores the end of a multipart form).
            let whole =
                slice.offset_in_part == 0 && slice.len == part.len && part.crc_covers_file_bytes();
            Some(Fetch {
                index: part.index,
                node: part.node_id,
                chunk_id: part.chunk_id,
                offset: slice.offset_in_part,
                len: slice.len,
                whole_crc: whole.then_some(part.crc32c),
            })
        })
        .collect()
}

/// The first of `fetches` that reads a part marked damaged in `damage`, if any: such a read
/// is refused before any header of success, never cut off mid-body.
pub fn damaged_fetch<'a>(fetches: &'a [Fetch], damage: &DamagedFile) -> Option<&'a Fetch> {
    fetches.iter().find(|f| damage.has_part(f.index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::PartRecord;

    fn file(lens: &[u64]) -> FileRecord {
        let mut offset = 0;
        let parts = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let p = PartRecord {
                    index: i as u32,
                    offset,
                    len,
                    node_id: Uuid::new_v4(),
                    chunk_id: [i as u8; 16],
                    crc32c: 100 + i as u32,
                    stored_len: None,
                };
                offset += len;
                p
            })
            .collect();
        FileRecord {
            id: Uuid::new_v4(),
            name: "f".into(),
            content_type: None,
            size: offset,
            created_unix_ms: 0,
            checksum: "0".repeat(32),
            parts,
        }
    }

    #[test]
    fn whole_file_reads_whole_parts_with_their_crc() {
        let f = file(&[10, 10, 5]);
        let fetches = plan_fetches(&f, 0, 25);
        assert_eq!(fetches.len(), 3);
        for (i, fetch) in fetches.iter().enumerate() {
            assert_eq!(fetch.index, i as u32);
            assert_eq!(fetch.offset, 0);
            assert_eq!(fetch.len, f.parts[i].len);
            assert_eq!(fetch.whole_crc, Some(100 + i as u32));
            assert_eq!(
                (fetch.node, fetch.chunk_id),
                (f.parts[i].node_id, f.parts[i].chunk_id)
            );
        }
    }

    #[test]
    fn a_read_touching_a_damaged_part_is_found_and_others_are_not() {
        use crate::meta::{DamageKind, DamagedPart, FoundBy};
        let f = file(&[10, 10, 5]);
        let damage = DamagedFile {
            file_id: f.id,
            parts: vec![DamagedPart {
                index: 1,
                node_id: f.parts[1].node_id,
                chunk_id: f.parts[1].chunk_id,
                damage: DamageKind::ChecksumMismatch,
                block: Some(0),
                found_by: FoundBy::Scrub,
                found_unix_ms: 1,
                marked_unix_ms: 2,
            }],
        };
        let whole = plan_fetches(&f, 0, 25);
        assert_eq!(damaged_fetch(&whole, &damage).map(|x| x.index), Some(1));
        let touching = plan_fetches(&f, 19, 2);
        assert_eq!(damaged_fetch(&touching, &damage).map(|x| x.index), Some(1));
        assert!(damaged_fetch(&plan_fetches(&f, 0, 10), &damage).is_none());
        assert!(damaged_fetch(&plan_fetches(&f, 20, 5), &damage).is_none());
    }

    #[test]
    fn ranges_read_only_what_they_touch() {
        let f = file(&[10, 10, 5]);
        let fetches = plan_fetches(&f, 8, 14);
        let shape: Vec<_> = fetches
            .iter()
            .map(|x| (x.index, x.offset, x.len, x.whole_crc))
            .collect();
        assert_eq!(
            shape,
            vec![(0, 8, 2, None), (1, 0, 10, Some(101)), (2, 0, 2, None)]
        );
        assert!(plan_fetches(&f, 0, 0).is_empty());
        assert_eq!(plan_fetches(&f, 24, 1)[0].offset, 4);
    }

    #[test]
    fn parts_storing_more_than_the_file_are_read_without_the_whole_part_crc() {
        // A streamed form: the file ends 3 bytes into part 2, whose chunk also holds the
        // form's trailer; part 3 holds only trailer.
        let mut f = file(&[10, 10, 5, 4]);
        f.parts = f.parts.into_iter().map(|p| p.clipped_to(23)).collect();
        f.size = 23;
        let shape: Vec<_> = plan_fetches(&f, 0, 23)
            .iter()
            .map(|x| (x.index, x.offset, x.len, x.whole_crc))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 0, 10, Some(100)),
                (1, 0, 10, Some(101)),
                (2, 0, 3, None)
            ]
        );
        let shape: Vec<_> = plan_fetches(&f, 21, 2)
            .iter()
            .map(|x| (x.index, x.offset, x.len, x.whole_crc))
            .collect();
        assert_eq!(shape, vec![(2, 1, 2, None)]);
    }
}
