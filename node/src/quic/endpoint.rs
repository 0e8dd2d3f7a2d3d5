//! `QuicEndpoint`: one UDP socket and every connection on it, owned by one shard thread.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use quinn_proto::VarInt;
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use sixfold_udp_recv::GRO_RECEIVE_MAX;

use super::connection::{ConnRef, Connection};
use super::driver::Driver;
use super::error::{ConnectError, EndpointError};
use super::settings::QuicSettings;
use super::state::{DriverSignal, EndpointShared, EndpointState, register};
use super::udp::UdpIo;

/// A QUIC endpoint on one UDP socket, driven by a task on the current monoio runtime.
///
/// Cheap to clone (a reference). Not `Send`: it belongs to the shard thread that bound it. The
/// runtime must have its timer enabled (`RuntimeBuilder::enable_timer`). The endpoint keeps
/// running while a handle or a connection exists; dropping every handle stops accepting.
#[derive(Clone)]
pub struct QuicEndpoint {
    shared: Rc<EndpointShared>,
}

impl QuicEndpoint {
    /// Binds a server endpoint on `addr`. Mutual TLS, ALPN and the accepted client CAs are
    /// whatever `server_config` says; the transport follows `settings`.
    pub fn bind(
        addr: SocketAddr,
        server_config: Arc<rustls::ServerConfig>,
        settings: &QuicSettings,
    ) -> Result<Self, EndpointError> {
        let transport = Arc::new(settings.transport_config());
        let crypto = QuicServerConfig::try_from(server_config)?;
        let mut server = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::clone(&transport));
        Self::new(addr, Some(Arc::new(server)), transport, settings)
    }

    /// Binds an endpoint that only opens connections (tests, tools).
    pub fn client(addr: SocketAddr, settings: &QuicSettings) -> Result<Self, EndpointError> {
        let transport = Arc::new(settings.transport_config());
        Self::new(addr, None, transport, settings)
    }

    fn new(
        addr: SocketAddr,
        server: Option<Arc<quinn_proto::ServerConfig>>,
        transport: Arc<quinn_proto::TransportConfig>,
        settings: &QuicSettings,
    ) -> Result<Self, EndpointError> {
        let io = UdpIo::bind(addr, settings)?;
        let endpoint_config = Arc::new(settings.endpoint_config()?);
        let accepting = server.is_some();
        let endpoint =
            quinn_proto::Endpoint::new(endpoint_config, server, !io.may_fragment(), None);
        let shared = Rc::new(EndpointShared {
            state: RefCell::new(EndpointState {
                endpoint,
                connections: HashMap::new(),
                accept_queue: VecDeque::new(),
                accept_wakers: Vec::new(),
                idle_wakers: Vec::new(),
                accepting,
                closed: false,
                transport,
            }),
            signal: Rc::new(DriverSignal::default()),
            local_addr: io.local_addr(),
        });
        // A slot holds one coalesced (GRO) receive, and one datagram of any MTU.
        let slot_len = GRO_RECEIVE_MAX.max(usize::from(settings.effective_mtu()));
        let driver = Driver::new(Rc::clone(&shared), io, slot_len);
        drop(monoio::spawn(driver.run()));
        tracing::debug!(local = %shared.local_addr, server = accepting, mtu = settings.effective_mtu(), "QUIC endpoint bound");
        Ok(Self { shared })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The next established incoming connection; `None` once the endpoint is closed.
    /// Connections whose handshake fails (e.g. a client certificate not from the cluster CA)
    /// never show up here.
    pub async fn accept(&self) -> Option<Connection> {
        poll_fn(|cx| {
            let mut state = self.shared.state.borrow_mut();
            while let Some(conn) = state.accept_queue.pop_front() {
                if conn.state.borrow().error.is_none() {
                    return Poll::Ready(Some(Connection::new(ConnRef::new(conn))));
                }
            }
            if !state.accepting {
                return Poll::Ready(None);
            }
            register(&mut state.accept_wakers, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Opens a connection to `addr` and waits for the handshake. `server_name` is checked
    /// against the server's certificate; `client_config` carries the client certificate for
    /// mutual TLS.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
        client_config: Arc<rustls::ClientConfig>,
    ) -> Result<Connection, ConnectError> {
        let crypto = QuicClientConfig::try_from(client_config)?;
        let conn = {
            let mut state = self.shared.state.borrow_mut();
            if state.closed {
                return Err(ConnectError::EndpointClosed);
            }
            let mut config = quinn_proto::ClientConfig::new(Arc::new(crypto));
            config.transport_config(Arc::clone(&state.transport));
            let (handle, conn) =
                state
                    .endpoint
                    .connect(Instant::now(), config, addr, server_name)?;
            state.insert(handle, conn, &self.shared.signal)
        };
        self.shared.signal.notify();
        // Held across the handshake: if this future is dropped, the connection is closed.
        let conn = ConnRef::new(conn);
        poll_fn(|cx| {
            let mut state = conn.shared().state.borrow_mut();
            if let Some(error) = &state.error {
                return Poll::Ready(Err(ConnectError::Connection(error.clone())));
            }
            if state.connected {
                return Poll::Ready(Ok(()));
            }
            state.handshake_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(Connection::new(conn))
    }

    /// Stops taking new connections (they are refused) while established ones carry on; pending
    /// and future `accept` calls return `None`. The first step of a graceful shutdown: stop
    /// accepting, let in-flight requests finish, then [`QuicEndpoint::close`].
    pub fn stop_accepting(&self) {
        self.shared.state.borrow_mut().stop_accepting();
        self.shared.signal.notify();
    }

    /// Closes every connection with `code` and `reason` and stops accepting. Pending and future
    /// `accept` calls return `None`. Data not yet delivered is abandoned: finish streams and wait
    /// for them first for a graceful stop. Use [`QuicEndpoint::wait_idle`] to wait for the
    /// peers to be told.
    pub fn close(&self, code: impl Into<VarInt>, reason: &[u8]) {
        self.shared
            .state
            .borrow_mut()
            .close_all(code.into(), reason);
        self.shared.signal.notify();
    }

    /// Waits until every connection on this endpoint is gone (closed and drained).
    pub async fn wait_idle(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.state.borrow_mut();
            if state.connections.is_empty() {
                return Poll::Ready(());
            }
            register(&mut state.idle_wakers, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Connections currently on the endpoint (including handshaking and draining ones).
    pub fn connection_count(&self) -> usize {
        self.shared.state.borrow().connections.len()
    }
}

impl Drop for QuicEndpoint {
    fn drop(&mut self) {
        // The driver holds one reference; with this handle the last user one goes.
        if Rc::strong_count(&self.shared) == 2 {
            self.stop_accepting();
        }
    }
}
