//! The HTTP listener: accepts connections and serves each with hyper, with the limits
//! `axum::serve` cannot set.
//! - At most `max_connections` at once: the accept loop takes a permit *before* it accepts, so
//!   beyond the limit new connections wait in the kernel's accept backlog (and then are refused
//!   by the kernel), never in the gateway's memory or file descriptors.
//! - `header_timeout` and `keepalive_timeout` close quiet connections (see [`super::conn_idle`]).
//! - A graceful shutdown stops accepting, closes idle connections, lets running requests end,
//!   and returns once every connection is closed.
//! - With a [`TlsAcceptor`] ([`serve_tls`]) each connection first does a TLS handshake
//!   (bounded by its own timeout); ALPN picks HTTP/2 or HTTP/1.1, and a verified client
//!   certificate's identity goes into every request's extensions ([`PeerCert`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::conn_idle::{Activity, ConnTimeouts, TrackedBody, WatchedIo, expired};
use super::tls::{PeerCert, TlsAcceptor};
use crate::metrics::Metrics;

/// How the listener serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    pub timeouts: ConnTimeouts,
    pub max_connections: u32,
}

/// After an accept error that is not about one connection (out of file descriptors), wait
/// this long before accepting again rather than spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// At most one warning per this interval that the connection limit is reached.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` (plain HTTP/1.1) until `shutdown` resolves, then shuts down
/// gracefully.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ListenerSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_tls(listener, app, settings, metrics, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    settings: ListenerSettings,
    metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = settings.max_connections.max(1);
    metrics.set_connection_limit(u64::from(max));
    let permits = Arc::new(Semaphore::new(max as usize));
    let (stop, stopped) = watch::channel(false);
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if last_warning.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_INTERVAL) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = max,
                        "HTTP connection limit reached; new connections wait in the accept backlog"
                    );
                }
                tokio::select! {
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let connection = Connection {
                    app: app.clone(),
                    tls: tls.clone(),
                    timeouts: settings.timeouts,
                    metrics: Arc::clone(&metrics),
                    stopped: stopped.clone(),
                    _permit: permit,
                };
                tokio::spawn(connection.serve(stream));
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "accept: connection failed before it was served");
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    () = &mut shutdown => break,
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it is closed.
    let _all = permits.acquire_many(max).await;
    Ok(())
}

/// Errors that concern the one connection being accepted, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs to be served.
struct Connection {
    app: Router,
    tls: Option<TlsAcceptor>,
    timeouts: ConnTimeouts,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
    /// Given back to the accept loop when the connection is closed.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        let _open = self.metrics.connection_opened();
        let activity = Activity::new();
        let io = WatchedIo::new(stream, Arc::clone(&activity));
        let Some(tls) = self.tls.clone() else {
            return self.drive(TokioIo::new(io), activity, false, None).await;
        };
        let handshake = tokio::select! {
            handshake = tls.accept(io) => handshake,
            _ = self.stopped.changed() => return,
        };
        match handshake {
            Ok((stream, negotiated)) => {
                self.drive(
                    TokioIo::new(stream),
                    activity,
                    negotiated.h2,
                    negotiated.peer,
                )
                .await
            }
            Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
        }
    }

    async fn drive<I>(mut self, io: I, activity: Arc<Activity>, h2: bool, peer: Option<PeerCert>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = ConnService {
            app: self.app.clone(),
            activity: Arc::clone(&activity),
            peer,
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The header timeout is ours (see `conn_idle`), so hyper needs no timer.
        builder.http1().header_read_timeout(None);
        // One protocol per connection: HTTP/2 only when ALPN chose it, so plain HTTP stays
        // HTTP/1.1 exactly as before.
        let builder = if h2 {
            builder.http2_only()
        } else {
            builder.http1_only()
        };
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let quiet = expired(&activity, self.timeouts);
        tokio::pin!(quiet);
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                    break;
                }
                _ = self.stopped.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                kind = &mut quiet => {
                    self.metrics.timed_out(kind);
                    tracing::debug!(timeout = kind.label(), "closing a quiet HTTP connection");
                    // Dropping the connection closes the socket.
                    break;
                }
            }
        }
    }
}

/// The router, with each request's bodies tracked for the connection's timeouts.
#[derive(Clone)]
struct ConnService {
    app: Router,
    activity: Arc<Activity>,
    peer: Option<PeerCert>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let open = self.activity.request_started();
        let mut request: Request =
            request.map(|body| Body::new(TrackedBody::new(body, Arc::clone(&open))));
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        let mut app = self.app.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| tower_service::Service::<Request>::poll_ready(&mut app, cx))
                .await?;
            let response = tower_service::Service::call(&mut app, request).await?;
            Ok(response.map(|body| Body::new(TrackedBody::new(body, open))))
        })
    }
}
