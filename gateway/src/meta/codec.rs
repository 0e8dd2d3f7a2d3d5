//! Encoding of metadata values: one format-version byte followed by the record as JSON.
//!
//! The version byte lets a later release change the encoding (or switch to a binary one) while
//! still reading what this one wrote. JSON keeps the records inspectable and tolerant of added
//! fields (`#[serde(default)]` on new fields, unknown fields ignored).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version byte written in front of every value by this release.
pub const RECORD_FORMAT_V1: u8 = 1;

/// Why a stored value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value (no format version byte)")]
    Empty,
    #[error("unknown record format version {0} (this release reads version {RECORD_FORMAT_V1})")]
    UnknownVersion(u8),
    #[error("malformed record: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("cannot encode record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Encodes `value` as the current record format.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.push(RECORD_FORMAT_V1);
    serde_json::to_writer(&mut out, value).map_err(CodecError::Encode)?;
    Ok(out)
}

/// Decodes a value written by [`encode`]. Never panics, whatever the bytes: serde_json bounds
/// its recursion depth, and every other problem is an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_FORMAT_V1, body)) => {
            serde_json::from_slice(body).map_err(CodecError::Malformed)
        }
        Some((&other, _)) => Err(CodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::records::{
        FileRecord, NodeRecord, NodeState, PartRecord, UploadSession, new_chunk_id,
    };
    use proptest::prelude::*;
    use uuid::Uuid;

    fn sample_file() -> FileRecord {
        FileRecord {
            id: Uuid::new_v4(),
            name: "report \"final\" ✓.pdf".into(),
            content_type: Some("application/pdf".into()),
            size: 3,
            created_unix_ms: 1_700_000_000_000,
            checksum: "00112233445566778899aabbccddeeff".into(),
            parts: vec![PartRecord {
                index: 0,
                offset: 0,
                len: 3,
                node_id: Uuid::new_v4(),
                chunk_id: new_chunk_id(),
                crc32c: 0xdead_beef,
                stored_len: None,
            }],
        }
    }

    #[test]
    fn round_trip() {
        let file = sample_file();
        let bytes = encode(&file).expect("encode");
        assert_eq!(bytes[0], RECORD_FORMAT_V1);
        let back: FileRecord = decode(&bytes).expect("decode");
        assert_eq!(back, file);

        let node = NodeRecord {
            id: Uuid::new_v4(),
            name: "n1".into(),
            shard_addrs: vec![
                "127.0.0.1:7000".parse().expect("addr"),
                "[::1]:7001".parse().expect("addr"),
            ],
            capacity: u64::MAX,
            used: 0,
            chunk_count: 7,
            in_flight: 2,
            state: NodeState::ReadOnly,
            registered_unix_ms: 1,
            last_heartbeat_unix_ms: 2,
            operator_state: None,
        };
        let back: NodeRecord = decode(&encode(&node).expect("encode")).expect("decode");
        assert_eq!(back, node);
    }

    #[test]
    fn chunk_ids_are_stored_as_hex() {
        let file = sample_file();
        let bytes = encode(&file).expect("encode");
        let text = std::str::from_utf8(&bytes[1..]).expect("utf8");
        let hex: String = file.parts[0]
            .chunk_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(text.contains(&format!("\"chunk_id\":\"{hex}\"")), "{text}");
    }

    /// Records as the release before streamed multipart uploads wrote them (no `stored_len`
    /// on parts, no `multipart` on sessions) still decode; and a record with neither extra is
    /// written exactly as before, so that release can read it too.
    #[test]
    fn records_of_the_previous_release_still_decode() {
        let old_file = b"\x01{\"id\":\"8f6b0a4e-1c1e-4a3b-9d0e-2b7f4f0c9a11\",\"name\":\"a.bin\",\
            \"content_type\":null,\"size\":3,\"created_unix_ms\":1700000000000,\
            \"checksum\":\"00112233445566778899aabbccddeeff\",\"parts\":[{\"index\":0,\"offset\":0,\
            \"len\":3,\"node_id\":\"0b0e7f44-6c7a-4b8e-8d2a-5a1f3e9c7d21\",\
            \"chunk_id\":\"000102030405060708090a0b0c0d0e0f\",\"crc32c\":3735928559}]}";
        let file: FileRecord = decode(old_file).expect("old file record");
        assert_eq!(file.parts[0].stored_len, None);
        assert_eq!(file.parts[0].stored_len(), 3);
        assert!(file.parts[0].crc_covers_file_bytes());
        let again = encode(&file).expect("encode");
        assert!(
            !std::str::from_utf8(&again)
                .expect("utf8")
                .contains("stored_len")
        );

        let old_session =
            b"\x01{\"file_id\":\"8f6b0a4e-1c1e-4a3b-9d0e-2b7f4f0c9a11\",\"name\":\"a\",\
            \"content_type\":null,\"size\":3,\"created_unix_ms\":1,\"expires_unix_ms\":2,\
            \"parts\":[{\"index\":0,\"offset\":0,\"len\":3,\
            \"node_id\":\"0b0e7f44-6c7a-4b8e-8d2a-5a1f3e9c7d21\",\
            \"chunk_id\":\"000102030405060708090a0b0c0d0e0f\"}]}";
        let session: UploadSession = decode(old_session).expect("old session");
        assert!(!session.multipart);
        let again = encode(&session).expect("encode");
        assert!(
            !std::str::from_utf8(&again)
                .expect("utf8")
                .contains("multipart")
        );

        // A clipped part round-trips with its stored length.
        let mut file = sample_file();
        file.parts[0].stored_len = Some(40);
        let back: FileRecord = decode(&encode(&file).expect("encode")).expect("decode");
        assert_eq!(back.parts[0].stored_len(), 40);
    }

    #[test]
    fn unknown_version_is_an_error() {
        let mut bytes = encode(&sample_file()).expect("encode");
        bytes[0] = 2;
        assert!(matches!(
            decode::<FileRecord>(&bytes),
            Err(CodecError::UnknownVersion(2))
        ));
        bytes[0] = 0;
        assert!(matches!(
            decode::<FileRecord>(&bytes),
            Err(CodecError::UnknownVersion(0))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(decode::<FileRecord>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<FileRecord>(&[1]),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            decode::<FileRecord>(b"\x01{\"id\":5}"),
            Err(CodecError::Malformed(_))
        ));
        // A truncated record.
        let bytes = encode(&sample_file()).expect("encode");
        assert!(decode::<FileRecord>(&bytes[..bytes.len() / 2]).is_err());
        // A chunk id that is not 32 hex digits.
        let text = String::from_utf8(bytes).expect("utf8");
        let start = text.find("\"chunk_id\":\"").expect("chunk id") + 12;
        let mut bad = text.clone();
        bad.replace_range(start..start + 2, "zz");
        assert!(matches!(
            decode::<FileRecord>(bad.as_bytes()),
            Err(CodecError::Malformed(_))
        ));
        let mut short = text;
        short.replace_range(start..start + 2, "");
        assert!(matches!(
            decode::<FileRecord>(short.as_bytes()),
            Err(CodecError::Malformed(_))
        ));
        // Deep nesting is refused, not a stack overflow.
        let mut deep = vec![1u8];
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(matches!(
            decode::<FileRecord>(&deep),
            Err(CodecError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<FileRecord>(&bytes);
            let _ = decode::<NodeRecord>(&bytes);
        }

        #[test]
        fn mutated_records_never_panic(pos in 0usize..400, byte in any::<u8>()) {
            let mut bytes = encode(&sample_file()).expect("encode");
            let at = pos % bytes.len();
            bytes[at] = byte;
            let _ = decode::<FileRecord>(&bytes);
        }
    }
}
