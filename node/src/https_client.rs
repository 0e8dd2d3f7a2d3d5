//! A small blocking HTTPS/1.1 client for the registration thread: one JSON POST per
//! connection, over `rustls::StreamOwned`, presenting the node certificate and accepting the
//! gateway only by its chain to the cluster CA and its gateway role (see
//! `sixfold_certs::registration_client_config`). ureq 3 cannot take a custom rustls verifier,
//! and a host name is not what identifies the gateway inside the cluster.
//!
//! Every step is bounded: connect, each read and write (socket timeouts), the whole exchange
//! (a deadline checked between reads), and the response size.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Largest response head read.
const MAX_HEAD: usize = 16 << 10;
/// Largest response body read (an ack or an error is far smaller).
pub const MAX_BODY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad HTTP response: {0}")]
    Response(String),
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Posts to one `https://HOST:PORT`.
#[derive(Clone)]
pub struct HttpsClient {
    config: Arc<ClientConfig>,
    /// `HOST:PORT` as given.
    authority: String,
    host: String,
    connect_timeout: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// `base` is `https://HOST:PORT` (checked by the node's config).
    pub fn new(
        config: Arc<ClientConfig>,
        base: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, HttpsError> {
        let authority = base
            .strip_prefix("https://")
            .unwrap_or(base)
            .trim_end_matches('/')
            .to_owned();
        let host = match authority.rsplit_once(':') {
            Some((host, _)) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            None => return Err(HttpsError::Resolve(authority)),
        };
        Ok(Self {
            config,
            authority,
            host,
            connect_timeout,
            timeout,
        })
    }

    /// POSTs `body` as JSON to `path` and reads the answer.
    pub fn post_json(&self, path: &str, body: &[u8]) -> Result<HttpsResponse, HttpsError> {
        let deadline = Instant::now() + self.timeout;
        let tcp = self.connect()?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let _ = tcp.set_nodelay(true);
        // The name only selects SNI; the verifier checks the CA and the gateway role.
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| HttpsError::Resolve(format!("{}: {e}", self.host)))?;
        let conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| HttpsError::Io(io::Error::other(e)))?;
        let mut tls = StreamOwned::new(conn, tcp);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        );
        tls.write_all(head.as_bytes())?;
        tls.write_all(body)?;
        tls.flush()?;
        read_response(&mut tls, deadline)
    }

    fn connect(&self) -> Result<TcpStream, HttpsError> {
        let addrs = self
            .authority
            .to_socket_addrs()
            .map_err(|e| HttpsError::Resolve(format!("{}: {e}", self.authority)))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some((addr, e)),
            }
        }
        match last {
            Some((addr, source)) => Err(HttpsError::Connect {
                addr: addr.to_string(),
                source,
            }),
            None => Err(HttpsError::Resolve(self.authority.clone())),
        }
    }
}

/// Reads a status line, headers and a `Content-Length` (or to-EOF) body, bounded in size and
/// by `deadline`.
pub fn read_response(
    stream: &mut impl Read,
    deadline: Instant,
) -> Result<HttpsResponse, HttpsError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (status, body_start, length) = loop {
        if Instant::now() > deadline {
            return Err(HttpsError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "response not complete in time",
            )));
        }
        let n = read_some(stream, &mut chunk)?;
        if n == 0 {
            return Err(HttpsError::Response(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response
                    .code
                    .ok_or_else(|| HttpsError::Response("no status code".into()))?;
                let mut length = None;
                for h in response.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let text = std::str::from_utf8(h.value)
                            .map_err(|_| HttpsError::Response("bad Content-Length".into()))?;
                        length = Some(
                            text.trim()
                                .parse::<usize>()
                                .map_err(|_| HttpsError::Response("bad Content-Length".into()))?,
                        );
                    }
                }
                break (status, len, length);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(HttpsError::Response("response head too large".into()));
            }
            Err(e) => return Err(HttpsError::Response(e.to_string())),
        }
    };
    if length.is_some_and(|l| l > MAX_BODY) {
        return Err(HttpsError::Response(format!(
            "response body over {MAX_BODY} bytes"
        )));
    }
    let mut body = buf.split_off(body_start);
    let wanted = length.unwrap_or(MAX_BODY);
    while body.len() < wanted {
        if Instant::now() > deadline {
            return Err(HttpsError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "response body not complete in time",
            )));
        }
        let n = read_some(stream, &mut chunk)?;
        if n == 0 {
            if length.is_some() {
                return Err(HttpsError::Response("response body cut short".into()));
            }
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(wanted);
    Ok(HttpsResponse { status, body })
}

/// A read where a TLS peer that closes without close_notify counts as end of stream.
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    match stream.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<HttpsResponse, HttpsError> {
        read_response(&mut &bytes[..], Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn responses_with_and_without_length_and_bad_ones() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse(b"HTTP/1.1 403 Forbidden\r\n\r\nno").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (403, &b"no"[..]));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(parse(b"garbage\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200").is_err());
    }
}
