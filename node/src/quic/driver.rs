//! The endpoint driver: one task per endpoint moving quinn-proto's state machine.
//!
//! Each turn takes one bounded batch of input (datagrams from the socket, expired timers, what
//! the application did since the last turn), then runs every connection until it has nothing
//! more to say: endpoint events, application events (turned into wake-ups), and transmits until
//! `poll_transmit` is empty or the socket is full. Then it waits on exactly three things: socket
//! readiness, one timer armed at the earliest `poll_timeout()` of all connections, and the
//! application's signal.
//!
//! Pitfalls this shape avoids:
//! - monoio's timer wheel has 1 ms ticks and an elapsed sleep completes at once, so the deadline
//!   is re-read from quinn-proto after every turn and the timer re-armed, never left elapsed;
//! - receives are only ever done synchronously on the non-blocking socket; only readiness is
//!   awaited, so no datagram can be lost to a cancelled receive;
//! - monoio polls a task that woke itself again *before* every other task (`yield_now` pushes it
//!   to the front of the run queue), so a driver that yields by self-waking starves the tasks
//!   reading its streams: their data piles up unread and every receive slot must be replaced.
//!   When a turn stops at its batch bound with work left, the driver instead arms a readiness
//!   wait that is already satisfied; io_uring completes it after the other tasks ran.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use quinn_proto::{DatagramEvent, EcnCodepoint, Side};
use quinn_udp::RecvMeta;
use sixfold_udp_recv::RecvBuffers;

use super::state::{ConnShared, EndpointShared, EndpointState, wake_all};
use super::udp::{Readiness, UdpIo};

/// Receive batches (of up to `quinn_udp::BATCH_SIZE` datagrams each) per turn.
const RECV_BATCHES_PER_TURN: usize = 1;
/// Transmits (each up to `max_gso_segments` datagrams) per connection per turn.
const TRANSMITS_PER_TURN: usize = 64;
/// Turns run in one poll when readiness or the timer fire synchronously.
const TURNS_PER_POLL: usize = 4;

/// What a pass over the connections left to do.
struct Progress {
    /// A connection stopped at the transmit bound with more to send.
    more_output: bool,
    /// Some connection got new input during the pass and needs another one now.
    rerun: bool,
}

/// A transmit the socket refused with `WouldBlock`, kept until it is writable again.
struct PendingTransmit {
    transmit: quinn_proto::Transmit,
    contents: Vec<u8>,
}

pub(crate) struct Driver {
    shared: Rc<EndpointShared>,
    io: UdpIo,
    recv: RecvBuffers,
    send_buf: Vec<u8>,
    pending: Option<PendingTransmit>,
    readable: Option<Readiness>,
    writable: Option<Readiness>,
    timer: Option<Pin<Box<monoio::time::Sleep>>>,
    timer_deadline: Option<Instant>,
    next_timeout: Option<Instant>,
    drained: Vec<quinn_proto::ConnectionHandle>,
    send_errors: SendErrorLog,
}

impl Driver {
    pub(crate) fn new(shared: Rc<EndpointShared>, io: UdpIo, recv_slot_len: usize) -> Self {
        Self {
            shared,
            io,
            recv: RecvBuffers::new(recv_slot_len),
            send_buf: Vec::new(),
            pending: None,
            readable: None,
            writable: None,
            timer: None,
            timer_deadline: None,
            next_timeout: None,
            drained: Vec::new(),
            send_errors: SendErrorLog::default(),
        }
    }

