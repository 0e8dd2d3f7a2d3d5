//! The request body of PutObject and UploadPart on its way to the upload pipeline: the MD5 (the
//! ETag) and any checksum the client sent (`Content-MD5`, `x-amz-checksum-*` as a header or as
//! an aws-chunked trailer) are computed as the bytes pass, and a mismatch, found when the body
//! ends, ends the stream with an error instead of its end: the upload then aborts before its
//! commit, so nothing is stored. s3s has already decoded aws-chunked framing and checked the
//! SigV4 payload hash and chunk signatures (its errors arrive here as body errors too).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use s3s::crypto::{Checksum, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::{S3Error, S3ErrorCode, TrailingHeaders};

use super::errors;
use super::names::hex;

/// A checksum algorithm of S3's flexible checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algo {
    pub const ALL: [Algo; 5] = [
        Algo::Crc32,
        Algo::Crc32c,
        Algo::Crc64Nvme,
        Algo::Sha1,
        Algo::Sha256,
    ];

    pub fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algo::Sha1 => "x-amz-checksum-sha1",
            Algo::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn from_header(name: &str) -> Option<Algo> {
        let name = name.trim().to_ascii_lowercase();
        Algo::ALL.into_iter().find(|a| a.header() == name)
    }
}

enum Hasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64Nvme(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Crc32 => Hasher::Crc32(Crc32::new()),
            Algo::Crc32c => Hasher::Crc32c(Crc32c::new()),
            Algo::Crc64Nvme => Hasher::Crc64Nvme(Crc64Nvme::new()),
            Algo::Sha1 => Hasher::Sha1(Sha1::new()),
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(h) => h.update(data),
            Hasher::Crc64Nvme(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// The digest, base64 as S3 sends checksums.
    fn finalize(self) -> String {
        let engine = base64::engine::general_purpose::STANDARD;
        match self {
            Hasher::Crc32(h) => engine.encode(h.finalize()),
            Hasher::Crc32c(h) => engine.encode(h.finalize()),
            Hasher::Crc64Nvme(h) => engine.encode(h.finalize()),
            Hasher::Sha1(h) => engine.encode(h.finalize()),
            Hasher::Sha256(h) => engine.encode(h.finalize()),
        }
    }
}

/// What the body must match, from the request's headers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `Content-MD5`, base64.
    pub content_md5: Option<String>,
    /// `x-amz-checksum-*` headers, base64.
    pub checksums: Vec<(Algo, String)>,
    /// The checksum the aws-chunked trailer will carry (`x-amz-trailer`).
    pub trailer: Option<Algo>,
    /// An algorithm asked for without a value (`x-amz-sdk-checksum-algorithm`): computed and
    /// returned, nothing to compare.
    pub requested: Option<Algo>,
}

impl Expected {
    pub fn from_headers(headers: &HeaderMap) -> Expected {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
        };
        let checksums = Algo::ALL
            .into_iter()
            .filter_map(|a| text(a.header()).map(|v| (a, v)))
            .collect();
        let requested = text("x-amz-sdk-checksum-algorithm")
            .or_else(|| text("x-amz-checksum-algorithm"))
            .and_then(|name| Algo::from_header(&format!("x-amz-checksum-{name}")));
        Expected {
            content_md5: text("content-md5"),
            checksums,
            trailer: text("x-amz-trailer").and_then(|t| Algo::from_header(&t)),
            requested,
        }
    }
}

/// What passed: the MD5 (hex, the ETag) and the checksums computed (base64).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    pub md5_hex: String,
    pub checksums: Vec<(Algo, String)>,
}

/// How the body ended, filled in when it does.
#[derive(Debug, Default)]
pub struct Outcome {
    pub digests: Option<Digests>,
    /// The S3 error that ended the body (checksum mismatch, bad chunk signature, ...).
    pub failure: Option<S3Error>,
}

pub type SharedOutcome = Arc<Mutex<Outcome>>;

/// The error a checked body ends with; the S3 error itself is in the [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyFailure(String);

/// A body checked as it passes (see the module documentation).
pub struct CheckedBody<S> {
    inner: S,
    md5: Option<Md5>,
    hashers: Vec<(Algo, Hasher)>,
    expected: Expected,
    trailers: Option<TrailingHeaders>,
    outcome: SharedOutcome,
    finished: bool,
}

impl<S> CheckedBody<S> {
    pub fn new(inner: S, expected: Expected, trailers: Option<TrailingHeaders>) -> Self {
        let mut algos: Vec<Algo> = expected.checksums.iter().map(|(a, _)| *a).collect();
        algos.extend(expected.trailer);
        algos.extend(expected.requested);
        algos.sort_by_key(|a| *a as u8);
        algos.dedup();
        CheckedBody {
            inner,
            md5: Some(Md5::new()),
            hashers: algos.into_iter().map(|a| (a, Hasher::new(a))).collect(),
            expected,
            trailers,
            outcome: SharedOutcome::default(),
            finished: false,
        }
    }

    /// Where the outcome appears once the body ended.
    pub fn outcome(&self) -> SharedOutcome {
        Arc::clone(&self.outcome)
    }

