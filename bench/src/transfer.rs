//! One upload or one download against the gateway's HTTP API (DESIGN.md §2).

use crate::content::Verifier;
use crate::verify::{ExpectedStream, VerifyError};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why one transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        status: u16,
        code: Option<String>,
        message: String,
        /// `Retry-After` in whole seconds, when the answer carried one.
        retry_after: Option<u64>,
    },
    #[error("{message}")]
    Transport {
        kind: TransportKind,
        message: String,
    },
    #[error("body cut off after {got} of {expected} bytes: {cause}")]
    BodyCut {
        got: u64,
        expected: u64,
        cause: String,
    },
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("verification failed: {0}")]
    Verify(VerifyError),
    #[error("no progress for {0} s, gave up")]
    Stalled(u64),
}

impl TransferError {
    /// A short machine-readable name for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            TransferError::Http { .. } => "http",
            TransferError::Transport { .. } => "transport",
            TransferError::BodyCut { .. } => "short_body",
            TransferError::BadResponse(_) => "bad_response",
            TransferError::Verify(v) => v.kind(),
            TransferError::Stalled(_) => "stalled",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            TransferError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            TransferError::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// What kind of transport failure, for transport errors.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            TransferError::Transport { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// `Retry-After` seconds of an HTTP error answer.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            TransferError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The gateway's admission control said no (`503` with code `busy`): worth a retry later.
    pub fn is_busy(&self) -> bool {
        self.status() == Some(503) && self.code() == Some("busy")
    }

    pub fn offset(&self) -> Option<u64> {
        match self {
            TransferError::Verify(v) => v.offset(),
            TransferError::BodyCut { got, .. } => Some(*got),
            _ => None,
        }
    }
}

/// The gateway's answer to a successful upload.
#[derive(Debug, Clone, Deserialize)]
pub struct UploadResponse {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub size: u64,
    #[serde(default)]
    pub parts: Option<serde_json::Value>,
    #[serde(default)]
    pub checksum: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

/// The error text with its whole cause chain (reqwest's own message alone says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

/// How a request failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The request's own time limit passed.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The peer reset or closed the connection under the request.
    Reset,
    /// Anything else (a protocol error, a body that could not be produced).
    Other,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Timeout => "timeout",
            TransportKind::Connect => "connect",
            TransportKind::Reset => "reset",
            TransportKind::Other => "transport",
        }
    }

    fn of(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return TransportKind::Timeout;
        }
        if e.is_connect() {
            return TransportKind::Connect;
        }
        // reqwest does not say "reset" itself; the io::Error at the bottom of the chain does.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                        return TransportKind::Reset;
                    }
                    TimedOut => return TransportKind::Timeout,
                    _ => {}
                }
            }
            cur = c.source();
        }
        // hyper's "connection closed before message completed" has no io::Error under it, and
        // its error kinds are not reachable through reqwest: its message is all there is.
        let text = error_chain(e);
        if text.contains("connection closed") || text.contains("connection reset") {
            return TransportKind::Reset;
        }
        TransportKind::Other
    }
}

fn transport(e: reqwest::Error) -> TransferError {
    TransferError::Transport {
        kind: TransportKind::of(&e),
        message: error_chain(&e),
    }
}

/// Turns an error response into `TransferError::Http`, keeping the gateway's error code.
async fn http_error(resp: reqwest::Response) -> TransferError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = resp.bytes().await.unwrap_or_default();
    let mut e = http_error_from(status, &body);
    if let TransferError::Http { retry_after: r, .. } = &mut e {
        *r = retry_after;
    }
    e
}

/// `Retry-After` as delay-seconds (RFC 9110 §10.2.3). The HTTP-date form is not used by the
/// gateway and is ignored rather than guessed at.
pub(crate) fn parse_retry_after(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

pub(crate) fn http_error_from(status: u16, body: &[u8]) -> TransferError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => TransferError::Http {
            status,
            code: Some(e.error),
            message: e.message,
            retry_after: None,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            TransferError::Http {
                status,
                code: None,
                message: if text.is_empty() {
                    "(empty body)".to_string()
                } else {
                    text
                },
                retry_after: None,
            }
        }
    }
}

