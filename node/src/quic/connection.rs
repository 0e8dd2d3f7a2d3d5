//! `Connection`: an established QUIC connection and its bidirectional streams.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use quinn_proto::{ConnectionError, ConnectionStats, Dir, VarInt};
use rustls::pki_types::CertificateDer;

use super::state::{ConnShared, SendFlags, register};
use super::stream::{RecvStream, SendStream};

/// A counted application reference to a connection. The connection is closed (code 0) when
/// the last one — of the `Connection` and its streams — is dropped.
pub(crate) struct ConnRef(Rc<ConnShared>);

impl ConnRef {
    pub(crate) fn new(shared: Rc<ConnShared>) -> Self {
        shared.state.borrow_mut().user_refs += 1;
        Self(shared)
    }

    pub(crate) fn shared(&self) -> &ConnShared {
        &self.0
    }
}

impl Clone for ConnRef {
    fn clone(&self) -> Self {
        Self::new(Rc::clone(&self.0))
    }
}

impl Drop for ConnRef {
    fn drop(&mut self) {
        let mut state = self.0.state.borrow_mut();
        state.user_refs -= 1;
        if state.user_refs == 0 && state.error.is_none() {
            state.close(Instant::now(), VarInt::from_u32(0), b"");
            drop(state);
            self.0.signal.notify();
        }
    }
}

/// An established QUIC connection. Cheap to clone; not `Send`.
///
/// The connection is closed with code 0 when this handle, its clones and all its streams are
/// dropped; data still queued on streams is then abandoned.
#[derive(Clone)]
pub struct Connection {
    conn: ConnRef,
}

impl Connection {
    pub(crate) fn new(conn: ConnRef) -> Self {
        Self { conn }
    }

    fn shared(&self) -> &ConnShared {
        self.conn.shared()
    }

    /// The next bidirectional stream opened by the peer, as (receive half, send half);
    /// `None` once the connection is closed ([`Connection::close_reason`] says why).
    pub async fn accept_bi(&self) -> Option<(RecvStream, SendStream)> {
        poll_fn(|cx| {
            let mut state = self.shared().state.borrow_mut();
            if let Some(id) = state.conn.streams().accept(Dir::Bi) {
                state.sends.insert(id, SendFlags::default());
                drop(state);
                // Accepting may grant the peer credit for another stream.
                self.shared().signal.notify();
                return Poll::Ready(Some((
                    RecvStream::new(self.conn.clone(), id),
                    SendStream::new(self.conn.clone(), id),
                )));
            }
            if state.error.is_some() {
                return Poll::Ready(None);
            }
            register(&mut state.accept_bi_wakers, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Opens a bidirectional stream, as (send half, receive half), waiting while the peer's
    /// stream limit is reached. The peer sees the stream once data (or the end) is sent on it.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        poll_fn(|cx| {
            let mut state = self.shared().state.borrow_mut();
            if let Some(error) = &state.error {
                return Poll::Ready(Err(error.clone()));
            }
            if let Some(id) = state.conn.streams().open(Dir::Bi) {
                state.sends.insert(id, SendFlags::default());
                drop(state);
                return Poll::Ready(Ok((
                    SendStream::new(self.conn.clone(), id),
                    RecvStream::new(self.conn.clone(), id),
                )));
            }
            register(&mut state.open_bi_wakers, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Closes the connection at once with an application `code` and `reason`; streams fail with
    /// `ConnectionLost(LocallyClosed)` and unsent data is abandoned.
    pub fn close(&self, code: impl Into<VarInt>, reason: &[u8]) {
        self.shared()
            .state
            .borrow_mut()
            .close(Instant::now(), code.into(), reason);
        self.shared().signal.notify();
    }

    /// Waits until the connection is closed, by either side or by an error, and says why.
    pub async fn closed(&self) -> ConnectionError {
        poll_fn(|cx| {
            let mut state = self.shared().state.borrow_mut();
            if let Some(error) = &state.error {
                return Poll::Ready(error.clone());
            }
            register(&mut state.closed_wakers, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Why the connection ended, or `None` while it is open.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.shared().state.borrow().error.clone()
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.shared().state.borrow().conn.remote_address()
    }

    /// The certificate chain the peer presented (leaf first), for logging and authorisation.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        let state = self.shared().state.borrow();
        let identity = state.conn.crypto_session().peer_identity()?;
        identity
            .downcast::<Vec<CertificateDer<'static>>>()
            .ok()
            .map(|chain| *chain)
    }

    /// Transport statistics: RTT, congestion window, path MTU, packets, losses.
    pub fn stats(&self) -> ConnectionStats {
        self.shared().state.borrow().conn.stats()
    }

    /// The path MTU in use now (largest UDP payload sent).
    pub fn current_mtu(&self) -> u16 {
        self.stats().path.current_mtu
    }

    /// An id for logs, unique among the endpoint's live connections.
    pub fn stable_id(&self) -> usize {
        self.shared().state.borrow().handle.0
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared().state.borrow();
        f.debug_struct("Connection")
            .field("id", &state.handle.0)
            .field("remote", &state.conn.remote_address())
            .field("error", &state.error)
            .finish()
    }
}