    fn fail(&mut self, error: S3Error) -> BodyFailure {
        let message = error
            .message()
            .map_or_else(|| format!("{:?}", error.code()), str::to_owned);
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome.failure = Some(error);
        }
        self.finished = true;
        BodyFailure(message)
    }

    /// The body ended: finalizes the digests and compares them with what the client sent.
    fn finish(&mut self) -> Result<(), S3Error> {
        let md5 = self.md5.take().map(Md5::finalize).unwrap_or_default();
        if let Some(sent) = &self.expected.content_md5 {
            let ours = base64::engine::general_purpose::STANDARD.encode(md5);
            if sent != &ours {
                return Err(errors::bad_digest(
                    "the Content-MD5 you specified did not match what was received",
                ));
            }
        }
        let mut trailer_value = None;
        if let (Some(algo), Some(trailers)) = (self.expected.trailer, &self.trailers) {
            trailer_value = trailers
                .read(|h| {
                    h.get(algo.header())
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().to_owned())
                })
                .flatten();
        }
        let mut computed = Vec::with_capacity(self.hashers.len());
        for (algo, hasher) in std::mem::take(&mut self.hashers) {
            let ours = hasher.finalize();
            let sent = self
                .expected
                .checksums
                .iter()
                .find(|(a, _)| *a == algo)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    (self.expected.trailer == Some(algo))
                        .then(|| trailer_value.clone())
                        .flatten()
                });
            if let Some(sent) = sent
                && sent != ours
            {
                return Err(errors::bad_digest(format!(
                    "the {} you specified did not match the calculated checksum",
                    algo.header()
                )));
            }
            computed.push((algo, ours));
        }
        let digests = Digests {
            md5_hex: hex(&md5),
            checksums: computed,
        };
        if let Ok(mut outcome) = self.outcome.lock() {
            outcome.digests = Some(digests);
        }
        Ok(())
    }
}

/// Which S3 error a failure of s3s's body decoding is (its error types are private; their
/// names are in the messages).
fn decoding_error(message: &str) -> S3Error {
    let code = if message.contains("SignatureMismatch") {
        S3ErrorCode::SignatureDoesNotMatch
    } else if message.contains("Sha256Mismatch") {
        S3ErrorCode::BadDigest
    } else {
        S3ErrorCode::IncompleteBody
    };
    S3Error::with_message(code, format!("request body: {message}"))
}

impl<S, E> Stream for CheckedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyFailure>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(md5) = &mut this.md5 {
                    md5.update(&bytes);
                }
                for (_, h) in &mut this.hashers {
                    h.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                let error = decoding_error(&e.to_string());
                Poll::Ready(Some(Err(this.fail(error))))
            }
            Poll::Ready(None) => match this.finish() {
                Ok(()) => {
                    this.finished = true;
                    Poll::Ready(None)
                }
                Err(error) => Poll::Ready(Some(Err(this.fail(error)))),
            },
        }
    }
}

/// The S3 error of a failed upload: the body's own failure if it had one, else `fallback`.
pub fn failure_or(outcome: &SharedOutcome, fallback: S3Error) -> S3Error {
    outcome
        .lock()
        .ok()
        .and_then(|mut o| o.failure.take())
        .unwrap_or(fallback)
}

/// The digests of a body that ended well.
pub fn digests(outcome: &SharedOutcome) -> Result<Digests, S3Error> {
    outcome
        .lock()
        .ok()
        .and_then(|o| o.digests.clone())
        .ok_or_else(|| errors::internal("the body ended without its digests"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn body(chunks: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
    }

    async fn run(expected: Expected) -> (Vec<Result<Bytes, BodyFailure>>, SharedOutcome) {
        let checked = CheckedBody::new(body(&[b"hello ", b"world"]), expected, None);
        let outcome = checked.outcome();
        (checked.collect().await, outcome)
    }

    #[tokio::test]
    async fn md5_and_checksums_are_computed_and_checked() {
        // md5("hello world") = 5eb63bbbe01eeed093cb22bb8f5acdc3; crc32 = 0x0d4a1185.
        let good = Expected {
            content_md5: Some("XrY7u+Ae7tCTyyK7j1rNww==".into()),
            checksums: vec![(Algo::Crc32, "DUoRhQ==".into())],
            ..Expected::default()
        };
        let (items, outcome) = run(good).await;
        assert!(items.iter().all(Result::is_ok));
        let d = digests(&outcome).expect("digests");
        assert_eq!(d.md5_hex, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(d.checksums, vec![(Algo::Crc32, "DUoRhQ==".to_owned())]);

        let bad = Expected {
            checksums: vec![(Algo::Crc32, "AAAAAA==".into())],
            ..Expected::default()
        };
        let (items, outcome) = run(bad).await;
        assert!(
            items.last().is_some_and(Result::is_err),
            "ends with an error"
        );
        let e = failure_or(&outcome, errors::internal("none"));
        assert_eq!(e.code(), &S3ErrorCode::BadDigest);

        let bad_md5 = Expected {
            content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
            ..Expected::default()
        };
        let (items, _) = run(bad_md5).await;
        assert!(items.last().is_some_and(Result::is_err));
    }

    #[test]
    fn expectations_come_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-checksum-crc32c", "abc=".parse().expect("value"));
        h.insert(
            "x-amz-trailer",
            "x-amz-checksum-crc32".parse().expect("value"),
        );
        let e = Expected::from_headers(&h);
        assert_eq!(e.checksums, vec![(Algo::Crc32c, "abc=".to_owned())]);
        assert_eq!(e.trailer, Some(Algo::Crc32));
        assert_eq!(
            decoding_error("AwsChunkedStreamError: SignatureMismatch").code(),
            &S3ErrorCode::SignatureDoesNotMatch
        );
    }
}
