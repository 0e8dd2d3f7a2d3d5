//! The frame envelope shared by requests and responses: a fixed prefix, the message's fields,
//! and a trailing crc32c over everything before it.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "SXFW"
//! 4       2     protocol version (u16 LE)
//! 6       1     kind: operation code (request) or status code (response)
//! 7       1     reserved, 0
//! 8       4     header length H in bytes, prefix and checksum included (u32 LE)
//! 12      H-16  fields of the message, little-endian, fixed order
//! H-4     4     crc32c of bytes [0, H-4) (u32 LE)
//! ```

use crate::WireError;

pub const MAGIC: [u8; 4] = *b"SXFW";
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes before the fields: magic, version, kind, reserved, length.
pub const PREFIX_LEN: usize = 12;
const CRC_LEN: usize = 4;
/// Smallest possible header: prefix and checksum, no fields.
pub const MIN_HEADER_LEN: usize = PREFIX_LEN + CRC_LEN;
/// Largest header accepted; bounds the memory a peer can make us buffer before a body.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Reads the prefix and returns the total header length, so a reader knows how many bytes to
/// collect before calling a full decode. Needs at least [`PREFIX_LEN`] bytes.
pub fn header_len(prefix: &[u8]) -> Result<usize, WireError> {
    if prefix.len() < PREFIX_LEN {
        return Err(WireError::Incomplete {
            needed: PREFIX_LEN,
            have: prefix.len(),
        });
    }
    let magic = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if prefix[0..4] != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([prefix[4], prefix[5]]);
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    if prefix[7] != 0 {
        return Err(WireError::InvalidField {
            field: "reserved",
            reason: "must be 0 in protocol version 1",
        });
    }
    let len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize;
    if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
        return Err(WireError::BadHeaderLength(len));
    }
    Ok(len)
}

/// Writes one frame: the caller appends fields between [`FrameWriter::new`] and
/// [`FrameWriter::finish`].
pub(crate) struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> FrameWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, kind: u8) -> Self {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        out.push(kind);
        out.push(0);
        out.extend_from_slice(&0u32.to_le_bytes());
        FrameWriter { out, start }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }

    pub(crate) fn finish(self) {
        let len = (self.out.len() - self.start + CRC_LEN) as u32;
        self.out[self.start + 8..self.start + 12].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&self.out[self.start..]);
        self.out.extend_from_slice(&crc.to_le_bytes());
    }
}

/// Reads the fields of one complete, checksum-verified frame. Every read is bounds-checked.
pub(crate) struct FrameReader<'a> {
    fields: &'a [u8],
    pos: usize,
}

impl<'a> FrameReader<'a> {
    /// Verifies the envelope of `buf` (which may hold more than one frame) and returns the
    /// frame's kind byte, a reader over its fields, and the frame's length.
    pub(crate) fn open(buf: &'a [u8]) -> Result<(u8, Self, usize), WireError> {
        let len = header_len(buf)?;
        if buf.len() < len {
            return Err(WireError::Incomplete {
                needed: len,
                have: buf.len(),
            });
        }
        let frame = &buf[..len];
        let (covered, crc) = frame.split_at(len - CRC_LEN);
        let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32c::crc32c(covered);
        if expected != actual {
            return Err(WireError::HeaderChecksum { expected, actual });
        }
        let reader = FrameReader {
            fields: &covered[PREFIX_LEN..],
            pos: 0,
        };
        Ok((frame[6], reader, len))
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.fields.len())
            .ok_or(WireError::InvalidField {
                field,
                reason: "header too short for this field",
            })?;
        let s = &self.fields[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, field)?);
        Ok(u32::from_le_bytes(a))
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn id(&mut self, field: &'static str) -> Result<[u8; 16], WireError> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16, field)?);
        Ok(a)
    }
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        self.take(n, field)
    }

    /// Fields must be consumed exactly: extra bytes mean the peer speaks a different layout.
    pub(crate) fn end(self) -> Result<(), WireError> {
        match self.fields.len() - self.pos {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}
