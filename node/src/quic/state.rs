//! State shared between the endpoint driver and the application's handles.
//!
//! Everything lives on one shard thread: `Rc<RefCell<_>>`, never `Send`. A `RefCell` borrow is
//! never held across an `.await`, and waking a waker only queues its task (monoio never polls
//! inline), so the driver and the handles cannot observe each other mid-update.
//!
//! Who wakes whom: handles register their task's waker where they wait (a stream's read or
//! write, accept, open) and wake the driver after changing QUIC state, through
//! [`DriverSignal`]; the driver turns quinn-proto events into wake-ups of those wakers.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use quinn_proto::{
    ConnectionError, ConnectionHandle, Dir, Event, Side, StreamEvent, StreamId, VarInt,
};

/// Wakes the endpoint driver after the application changed QUIC state.
#[derive(Default)]
pub(crate) struct DriverSignal {
    waker: Cell<Option<Waker>>,
}

impl DriverSignal {
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }

    pub(crate) fn notify(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The endpoint half: quinn-proto's endpoint, the connections on it and the accept queue.
pub(crate) struct EndpointShared {
    pub(crate) state: RefCell<EndpointState>,
    pub(crate) signal: Rc<DriverSignal>,
    pub(crate) local_addr: SocketAddr,
}

pub(crate) struct EndpointState {
    pub(crate) endpoint: quinn_proto::Endpoint,
    pub(crate) connections: HashMap<ConnectionHandle, Rc<ConnShared>>,
    /// Established incoming connections not yet taken by `accept`.
    pub(crate) accept_queue: VecDeque<Rc<ConnShared>>,
    pub(crate) accept_wakers: Vec<Waker>,
    pub(crate) idle_wakers: Vec<Waker>,
    /// Incoming connections are taken (a server endpoint not closed).
    pub(crate) accepting: bool,
    /// `close` was called: no new connections either way.
    pub(crate) closed: bool,
    pub(crate) transport: Arc<quinn_proto::TransportConfig>,
}

impl EndpointState {
    /// Registers a connection just created by quinn-proto's `connect` or `accept`.
    pub(crate) fn insert(
        &mut self,
        handle: ConnectionHandle,
        conn: quinn_proto::Connection,
        signal: &Rc<DriverSignal>,
    ) -> Rc<ConnShared> {
        let shared = Rc::new(ConnShared {
            state: RefCell::new(ConnState::new(handle, conn)),
            signal: Rc::clone(signal),
        });
        self.connections.insert(handle, Rc::clone(&shared));
        shared
    }

    /// Refuses new connections; queued ones nobody can accept any more are closed (left open,
    /// peer keep-alives would hold them forever).
    pub(crate) fn stop_accepting(&mut self) {
        self.accepting = false;
        let now = Instant::now();
        for conn in self.accept_queue.drain(..) {
            conn.state
                .borrow_mut()
                .close(now, VarInt::from_u32(0), b"not accepting");
        }
        wake_all(&mut self.accept_wakers);
    }

    /// Closes every connection; each is dropped by the driver once drained.
    pub(crate) fn close_all(&mut self, code: VarInt, reason: &[u8]) {
        self.accepting = false;
        self.closed = true;
        let now = Instant::now();
        for conn in self.connections.values() {
            conn.state.borrow_mut().close(now, code, reason);
        }
        for conn in self.accept_queue.drain(..) {
            conn.state.borrow_mut().close(now, code, reason);
        }
        wake_all(&mut self.accept_wakers);
    }
}

/// One connection, shared by the driver and the application's handles.
pub(crate) struct ConnShared {
    pub(crate) state: RefCell<ConnState>,
    pub(crate) signal: Rc<DriverSignal>,
}

/// Per-stream facts the driver learns and a `SendStream` may ask for later.
#[derive(Default)]
pub(crate) struct SendFlags {
    /// The peer acknowledged every byte and the end of the stream.
    pub(crate) acknowledged: bool,
}

pub(crate) struct ConnState {
    pub(crate) conn: quinn_proto::Connection,
    pub(crate) handle: ConnectionHandle,
    pub(crate) connected: bool,
    /// Why the connection ended; set once, then every waiter fails with it.
    pub(crate) error: Option<ConnectionError>,
    /// Live application handles (connection and streams); at zero the connection is closed.
    pub(crate) user_refs: usize,
    pub(crate) handshake_waker: Option<Waker>,
    pub(crate) accept_bi_wakers: Vec<Waker>,
    pub(crate) open_bi_wakers: Vec<Waker>,
    pub(crate) closed_wakers: Vec<Waker>,
    pub(crate) readers: HashMap<StreamId, Waker>,
    pub(crate) writers: HashMap<StreamId, Waker>,
    /// Send halves with a live `SendStream`, so late events are not kept for dead streams.
    pub(crate) sends: HashMap<StreamId, SendFlags>,
}

impl ConnState {
    fn new(handle: ConnectionHandle, conn: quinn_proto::Connection) -> Self {
        Self {
            conn,
            handle,
            connected: false,
            error: None,
            user_refs: 0,
            handshake_waker: None,
            accept_bi_wakers: Vec::new(),
            open_bi_wakers: Vec::new(),
            closed_wakers: Vec::new(),
            readers: HashMap::new(),
            writers: HashMap::new(),
            sends: HashMap::new(),
        }
    }

    pub(crate) fn close(&mut self, now: Instant, code: VarInt, reason: &[u8]) {
        if self.error.is_none() {
            self.conn.close(now, code, Bytes::copy_from_slice(reason));
            self.lost(ConnectionError::LocallyClosed);
        }
    }

    /// Records why the connection ended and wakes every waiter so it can report it.
    pub(crate) fn lost(&mut self, reason: ConnectionError) {
        if self.error.is_none() {
            self.error = Some(reason);
        }
        if let Some(waker) = self.handshake_waker.take() {
            waker.wake();
        }
        wake_all(&mut self.accept_bi_wakers);
        wake_all(&mut self.open_bi_wakers);
        wake_all(&mut self.closed_wakers);
        for (_, waker) in self.readers.drain() {
            waker.wake();
        }
        for (_, waker) in self.writers.drain() {
            waker.wake();
        }
    }

    /// Applies one quinn-proto event; returns true when the handshake just completed.
    pub(crate) fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Connected => {
                self.connected = true;
                if let Some(waker) = self.handshake_waker.take() {
                    waker.wake();
                }
                return true;
            }
            Event::ConnectionLost { reason } => {
                tracing::debug!(
                    connection = self.handle.0,
                    remote = %self.conn.remote_address(),
                    %reason,
                    "QUIC connection lost"
                );
                self.lost(reason);
            }
            Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                wake_all(&mut self.accept_bi_wakers)
            }
            Event::Stream(StreamEvent::Available { dir: Dir::Bi }) => {
                wake_all(&mut self.open_bi_wakers)
            }
            Event::Stream(StreamEvent::Readable { id }) => wake_one(&mut self.readers, id),
            Event::Stream(StreamEvent::Writable { id } | StreamEvent::Stopped { id, .. }) => {
                wake_one(&mut self.writers, id)
            }
            Event::Stream(StreamEvent::Finished { id }) => {
                if let Some(flags) = self.sends.get_mut(&id) {
                    flags.acknowledged = true;
                }
                wake_one(&mut self.writers, id);
            }
            // sixfold uses neither unidirectional streams nor datagrams.
            Event::Stream(
                StreamEvent::Opened { dir: Dir::Uni } | StreamEvent::Available { dir: Dir::Uni },
            )
            | Event::HandshakeDataReady
            | Event::DatagramReceived
            | Event::DatagramsUnblocked => {}
        }
        false
    }

    pub(crate) fn side(&self) -> Side {
        self.conn.side()
    }
}

fn wake_one(wakers: &mut HashMap<StreamId, Waker>, id: StreamId) {
    if let Some(waker) = wakers.remove(&id) {
        waker.wake();
    }
}

pub(crate) fn wake_all(wakers: &mut Vec<Waker>) {
    for waker in wakers.drain(..) {
        waker.wake();
    }
}

/// Adds `waker` to a wait list unless the same task is already on it.
pub(crate) fn register(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}
