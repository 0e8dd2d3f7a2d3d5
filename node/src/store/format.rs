//! Chunk file format, versions 1 and 2: pure encode/decode of the header and the crc32c
//! table. Version 2 adds the file's facts (name, content type, upload start) for a rebuild of
//! the gateway's metadata from the nodes; a chunk put without facts is still written as
//! version 1.
//!
//! The byte layout is specified in `node/STORAGE-FORMAT.md`; keep the two in step. Decoding
//! never panics on arbitrary input: every failure is a typed [`FormatError`].

use super::types::{ChunkId, ChunkMeta, ChunkStat, ChunkState, FileFacts};
use sixfold_wire::crc::Shift;

/// First 8 bytes of every chunk file.
pub const MAGIC: [u8; 8] = *b"SIXFCHNK";
/// The newest version this code writes (for chunks put with file facts; version 1 without).
/// Readers accept every version listed in `decode_header`.
pub const FORMAT_VERSION: u16 = 2;
const VERSION_1: u16 = 1;
/// Longest name and content type a version 2 header holds, in bytes.
pub const MAX_FACT_LEN: usize = 1024;
const CREATED_AT: usize = 108;
const NAME_LEN_AT: usize = 116;
const CONTENT_TYPE_PRESENT_AT: usize = 118;
const CONTENT_TYPE_LEN_AT: usize = 120;
const NAME_AT: usize = 128;
const CONTENT_TYPE_AT: usize = NAME_AT + MAX_FACT_LEN;
/// O_DIRECT alignment of every offset and length the store submits.
pub const ALIGN: u64 = 4096;
/// Size of the header block at offset 0.
pub const HEADER_SIZE: usize = 4096;
/// Size of a checksummed body block (and of a pool buffer).
pub const BLOCK_SIZE: u64 = 1 << 20;
/// Largest chunk body: its crc table (4 bytes per block) must fit one 1 MiB buffer.
pub const MAX_CHUNK_LEN: u64 = (BLOCK_SIZE / 4) * BLOCK_SIZE;

const STATE_WRITING: u8 = 1;
const STATE_COMPLETE: u8 = 2;
const HEADER_CRC_AT: usize = HEADER_SIZE - 4;

/// Why bytes are not a valid chunk header or crc table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("header is {0} bytes, expected {HEADER_SIZE}")]
    TooShort(usize),
    #[error("bad magic (not a chunk file)")]
    BadMagic,
    #[error("unsupported chunk format version {0}")]
    UnsupportedVersion(u16),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("invalid header field {field}: {value}")]
    InvalidField { field: &'static str, value: u64 },
    #[error("crc table checksum mismatch")]
    TableChecksum,
    #[error("invalid file facts in the header: {0}")]
    InvalidFacts(&'static str),
    #[error("crc table region holds {have} bytes, {need} needed")]
    TableTooShort { have: usize, need: usize },
}

/// Where the parts of a chunk file of a given body length live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub length: u64,
    pub block_count: u64,
    pub table_offset: u64,
    /// Bytes reserved for the crc table (aligned; 0 for an empty body).
    pub table_region: u64,
    pub body_offset: u64,
}

impl Layout {
    pub fn for_length(length: u64) -> Result<Layout, FormatError> {
        if length > MAX_CHUNK_LEN {
            return Err(FormatError::InvalidField {
                field: "length",
                value: length,
            });
        }
        let block_count = blocks_for(length);
        let table_region = round_up(block_count * 4, ALIGN);
        let table_offset = HEADER_SIZE as u64;
        Ok(Layout {
            length,
            block_count,
            table_offset,
            table_region,
            body_offset: table_offset + table_region,
        })
    }

    /// Body bytes in `block` (the last block may be short).
    pub fn block_len(&self, block: u64) -> u64 {
        let start = block * BLOCK_SIZE;
        self.length.saturating_sub(start).min(BLOCK_SIZE)
    }

    /// Size of the file once Complete.
    pub fn file_len(&self) -> u64 {
        self.body_offset + self.length
    }
}