/// The one HTTP client of a run: HTTP/1.1 (one connection per transfer in flight, as a browser
/// or curl would), an idle pool as large as the concurrency so connections are reused rather
/// than re-opened, and, when given, a limit on each request from connect to its last body byte.
pub fn http_client(
    concurrency: usize,
    request_timeout: Option<Duration>,
    token: Option<&str>,
) -> Result<Client, HttpClientError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| HttpClientError::Token)?;
        // Kept out of reqwest's debug output.
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut b = Client::builder()
        .default_headers(headers)
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .user_agent(concat!("sixfold-bench/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = request_timeout {
        b = b.timeout(t);
    }
    Ok(b.build()?)
}

/// Why the bench's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("the access token is not a valid header value")]
    Token,
    #[error(transparent)]
    Build(#[from] reqwest::Error),
}

fn files_url(gateway: &str) -> String {
    format!("{}/files", gateway.trim_end_matches('/'))
}

/// `POST /files` with a body of known length, streamed from `body`.
pub async fn upload(
    client: &Client,
    gateway: &str,
    name: &str,
    size: u64,
    body: ExpectedStream,
) -> Result<UploadResponse, TransferError> {
    let resp = client
        .post(files_url(gateway))
        .header("X-File-Name", name)
        .header(CONTENT_TYPE, "application/octet-stream")
        // hyper keeps a Content-Length the caller set, so the streamed body goes out with a
        // known length instead of chunked encoding.
        .header(CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(http_error(resp).await);
    }
    let text = resp.bytes().await.map_err(transport)?;
    if status != StatusCode::CREATED {
        return Err(TransferError::BadResponse(format!(
            "expected 201 Created, got {status}"
        )));
    }
    parse_upload_response(&text, size)
}

