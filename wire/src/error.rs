use thiserror::Error;

/// Why a byte string is not a valid message. Decoding never panics: every malformed input maps
/// to one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Fewer bytes than the message needs; `needed` is the total the frame needs so far.
    #[error("incomplete frame: need {needed} bytes, have {have}")]
    Incomplete { needed: usize, have: usize },
    #[error("bad magic {0:#010x}: not a sixfold frame")]
    BadMagic(u32),
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    #[error("header checksum mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    HeaderChecksum { expected: u32, actual: u32 },
    #[error("header length {0} is outside the allowed range")]
    BadHeaderLength(usize),
    #[error("unknown operation code {0}")]
    UnknownOp(u8),
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
    #[error("unknown chunk state {0}")]
    UnknownState(u8),
    #[error("field {field} is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("header has {0} trailing bytes after its fields")]
    TrailingBytes(usize),
}
