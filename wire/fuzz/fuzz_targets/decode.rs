//! Any byte string given to the decoders yields a message or an error, never a panic; and any
//! message that decodes re-encodes to exactly the bytes it was decoded from.
//!
//! Random bytes almost never carry a valid header checksum, so the input is decoded twice: as it
//! is, and wrapped in a valid envelope (first byte = kind, the rest = fields) so the field
//! decoders behind the checksum are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixfold_wire::{PREFIX_LEN, PROTOCOL_VERSION, Request, Response};

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some((&kind, fields)) = data.split_first() {
        check(&envelope(kind, fields));
    }
});

fn check(bytes: &[u8]) {
    let _ = sixfold_wire::try_decode_request(bytes);
    let _ = sixfold_wire::try_decode_response(bytes);
    if let Ok((req, used)) = Request::decode(bytes) {
        assert_eq!(req.to_vec(), &bytes[..used]);
    }
    if let Ok((resp, used)) = Response::decode(bytes) {
        assert_eq!(resp.to_vec(), &bytes[..used]);
    }
}

fn envelope(kind: u8, fields: &[u8]) -> Vec<u8> {
    let fields = &fields[..fields.len().min(60_000)];
    let mut buf = Vec::with_capacity(PREFIX_LEN + fields.len() + 4);
    buf.extend_from_slice(b"SXFW");
    buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    buf.push(kind);
    buf.push(0);
    buf.extend_from_slice(&((PREFIX_LEN + fields.len() + 4) as u32).to_le_bytes());
    buf.extend_from_slice(fields);
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}