    /// Runs until no application handle to the endpoint remains and every connection drained.
    pub(crate) async fn run(mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await;
        tracing::debug!(local = %self.shared.local_addr, "QUIC endpoint driver stopped");
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.signal.register(cx.waker());
        for _ in 0..TURNS_PER_POLL {
            self.poll_readiness(cx);
            let now = Instant::now();
            let more_input = self.readable.is_none() && self.receive(now);
            self.flush_pending();
            let progress = self.drive_connections(now);

            if self.finished() {
                return Poll::Ready(());
            }
            // Work left at a bound: wait for readiness that is already there, which lets the
            // shard's other tasks run first (see the module comment).
            if more_input && self.readable.is_none() {
                self.readable = Some(self.io.readable());
            }
            if progress.more_output && self.writable.is_none() && self.pending.is_none() {
                self.writable = Some(self.io.writable());
            }
            let fired = self.poll_readiness(cx) | self.poll_timer(cx);
            if !fired && !progress.rerun {
                return Poll::Pending;
            }
        }
        // Still busy after several turns in one poll: come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Polls the readiness waits; a completed one is dropped, so the next turn tries the I/O.
    /// True when one completed.
    fn poll_readiness(&mut self, cx: &mut Context<'_>) -> bool {
        let mut fired = false;
        if let Some(readable) = self.readable.as_mut()
            && let Poll::Ready(result) = readable.as_mut().poll(cx)
        {
            if let Err(error) = result {
                tracing::warn!(%error, "waiting for UDP readability failed");
            }
            self.readable = None;
            fired = true;
        }
        if let Some(writable) = self.writable.as_mut()
            && let Poll::Ready(result) = writable.as_mut().poll(cx)
        {
            if let Err(error) = result {
                tracing::warn!(%error, "waiting for UDP writability failed");
            }
            self.writable = None;
            fired = true;
        }
        fired
    }

    /// Arms the timer at the earliest connection deadline and polls it; true when it fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.next_timeout else {
            return false;
        };
        let monoio_deadline = monoio::time::Instant::from_std(deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(monoio::time::sleep_until(monoio_deadline)));
        if self.timer_deadline != Some(deadline) {
            timer.as_mut().reset(monoio_deadline);
            self.timer_deadline = Some(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // An elapsed monoio sleep stays ready: forget it so the next turn re-arms it from a
            // fresh poll_timeout().
            self.timer_deadline = None;
            return true;
        }
        false
    }

    fn finished(&self) -> bool {
        // The driver's own reference is the only one left: no `QuicEndpoint` handle exists.
        Rc::strong_count(&self.shared) == 1 && self.shared.state.borrow().connections.is_empty()
    }

    /// Reads up to `RECV_BATCHES_PER_TURN` batches; true when the bound stopped it.
    fn receive(&mut self, now: Instant) -> bool {
        let mut state = self.shared.state.borrow_mut();
        let state = &mut *state;
        for _ in 0..RECV_BATCHES_PER_TURN {
            let io = &self.io;
            match self.recv.receive(|bufs, metas| io.recv(bufs, metas)) {
                Ok(_) => {
                    for (meta, datagram) in self.recv.datagrams() {
                        handle_datagram(
                            state,
                            &self.shared,
                            &self.io,
                            &mut self.send_buf,
                            self.pending.is_some(),
                            &mut self.send_errors,
                            now,
                            meta,
                            datagram,
                        );
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    if error.kind() != io::ErrorKind::WouldBlock {
                        tracing::warn!(%error, "UDP receive failed");
                    }
                    self.readable = Some(self.io.readable());
                    return false;
                }
            }
        }
        true
    }

    /// Retries the transmit the socket refused earlier.
    fn flush_pending(&mut self) {
        if let Some(pending) = self.pending.take() {
            match send(
                &self.io,
                &pending.transmit,
                &pending.contents,
                &mut self.send_errors,
            ) {
                Ok(()) => self.send_buf = pending.contents,
                Err(_) => {
                    self.pending = Some(pending);
                    if self.writable.is_none() {
                        self.writable = Some(self.io.writable());
                    }
                }
            }
        }
    }

    /// Runs every connection's timers, events and transmits.
    fn drive_connections(&mut self, now: Instant) -> Progress {
        let mut guard = self.shared.state.borrow_mut();
        let state = &mut *guard;
        let mut more_output = false;
        let mut rerun = false;
        let mut next_timeout: Option<Instant> = None;
        let mut accepted = Vec::new();

        for (&handle, shared) in state.connections.iter() {
            let mut conn_guard = shared.state.borrow_mut();
            let conn = &mut *conn_guard;

            if conn.conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.conn.handle_timeout(now);
            }

            if self.pending.is_none() {
                let max_segments = self.io.max_gso_segments();
                for sent in 0.. {
                    if sent == TRANSMITS_PER_TURN {
                        more_output = true;
                        break;
                    }
                    self.send_buf.clear();
                    let Some(transmit) =
                        conn.conn
                            .poll_transmit(now, max_segments, &mut self.send_buf)
                    else {
                        break;
                    };
                    if send(&self.io, &transmit, &self.send_buf, &mut self.send_errors).is_err() {
                        self.pending = Some(PendingTransmit {
                            transmit,
                            contents: std::mem::take(&mut self.send_buf),
                        });
                        self.writable = Some(self.io.writable());
                        break;
                    }
                }
            }

            while let Some(event) = conn.conn.poll_endpoint_events() {
                if let Some(event) = state.endpoint.handle_event(handle, event) {
                    conn.conn.handle_event(event);
                    rerun = true;
                }
            }

            while let Some(event) = conn.conn.poll() {
                if conn.on_event(event) {
                    tracing::debug!(
                        connection = handle.0,
                        remote = %conn.conn.remote_address(),
                        side = ?conn.side(),
                        "QUIC connection established"
                    );
                    if conn.side() == Side::Server {
                        accepted.push(Rc::clone(shared));
                    }
                }
            }

            if conn.conn.is_drained() {
                self.drained.push(handle);
            } else if let Some(t) = conn.conn.poll_timeout() {
                next_timeout = Some(next_timeout.map_or(t, |n| n.min(t)));
            }
        }

        for conn in accepted {
            if state.accepting {
                state.accept_queue.push_back(conn);
            } else {
                conn.state
                    .borrow_mut()
                    .close(now, 0u32.into(), b"not accepting");
            }
        }
        if !state.accept_queue.is_empty() {
            wake_all(&mut state.accept_wakers);
        }
        for handle in self.drained.drain(..) {
            if let Some(conn) = state.connections.remove(&handle) {
                conn.state
                    .borrow_mut()
                    .lost(quinn_proto::ConnectionError::LocallyClosed);
            }
        }
        if state.connections.is_empty() {
            wake_all(&mut state.idle_wakers);
        }
        self.next_timeout = next_timeout;
        Progress { more_output, rerun }
    }
}

