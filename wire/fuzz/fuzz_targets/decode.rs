//! Any byte string given to the decoders yields a message or an error, never a panic; and any
//! message that decodes re-encodes to exactly the bytes it was decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixfold_wire::{Request, Response, try_decode_request, try_decode_response};

fuzz_target!(|data: &[u8]| {
    let _ = try_decode_request(data);
    let _ = try_decode_response(data);
    if let Ok((req, used)) = Request::decode(data) {
        assert_eq!(req.to_vec(), &data[..used]);
    }
    if let Ok((resp, used)) = Response::decode(data) {
        assert_eq!(resp.to_vec(), &data[..used]);
    }
});
