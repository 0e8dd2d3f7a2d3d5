//! The `aws-chunked` content encoding S3 clients wrap bodies in
//! (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`): decoded as it
//! streams, never stored. Each chunk is `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n`; a
//! chunk of size 0 ends the data, followed by trailer lines (`x-amz-checksum-crc32:...`) and an
//! empty line.
//!
//! The decoder hands the data bytes on as slices of what it was fed (no copy), checks each
//! chunk's signature once the chunk is complete (signed mode, chained from the request's
//! signature), and returns the trailers at the end. Bytes of a chunk go on before its
//! signature is checked: the caller must not commit the upload unless [`Decoder::finish`]
//! succeeds.

use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::sigv4::{Scope, chunk_string_to_sign_hashed, sign};

/// Longest chunk header line (`<size>;chunk-signature=<64 hex>`), and longest trailer line.
const MAX_LINE: usize = 4096;
/// Most trailer bytes in all.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why an `aws-chunked` body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("malformed aws-chunked body: {0}")]
    Malformed(String),
    /// A chunk's signature does not match (signed mode).
    #[error("the signature of chunk {0} does not match")]
    BadChunkSignature(u64),
    /// The decoded length differs from `x-amz-decoded-content-length`.
    #[error("the body decodes to {got} bytes, x-amz-decoded-content-length says {declared}")]
    WrongLength { declared: u64, got: u64 },
    /// The body ended before its final chunk and trailers.
    #[error("the aws-chunked body ended early")]
    Truncated,
}

/// Trailer lines, names lower-cased.
pub type Trailers = Vec<(String, String)>;