/// Number of blocks covering `len` body bytes.
pub fn blocks_for(len: u64) -> u64 {
    len.div_ceil(BLOCK_SIZE)
}

pub fn round_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

/// Decoded chunk header: the chunk's stat, the checksum of its crc table, and (version 2) the
/// facts of its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub stat: ChunkStat,
    /// crc32c of the little-endian table entries of the durable blocks.
    pub table_crc32c: u32,
    /// Present: written as version 2; absent: version 1.
    pub facts: Option<FileFacts>,
}

impl ChunkHeader {
    pub fn version(&self) -> u16 {
        if self.facts.is_some() {
            FORMAT_VERSION
        } else {
            VERSION_1
        }
    }
}

/// Writes the header into `out[..HEADER_SIZE]` (unused bytes zeroed). Fails only for a length
/// no layout exists for, or facts longer than a header holds.
///
/// Panics if `out` is shorter than [`HEADER_SIZE`] (a caller bug, never data dependent).
pub fn encode_header(h: &ChunkHeader, out: &mut [u8]) -> Result<(), FormatError> {
    let s = &h.stat;
    let layout = Layout::for_length(s.meta.length)?;
    let out = &mut out[..HEADER_SIZE];
    out.fill(0);
    out[0..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&h.version().to_le_bytes());
    // 10..12 flags, zero in version 1.
    out[12..16].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    out[16..32].copy_from_slice(&s.chunk_id.0);
    out[32..48].copy_from_slice(&s.meta.file_id);
    out[48..52].copy_from_slice(&s.meta.part_index.to_le_bytes());
    out[52..56].copy_from_slice(&s.meta.part_count.to_le_bytes());
    out[56..64].copy_from_slice(&s.meta.file_offset.to_le_bytes());
    out[64..72].copy_from_slice(&s.meta.length.to_le_bytes());
    out[72..80].copy_from_slice(&s.durable_len.to_le_bytes());
    out[80..88].copy_from_slice(&layout.table_offset.to_le_bytes());
    out[88..96].copy_from_slice(&layout.body_offset.to_le_bytes());
    out[96..100].copy_from_slice(&s.crc32c.to_le_bytes());
    out[100..104].copy_from_slice(&h.table_crc32c.to_le_bytes());
    out[104] = match s.state {
        ChunkState::Writing => STATE_WRITING,
        ChunkState::Complete => STATE_COMPLETE,
    };
    if let Some(f) = &h.facts {
        encode_facts(f, out)?;
    }
    let crc = crc32c::crc32c(&out[..HEADER_CRC_AT]);
    out[HEADER_CRC_AT..HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes and validates a header block.
pub fn decode_header(b: &[u8]) -> Result<ChunkHeader, FormatError> {
    if b.len() < HEADER_SIZE {
        return Err(FormatError::TooShort(b.len()));
    }
    let b = &b[..HEADER_SIZE];
    if b[0..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    // The version is checked before the checksum: a later version may place its checksum
    // elsewhere, and "unsupported version" is the useful answer then.
    let version = u16_at(b, 8);
    if version != VERSION_1 && version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    if crc32c::crc32c(&b[..HEADER_CRC_AT]) != u32_at(b, HEADER_CRC_AT) {
        return Err(FormatError::HeaderChecksum);
    }
    let mut header = decode_v1_fields(b)?;
    if version == FORMAT_VERSION {
        header.facts = Some(decode_facts(b)?);
    }
    Ok(header)
}

fn encode_facts(f: &FileFacts, out: &mut [u8]) -> Result<(), FormatError> {
    let ct = f.content_type.as_deref();
    if f.name.len() > MAX_FACT_LEN || ct.is_some_and(|c| c.len() > MAX_FACT_LEN) {
        return Err(FormatError::InvalidFacts(
            "name or content type longer than 1024 bytes",
        ));
    }
    out[CREATED_AT..CREATED_AT + 8].copy_from_slice(&f.created_unix_ms.to_le_bytes());
    out[NAME_LEN_AT..NAME_LEN_AT + 2].copy_from_slice(&(f.name.len() as u16).to_le_bytes());
    out[NAME_AT..NAME_AT + f.name.len()].copy_from_slice(f.name.as_bytes());
    if let Some(ct) = ct {
        out[CONTENT_TYPE_PRESENT_AT] = 1;
        out[CONTENT_TYPE_LEN_AT..CONTENT_TYPE_LEN_AT + 2]
            .copy_from_slice(&(ct.len() as u16).to_le_bytes());
        out[CONTENT_TYPE_AT..CONTENT_TYPE_AT + ct.len()].copy_from_slice(ct.as_bytes());
    }
    Ok(())
}

fn decode_facts(b: &[u8]) -> Result<FileFacts, FormatError> {
    let text = |at: usize, len: usize| -> Result<String, FormatError> {
        if len > MAX_FACT_LEN {
            return Err(FormatError::InvalidFacts("a length is over 1024 bytes"));
        }
        std::str::from_utf8(&b[at..at + len])
            .map(str::to_owned)
            .map_err(|_| FormatError::InvalidFacts("not UTF-8"))
    };
    let name = text(NAME_AT, usize::from(u16_at(b, NAME_LEN_AT)))?;
    let ct_len = usize::from(u16_at(b, CONTENT_TYPE_LEN_AT));
    let content_type = match b[CONTENT_TYPE_PRESENT_AT] {
        0 if ct_len == 0 => None,
        1 => Some(text(CONTENT_TYPE_AT, ct_len)?),
        _ => return Err(FormatError::InvalidFacts("bad content type presence flag")),
    };
    Ok(FileFacts {
        name,
        content_type,
        created_unix_ms: u64_at(b, CREATED_AT),
    })
}

fn decode_v1_fields(b: &[u8]) -> Result<ChunkHeader, FormatError> {
    let invalid = |field: &'static str, value: u64| FormatError::InvalidField { field, value };
    let flags = u16_at(b, 10);
    if flags != 0 {
        return Err(invalid("flags", u64::from(flags)));
    }
    let block_size = u32_at(b, 12);
    if u64::from(block_size) != BLOCK_SIZE {
        return Err(invalid("block_size", u64::from(block_size)));
    }
    let meta = ChunkMeta {
        file_id: arr16(b, 32),
        part_index: u32_at(b, 48),
        part_count: u32_at(b, 52),
        file_offset: u64_at(b, 56),
        length: u64_at(b, 64),
    };
    if meta.part_index >= meta.part_count {
        return Err(invalid("part_index", u64::from(meta.part_index)));
    }
    let layout = Layout::for_length(meta.length)?;
    let table_offset = u64_at(b, 80);
    if table_offset != layout.table_offset {
        return Err(invalid("table_offset", table_offset));
    }
    let body_offset = u64_at(b, 88);
    if body_offset != layout.body_offset {
        return Err(invalid("body_offset", body_offset));
    }
    let state = match b[104] {
        STATE_WRITING => ChunkState::Writing,
        STATE_COMPLETE => ChunkState::Complete,
        other => return Err(invalid("state", u64::from(other))),
    };
    let durable_len = u64_at(b, 72);
    let durable_ok = match state {
        ChunkState::Complete => durable_len == meta.length,
        // Interrupted puts only record whole blocks.
        ChunkState::Writing => durable_len <= meta.length && durable_len.is_multiple_of(BLOCK_SIZE),
    };
    if !durable_ok {
        return Err(invalid("durable_len", durable_len));
    }
    Ok(ChunkHeader {
        stat: ChunkStat {
            chunk_id: ChunkId(arr16(b, 16)),
            meta,
            durable_len,
            crc32c: u32_at(b, 96),
            state,
        },
        table_crc32c: u32_at(b, 100),
        facts: None,
    })
}

/// crc32c over the little-endian encoding of `crcs` (what the header's table checksum covers).
pub fn table_crc(crcs: &[u32]) -> u32 {
    crcs.iter()
        .fold(0, |acc, c| crc32c::crc32c_append(acc, &c.to_le_bytes()))
}

/// Writes `crcs` little-endian into the start of `out`.
///
/// Panics if `out` is shorter than `4 * crcs.len()` (a caller bug).
pub fn encode_table(crcs: &[u32], out: &mut [u8]) {
    for (slot, c) in out.chunks_exact_mut(4).zip(crcs) {
        slot.copy_from_slice(&c.to_le_bytes());
    }
}

/// Reads `count` entries from a table region and checks them against `expected_crc`.
pub fn decode_table(b: &[u8], count: usize, expected_crc: u32) -> Result<Vec<u32>, FormatError> {
    let need = count.checked_mul(4).ok_or(FormatError::TableTooShort {
        have: b.len(),
        need: usize::MAX,
    })?;
    if b.len() < need {
        return Err(FormatError::TableTooShort {
            have: b.len(),
            need,
        });
    }
    let crcs: Vec<u32> = b[..need]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if table_crc(&crcs) != expected_crc {
        return Err(FormatError::TableChecksum);
    }
    Ok(crcs)
}

/// crc32c of the body prefix covered by `crcs` (block i holding `layout.block_len(i)` bytes),
/// combined from the block crcs so no byte has to be read again. Every block but a short last
/// one has [`BLOCK_SIZE`] bytes, so one operator for that length serves them all.
pub fn combine_block_crcs(crcs: &[u32], layout: &Layout) -> u32 {
    let full = Shift::bytes(BLOCK_SIZE);
    crcs.iter().enumerate().fold(0, |acc, (i, c)| {
        let len = layout.block_len(i as u64);
        if len == BLOCK_SIZE {
            full.combine(acc, *c)
        } else {
            Shift::bytes(len).combine(acc, *c)
        }
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(state: ChunkState, length: u64, durable_len: u64) -> ChunkHeader {
        ChunkHeader {
            stat: ChunkStat {
                chunk_id: ChunkId([7; 16]),
                meta: ChunkMeta {
                    file_id: [9; 16],
                    part_index: 2,
                    part_count: 6,
                    file_offset: 123_456_789,
                    length,
                },
                durable_len,
                crc32c: 0xdead_beef,
                state,
            },
            table_crc32c: 0x0123_4567,
            facts: None,
        }
    }

    fn encoded(h: &ChunkHeader) -> Vec<u8> {
        let mut b = vec![0xaa; HEADER_SIZE];
        encode_header(h, &mut b).unwrap();
        b
    }

    #[test]
    fn header_round_trip() {
        for h in [
            sample(
                ChunkState::Complete,
                5 * BLOCK_SIZE + 123,
                5 * BLOCK_SIZE + 123,
            ),
            sample(ChunkState::Writing, 5 * BLOCK_SIZE + 123, 3 * BLOCK_SIZE),
            sample(ChunkState::Complete, 0, 0),
            sample(ChunkState::Writing, MAX_CHUNK_LEN, 0),
        ] {
            assert_eq!(decode_header(&encoded(&h)), Ok(h));
        }
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let good = encoded(&sample(ChunkState::Complete, 77, 77));
        for at in 0..HEADER_SIZE {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            assert!(decode_header(&bad).is_err(), "flip at {at} not detected");
        }
    }

    #[test]
    fn header_checksum_mismatch_is_reported() {
        let mut b = encoded(&sample(ChunkState::Complete, 77, 77));
        b[40] ^= 1;
        assert_eq!(decode_header(&b), Err(FormatError::HeaderChecksum));
    }

    #[test]
    fn wrong_version_is_rejected_even_with_valid_checksum() {
        let mut b = encoded(&sample(ChunkState::Complete, 77, 77));
        b[8..10].copy_from_slice(&3u16.to_le_bytes());
        let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&b), Err(FormatError::UnsupportedVersion(3)));
    }

    fn facts() -> FileFacts {
        FileFacts {
            name: "réport 2026.pdf".into(),
            content_type: Some("application/pdf".into()),
            created_unix_ms: 1_780_000_000_123,
        }
    }

    #[test]
    fn version_2_headers_carry_the_file_facts() {
        let mut h = sample(ChunkState::Complete, 77, 77);
        h.facts = Some(facts());
        let b = encoded(&h);
        assert_eq!(u16_at(&b, 8), 2);
        assert_eq!(decode_header(&b), Ok(h.clone()));
        h.facts = Some(FileFacts {
            name: "n".repeat(MAX_FACT_LEN),
            content_type: None,
            created_unix_ms: 0,
        });
        assert_eq!(decode_header(&encoded(&h)), Ok(h.clone()));
        h.facts = Some(FileFacts {
            name: "n".repeat(MAX_FACT_LEN + 1),
            content_type: None,
            created_unix_ms: 0,
        });
        let mut out = vec![0u8; HEADER_SIZE];
        assert!(matches!(
            encode_header(&h, &mut out),
            Err(FormatError::InvalidFacts(_))
        ));
    }

    #[test]
    fn a_chunk_put_without_facts_is_still_written_as_version_1() {
        let b = encoded(&sample(ChunkState::Complete, 77, 77));
        assert_eq!(u16_at(&b, 8), 1);
    }

    /// A version 1 header built field by field from STORAGE-FORMAT.md §2.1, as the first
    /// release wrote it, without this release's encoder.
    #[test]
    fn a_version_1_header_of_the_first_release_decodes() {
        let mut b = vec![0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(b"SIXFCHNK");
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        b[12..16].copy_from_slice(&(1u32 << 20).to_le_bytes());
        b[16..32].copy_from_slice(&[0x11; 16]);
        b[32..48].copy_from_slice(&[0x22; 16]);
        b[48..52].copy_from_slice(&3u32.to_le_bytes());
        b[52..56].copy_from_slice(&6u32.to_le_bytes());
        b[56..64].copy_from_slice(&300u64.to_le_bytes());
        b[64..72].copy_from_slice(&100u64.to_le_bytes());
        b[72..80].copy_from_slice(&100u64.to_le_bytes());
        b[80..88].copy_from_slice(&4096u64.to_le_bytes());
        b[88..96].copy_from_slice(&8192u64.to_le_bytes());
        b[96..100].copy_from_slice(&0xabcd_ef01u32.to_le_bytes());
        b[100..104].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        b[104] = 2;
        let crc = crc32c::crc32c(&b[..4092]);
        b[4092..].copy_from_slice(&crc.to_le_bytes());
        let h = decode_header(&b).unwrap();
        assert_eq!(h.version(), 1);
        assert_eq!(h.facts, None);
        assert_eq!(h.stat.chunk_id, ChunkId([0x11; 16]));
        assert_eq!(h.stat.meta.file_id, [0x22; 16]);
        assert_eq!((h.stat.meta.part_index, h.stat.meta.part_count), (3, 6));
        assert_eq!((h.stat.meta.file_offset, h.stat.meta.length), (300, 100));
        assert_eq!((h.stat.crc32c, h.table_crc32c), (0xabcd_ef01, 0x1234_5678));
        assert_eq!(h.stat.state, ChunkState::Complete);
        // And this release writes the same bytes for it.
        assert_eq!(encoded(&h), b);
    }

    #[test]
    fn bad_magic_and_short_input() {
        let mut b = encoded(&sample(ChunkState::Complete, 1, 1));
        b[0] = b'X';
        assert_eq!(decode_header(&b), Err(FormatError::BadMagic));
        assert_eq!(decode_header(&b[..100]), Err(FormatError::TooShort(100)));
        assert_eq!(
            decode_header(&[0u8; HEADER_SIZE]),
            Err(FormatError::BadMagic)
        );
    }

    #[test]
    fn inconsistent_fields_are_rejected_even_with_valid_checksum() {
        let cases = [
            // Complete but durable != length.
            sample(ChunkState::Complete, 10, 5),
            // Writing with a durable length that is not a whole number of blocks.
            sample(ChunkState::Writing, 3 * BLOCK_SIZE, BLOCK_SIZE + 1),
        ];
        for h in cases {
            assert!(matches!(
                decode_header(&encoded(&h)),
                Err(FormatError::InvalidField {
                    field: "durable_len",
                    ..
                })
            ));
        }
        let mut h = sample(ChunkState::Complete, 1, 1);
        h.stat.meta.part_index = 6;
        assert!(matches!(
            decode_header(&encoded(&h)),
            Err(FormatError::InvalidField {
                field: "part_index",
                ..
            })
        ));
    }

    #[test]
    fn layout_is_aligned() {
        let l = Layout::for_length(0).unwrap();
        assert_eq!((l.block_count, l.table_region, l.body_offset), (0, 0, 4096));
        let l = Layout::for_length(1).unwrap();
        assert_eq!(
            (l.block_count, l.table_region, l.body_offset),
            (1, 4096, 8192)
        );
        let l = Layout::for_length(5 * BLOCK_SIZE + 123).unwrap();
        assert_eq!(l.block_count, 6);
        assert_eq!(l.block_len(5), 123);
        assert_eq!(l.block_len(4), BLOCK_SIZE);
        let l = Layout::for_length(MAX_CHUNK_LEN).unwrap();
        assert_eq!(l.table_region, BLOCK_SIZE);
        assert!(Layout::for_length(MAX_CHUNK_LEN + 1).is_err());
    }

    #[test]
    fn table_round_trip_and_corruption() {
        let crcs = [1u32, 0xffff_ffff, 42, 7];
        let mut region = vec![0u8; 4096];
        encode_table(&crcs, &mut region);
        let crc = table_crc(&crcs);
        assert_eq!(decode_table(&region, 4, crc), Ok(crcs.to_vec()));
        // A prefix is checked against the prefix's crc.
        assert_eq!(
            decode_table(&region, 2, table_crc(&crcs[..2])),
            Ok(crcs[..2].to_vec())
        );
        region[5] ^= 0x10;
        assert_eq!(
            decode_table(&region, 4, crc),
            Err(FormatError::TableChecksum)
        );
        assert_eq!(
            decode_table(&region[..8], 4, crc),
            Err(FormatError::TableTooShort { have: 8, need: 16 })
        );
    }

    #[test]
    fn combined_block_crcs_equal_whole_body_crc() {
        let len = 2 * BLOCK_SIZE + 999;
        let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let layout = Layout::for_length(len).unwrap();
        let crcs: Vec<u32> = body
            .chunks(BLOCK_SIZE as usize)
            .map(crc32c::crc32c)
            .collect();
        assert_eq!(combine_block_crcs(&crcs, &layout), crc32c::crc32c(&body));
        assert_eq!(
            combine_block_crcs(&crcs[..2], &layout),
            crc32c::crc32c(&body[..2 * BLOCK_SIZE as usize])
        );
        assert_eq!(combine_block_crcs(&[], &layout), 0);
    }

    proptest! {
        #[test]
        fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = decode_header(&bytes);
            let _ = decode_table(&bytes, bytes.len() / 3, 0);
        }

        #[test]
        fn decode_header_with_magic_and_version_never_panics(
            tail in proptest::collection::vec(any::<u8>(), HEADER_SIZE - 10),
            fix_crc in any::<bool>(),
        ) {
            let mut b = Vec::with_capacity(HEADER_SIZE);
            b.extend_from_slice(&MAGIC);
            b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            b.extend_from_slice(&tail);
            if fix_crc {
                let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
                b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            }
            if let Ok(h) = decode_header(&b) {
                // Whatever decodes must re-encode to the same bytes.
                let mut again = vec![0u8; HEADER_SIZE];
                prop_assert!(encode_header(&h, &mut again).is_ok());
                prop_assert_eq!(decode_header(&again), Ok(h));
            }
        }
    }
}