/// Feeds one received datagram to quinn-proto and acts on what it says.
#[allow(clippy::too_many_arguments)] // disjoint borrows of the driver's fields
fn handle_datagram(
    state: &mut EndpointState,
    shared: &Rc<EndpointShared>,
    io: &UdpIo,
    buf: &mut Vec<u8>,
    socket_blocked: bool,
    errors: &mut SendErrorLog,
    now: Instant,
    meta: RecvMeta,
    datagram: BytesMut,
) {
    let ecn = meta.ecn.and_then(|ecn| EcnCodepoint::from_bits(ecn as u8));
    buf.clear();
    let response = match state
        .endpoint
        .handle(now, meta.addr, meta.dst_ip, ecn, datagram, buf)
    {
        None => None,
        Some(DatagramEvent::ConnectionEvent(handle, event)) => {
            if let Some(conn) = state.connections.get(&handle) {
                conn.state.borrow_mut().conn.handle_event(event);
            }
            None
        }
        Some(DatagramEvent::Response(transmit)) => Some(transmit),
        Some(DatagramEvent::NewConnection(incoming)) => {
            if !state.accepting {
                Some(state.endpoint.refuse(incoming, buf))
            } else {
                match state.endpoint.accept(incoming, now, buf, None) {
                    Ok((handle, conn)) => {
                        let _: Rc<ConnShared> = state.insert(handle, conn, &shared.signal);
                        None
                    }
                    Err(error) => {
                        tracing::debug!(remote = %meta.addr, cause = %error.cause, "QUIC connection refused");
                        error.response
                    }
                }
            }
        }
    };
    // Stateless responses (refusals, resets, version negotiation) are dropped when the socket is
    // full: the peer retransmits.
    if let Some(transmit) = response
        && !socket_blocked
    {
        let _ = send(io, &transmit, buf, errors);
    }
}

/// Sends one transmit. `Err` only for `WouldBlock`; other errors lose the datagrams, which QUIC
/// recovers like any loss, and are logged.
fn send(
    io: &UdpIo,
    transmit: &quinn_proto::Transmit,
    contents: &[u8],
    errors: &mut SendErrorLog,
) -> Result<(), WouldBlock> {
    let udp = quinn_udp::Transmit {
        destination: transmit.destination,
        ecn: transmit
            .ecn
            .and_then(|ecn| quinn_udp::EcnCodepoint::from_bits(ecn as u8)),
        contents: &contents[..transmit.size],
        segment_size: transmit.segment_size,
        src_ip: transmit.src_ip,
    };
    loop {
        match io.send(&udp) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Err(WouldBlock),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                errors.record(&error, transmit);
                return Ok(());
            }
        }
    }
}

struct WouldBlock;

/// Logs failed sends without flooding: the first one, then a count once per interval.
#[derive(Default)]
struct SendErrorLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl SendErrorLog {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

    fn record(&mut self, error: &io::Error, transmit: &quinn_proto::Transmit) {
        // EMSGSIZE is the expected answer to an MTU probe larger than the path.
        if error.raw_os_error() == Some(libc::EMSGSIZE) && transmit.segment_size.is_none() {
            tracing::trace!(
                size = transmit.size,
                "UDP datagram too large for the path (MTU probe)"
            );
            return;
        }
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < Self::INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            %error,
            destination = %transmit.destination,
            size = transmit.size,
            segment_size = ?transmit.segment_size,
            suppressed = self.suppressed,
            "UDP send failed"
        );
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}