pub(crate) fn parse_upload_response(
    body: &[u8],
    size: u64,
) -> Result<UploadResponse, TransferError> {
    let r: UploadResponse = serde_json::from_slice(body).map_err(|e| {
        TransferError::BadResponse(format!(
            "upload response is not the expected JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    if r.id.is_empty() {
        return Err(TransferError::BadResponse(
            "upload response has an empty id".into(),
        ));
    }
    if r.size != size {
        return Err(TransferError::BadResponse(format!(
            "gateway stored {} bytes, {size} were sent",
            r.size
        )));
    }
    Ok(r)
}

/// `GET /files/{id}`, streamed through `verifier`; `on_bytes` sees every piece's length.
pub async fn download(
    client: &Client,
    gateway: &str,
    id: &str,
    size: u64,
    verifier: &mut Verifier,
    mut on_bytes: impl FnMut(u64),
) -> Result<u64, TransferError> {
    let resp = client
        .get(format!("{}/{id}", files_url(gateway)))
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(http_error(resp).await);
    }
    if status != StatusCode::OK {
        return Err(TransferError::BadResponse(format!(
            "expected 200 OK, got {status}"
        )));
    }
    if let Some(len) = resp.content_length()
        && len != size
    {
        return Err(TransferError::BadResponse(format!(
            "Content-Length is {len}, the file has {size} bytes"
        )));
    }
    let mut body = resp.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece: Bytes = match piece {
            Ok(p) => p,
            // The request's own time limit is a timeout, not a body the gateway cut short.
            Err(e) if e.is_timeout() => return Err(transport(e)),
            Err(e) => {
                return Err(TransferError::BodyCut {
                    got: verifier.verified(),
                    expected: size,
                    cause: error_chain(&e),
                });
            }
        };
        verifier.feed(&piece).await.map_err(TransferError::Verify)?;
        on_bytes(piece.len() as u64);
    }
    verifier.finish().map_err(TransferError::Verify)
}

/// `DELETE /files/{id}`.
pub async fn delete(client: &Client, gateway: &str, id: &str) -> Result<(), TransferError> {
    let resp = client
        .delete(format!("{}/{id}", files_url(gateway)))
        .send()
        .await
        .map_err(transport)?;
    if !resp.status().is_success() {
        return Err(http_error(resp).await);
    }
    Ok(())
}

/// Runs `fut`, giving up with `Stalled` when `progress` has not moved for `limit`.
pub async fn stall_guard<T>(
    fut: impl Future<Output = Result<T, TransferError>>,
    progress: Arc<AtomicU64>,
    limit: Option<Duration>,
) -> Result<T, TransferError> {
    let Some(limit) = limit else {
        return fut.await;
    };
    let watch = async {
        let tick = (limit / 4).max(Duration::from_millis(10));
        let mut last = progress.load(Ordering::Relaxed);
        let mut still = Duration::ZERO;
        loop {
            tokio::time::sleep(tick).await;
            let now = progress.load(Ordering::Relaxed);
            if now == last {
                still += tick;
                if still >= limit {
                    return limit.as_secs();
                }
            } else {
                last = now;
                still = Duration::ZERO;
            }
        }
    };
    tokio::select! {
        r = fut => r,
        secs = watch => Err(TransferError::Stalled(secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_status_and_code() {
        let e = http_error_from(
            503,
            br#"{"error":"not_enough_nodes","message":"2 of 6 up"}"#,
        );
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.code(), Some("not_enough_nodes"));
        assert_eq!(e.kind(), "http");
        assert_eq!(e.to_string(), "HTTP 503 not_enough_nodes: 2 of 6 up");
        let e = http_error_from(502, b"Bad Gateway");
        assert_eq!(e.code(), None);
        assert_eq!(e.to_string(), "HTTP 502: Bad Gateway");
        let e = http_error_from(500, b"");
        assert_eq!(e.to_string(), "HTTP 500: (empty body)");
    }

    #[test]
    fn busy_and_retry_after() {
        let busy = http_error_from(503, br#"{"error":"busy","message":"at the upload limit"}"#);
        assert!(busy.is_busy());
        assert!(!http_error_from(503, br#"{"error":"not_enough_nodes","message":""}"#).is_busy());
        assert!(!http_error_from(429, br#"{"error":"busy","message":""}"#).is_busy());
        assert_eq!(parse_retry_after(" 3 "), Some(3));
        assert_eq!(parse_retry_after("0"), Some(0));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn upload_response_is_checked() {
        let ok = br#"{"id":"6f1c","name":"a","size":10,"parts":6,"checksum":"abc"}"#;
        let r = parse_upload_response(ok, 10).unwrap();
        assert_eq!(r.id, "6f1c");
        assert_eq!(r.parts, Some(serde_json::json!(6)));
        let e = parse_upload_response(ok, 11).unwrap_err();
        assert_eq!(e.kind(), "bad_response");
        assert!(e.to_string().contains("10 bytes"), "{e}");
        assert_eq!(
            parse_upload_response(b"nope", 1).unwrap_err().kind(),
            "bad_response"
        );
        assert_eq!(
            parse_upload_response(br#"{"id":"","size":1}"#, 1)
                .unwrap_err()
                .kind(),
            "bad_response"
        );
    }

    #[test]
    fn stall_guard_gives_up_only_without_progress() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let progress = Arc::new(AtomicU64::new(0));
            let never = std::future::pending::<Result<(), TransferError>>();
            let r = stall_guard(never, progress.clone(), Some(Duration::from_secs(5))).await;
            assert!(matches!(r, Err(TransferError::Stalled(5))));

            // A transfer that keeps moving for longer than the limit is not cut off.
            let p = progress.clone();
            let moving = async move {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    p.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, TransferError>(7)
            };
            let r = stall_guard(moving, progress, Some(Duration::from_secs(5))).await;
            assert_eq!(r.unwrap(), 7);
        });
    }
}