/// How chunk signatures are checked.
#[derive(Clone)]
pub enum Signing {
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: no chunk signatures.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: every chunk signed, chained from `seed`.
    Signed {
        key: [u8; 32],
        scope: Scope,
        amz_date: String,
        seed: [u8; 32],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk header line.
    Header,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// After a chunk's data: its `\r\n`.
    DataEnd,
    /// After the final chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// See the module docs.
pub struct Decoder {
    signing: Signing,
    state: State,
    /// A header or trailer line being gathered.
    line: BytesMut,
    /// The signature the current chunk claims.
    claimed: Option<[u8; 32]>,
    previous: [u8; 32],
    hasher: Sha256,
    chunk: u64,
    decoded: u64,
    declared: Option<u64>,
    trailer_bytes: usize,
    trailers: Trailers,
}

impl Decoder {
    /// A decoder; `declared` is `x-amz-decoded-content-length`, when sent.
    pub fn new(signing: Signing, declared: Option<u64>) -> Decoder {
        let previous = match &signing {
            Signing::Signed { seed, .. } => *seed,
            Signing::Unsigned => [0; 32],
        };
        Decoder {
            signing,
            state: State::Header,
            line: BytesMut::new(),
            claimed: None,
            previous,
            hasher: Sha256::new(),
            chunk: 0,
            decoded: 0,
            declared,
            trailer_bytes: 0,
            trailers: Vec::new(),
        }
    }

    /// Decodes `input`, pushing the data bytes it holds to `out`.
    pub fn feed(&mut self, mut input: Bytes, out: &mut Vec<Bytes>) -> Result<(), ChunkedError> {
        while !input.is_empty() {
            match self.state {
                State::Header | State::Trailers => {
                    let Some(line) = self.take_line(&mut input)? else {
                        return Ok(());
                    };
                    if self.state == State::Header {
                        self.header(&line)?;
                    } else {
                        self.trailer(&line)?;
                    }
                }
                State::Data(left) => {
                    let n = (left.min(input.len() as u64)) as usize;
                    let piece = input.split_to(n);
                    if matches!(self.signing, Signing::Signed { .. }) {
                        self.hasher.update(&piece);
                    }
                    self.decoded += n as u64;
                    if let Some(declared) = self.declared
                        && self.decoded > declared
                    {
                        return Err(ChunkedError::WrongLength {
                            declared,
                            got: self.decoded,
                        });
                    }
                    out.push(piece);
                    self.state = if left == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(left - n as u64)
                    };
                }
                State::DataEnd => {
                    let Some(line) = self.take_line(&mut input)? else {
                        return Ok(());
                    };
                    if !line.is_empty() {
                        return Err(ChunkedError::Malformed(format!(
                            "chunk {} is longer than its size",
                            self.chunk
                        )));
                    }
                    self.end_chunk()?;
                    self.state = State::Header;
                }
                State::Done => {
                    return Err(ChunkedError::Malformed(
                        "bytes after the end of the body".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The trailers, once the body ended where it should.
    pub fn finish(self) -> Result<Trailers, ChunkedError> {
        if self.state != State::Done {
            return Err(ChunkedError::Truncated);
        }
        if let Some(declared) = self.declared
            && declared != self.decoded
        {
            return Err(ChunkedError::WrongLength {
                declared,
                got: self.decoded,
            });
        }
        Ok(self.trailers)
    }

    /// Data bytes decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// A whole `\r\n`-terminated line, if `input` completes one; the rest stays in `input`.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, ChunkedError> {
        match memchr::memchr(b'\n', input) {
            Some(at) => {
                self.line.extend_from_slice(&input[..=at]);
                input.advance(at + 1);
                let mut line = std::mem::take(&mut self.line).freeze();
                if line.len() > MAX_LINE + 2 {
                    return Err(ChunkedError::Malformed("a line is too long".into()));
                }
                if !line.ends_with(b"\r\n") {
                    return Err(ChunkedError::Malformed(
                        "a line does not end in CRLF".into(),
                    ));
                }
                line.truncate(line.len() - 2);
                Ok(Some(line))
            }
            None => {
                self.line.extend_from_slice(input);
                input.clear();
                if self.line.len() > MAX_LINE + 2 {
                    return Err(ChunkedError::Malformed("a line is too long".into()));
                }
                Ok(None)
            }
        }
    }

    fn header(&mut self, line: &[u8]) -> Result<(), ChunkedError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| ChunkedError::Malformed("a chunk header is not text".into()))?;
        let (size, ext) = text.split_once(';').unwrap_or((text, ""));
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChunkedError::Malformed(format!(
                "chunk size {size:?} is not hex"
            )));
        }
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| ChunkedError::Malformed(format!("chunk size {size:?} is not hex")))?;
        self.claimed = match ext.strip_prefix("chunk-signature=") {
            Some(sig) => Some(parse_hex32(sig).ok_or_else(|| {
                ChunkedError::Malformed("a chunk signature is not 64 hex digits".into())
            })?),
            None if ext.is_empty() => None,
            None => {
                return Err(ChunkedError::Malformed(format!(
                    "unknown chunk extension {ext:?}"
                )));
            }
        };
        if matches!(self.signing, Signing::Signed { .. }) && self.claimed.is_none() {
            return Err(ChunkedError::Malformed(format!(
                "chunk {} has no signature",
                self.chunk
            )));
        }
        if size == 0 {
            // The final chunk signs the empty string.
            self.end_chunk()?;
            self.state = State::Trailers;
        } else {
            self.state = State::Data(size);
        }
        Ok(())
    }

    /// Checks the signature of the chunk just read (signed mode) and moves to the next.
    fn end_chunk(&mut self) -> Result<(), ChunkedError> {
        let hash = std::mem::replace(&mut self.hasher, Sha256::new()).finalize();
        if let Signing::Signed {
            key,
            scope,
            amz_date,
            ..
        } = &self.signing
        {
            let claimed = self.claimed.take().unwrap_or([0; 32]);
            let expected = sign(
                key,
                &chunk_string_to_sign_hashed(amz_date, scope, &self.previous, &hash),
            );
            // Chunk signatures are not secret, but a constant-time check costs nothing.
            if !constant_time_eq(&expected, &claimed) {
                return Err(ChunkedError::BadChunkSignature(self.chunk));
            }
            self.previous = expected;
        }
        self.chunk += 1;
        Ok(())
    }

    fn trailer(&mut self, line: &[u8]) -> Result<(), ChunkedError> {
        if line.is_empty() {
            self.state = State::Done;
            return Ok(());
        }
        self.trailer_bytes += line.len();
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(ChunkedError::Malformed("the trailers are too long".into()));
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| ChunkedError::Malformed("a trailer is not text".into()))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| ChunkedError::Malformed(format!("trailer {text:?} has no ':'")))?;
        self.trailers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        Ok(())
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi << 4 | lo) as u8;
    }
    Some(out)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::sigv4::{parse_authorization, signing_key};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// The S3 documentation's chunked PUT: 65536 + 1024 bytes of 'a'.
    fn documented() -> (Signing, Vec<u8>) {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        let parsed = parse_authorization(auth).expect("parses");
        let signing = Signing::Signed {
            key: signing_key(SECRET, &parsed.scope),
            scope: parsed.scope,
            amz_date: "20130524T000000Z".into(),
            seed: parsed.signature,
        };
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend_from_slice(&[b'a'; 65_536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        (signing, body)
    }

    /// Feeds `body` in pieces of `piece` bytes.
    fn decode(
        signing: Signing,
        declared: Option<u64>,
        body: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, Trailers), ChunkedError> {
        let mut d = Decoder::new(signing, declared);
        let mut out = Vec::new();
        for p in body.chunks(piece) {
            d.feed(Bytes::copy_from_slice(p), &mut out)?;
        }
        let trailers = d.finish()?;
        Ok((out.concat(), trailers))
    }

    #[test]
    fn the_documented_signed_body_decodes_in_any_pieces() {
        let (signing, body) = documented();
        for piece in [1, 7, 100, 4096, 65_600, body.len()] {
            let (data, trailers) =
                decode(signing.clone(), Some(66_560), &body, piece).expect("decodes");
            assert_eq!(data, vec![b'a'; 66_560], "piece {piece}");
            assert!(trailers.is_empty());
        }
    }

    #[test]
    fn a_changed_byte_or_signature_is_refused() {
        let (signing, mut body) = documented();
        let at = body.len() - 200;
        body[at] = b'b';
        assert_eq!(
            decode(signing.clone(), None, &body, 999).map(|_| ()),
            Err(ChunkedError::BadChunkSignature(1))
        );
        let (_, body) = documented();
        let text = String::from_utf8(body).expect("ascii");
        let swapped = text.replacen("ad80c730", "ad80c731", 1);
        assert_eq!(
            decode(signing.clone(), None, swapped.as_bytes(), 999).map(|_| ()),
            Err(ChunkedError::BadChunkSignature(0))
        );
        let unsigned = text.replacen(
            ";chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "",
            1,
        );
        assert!(matches!(
            decode(signing, None, unsigned.as_bytes(), 999),
            Err(ChunkedError::Malformed(_))
        ));
    }

    #[test]
    fn unsigned_bodies_carry_their_checksum_trailer() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        for piece in [1, 3, body.len()] {
            let (data, trailers) =
                decode(Signing::Unsigned, Some(11), body, piece).expect("decodes");
            assert_eq!(data, b"hello world");
            assert_eq!(
                trailers,
                vec![("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned())]
            );
        }
    }

    #[test]
    fn framing_errors_are_refused() {
        let cases: [(&[u8], &str); 6] = [
            (b"5\r\nhello\r\n0\r\n", "ended early"),
            (b"5\r\nhelloX\r\n0\r\n\r\n", "longer than its size"),
            (b"zz\r\nhello\r\n0\r\n\r\n", "not hex"),
            (b"5\nhello\r\n0\r\n\r\n", "CRLF"),
            (b"5;foo=bar\r\nhello\r\n0\r\n\r\n", "extension"),
            (b"0\r\n\r\nextra", "after the end"),
        ];
        for (body, why) in cases {
            let err = decode(Signing::Unsigned, None, body, 64).expect_err(why);
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        assert_eq!(
            decode(Signing::Unsigned, Some(4), b"5\r\nhello\r\n0\r\n\r\n", 64).map(|_| ()),
            Err(ChunkedError::WrongLength {
                declared: 4,
                got: 5
            })
        );
        assert_eq!(
            decode(Signing::Unsigned, Some(6), b"5\r\nhello\r\n0\r\n\r\n", 64).map(|_| ()),
            Err(ChunkedError::WrongLength {
                declared: 6,
                got: 5
            })
        );
        let long = format!("{}\r\n", "1".repeat(5000));
        assert!(decode(Signing::Unsigned, None, long.as_bytes(), 64).is_err());
    }
}
