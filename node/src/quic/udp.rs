//! The endpoint's UDP socket: quinn-udp moves datagrams, monoio reports readiness.
//!
//! quinn-udp gives batched receives (`recvmmsg`, GRO) and segmented sends (GSO) on a
//! non-blocking socket; monoio's `readable`/`writable` (an io_uring POLL_ADD on a duplicate of
//! the same descriptor) say when to try again after `WouldBlock`. Waiting for readiness never
//! consumes a datagram, so a readiness wait may be dropped at any time without losing data.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

use super::settings::QuicSettings;

/// A readiness wait on the socket.
pub(crate) type Readiness = Pin<Box<dyn Future<Output = io::Result<()>>>>;

pub(crate) struct UdpIo {
    socket: std::net::UdpSocket,
    readiness: Rc<monoio::net::udp::UdpSocket>,
    state: UdpSocketState,
    local_addr: SocketAddr,
    max_gso_segments: usize,
}

impl UdpIo {
    /// Binds `addr`. Must run inside a monoio runtime (the readiness half registers with it).
    pub(crate) fn bind(addr: SocketAddr, settings: &QuicSettings) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        set_buffer_sizes(&socket, &state, settings.socket_buffer_size);
        let readiness = monoio::net::udp::UdpSocket::from_std(socket.try_clone()?)?;
        let local_addr = socket.local_addr()?;
        let max_gso_segments = settings.max_gso_segments(state.max_gso_segments());
        Ok(Self {
            socket,
            readiness: Rc::new(readiness),
            state,
            local_addr,
            max_gso_segments,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Most datagrams one send may carry (GSO), capped to the 64 KiB send limit. Re-read every
    /// time: quinn-udp turns GSO off for good when the kernel or NIC rejects it.
    pub(crate) fn max_gso_segments(&self) -> usize {
        self.max_gso_segments
            .min(self.state.max_gso_segments())
            .max(1)
    }

    /// Whether the kernel may fragment our datagrams (then path MTU discovery must stay off).
    pub(crate) fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    /// Receives a batch without blocking; `WouldBlock` when nothing is queued.
    pub(crate) fn recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        metas: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.state.recv(UdpSockRef::from(&self.socket), bufs, metas)
    }

    /// Sends one transmit without blocking; `WouldBlock` when the socket buffer is full.
    pub(crate) fn send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.state
            .try_send(UdpSockRef::from(&self.socket), transmit)
    }

    /// Resolves once the socket has a datagram to read.
    pub(crate) fn readable(&self) -> Readiness {
        let socket = Rc::clone(&self.readiness);
        Box::pin(async move { socket.readable(false).await })
    }

    /// Resolves once the socket can take another send.
    pub(crate) fn writable(&self) -> Readiness {
        let socket = Rc::clone(&self.readiness);
        Box::pin(async move { socket.writable(false).await })
    }
}

/// Asks for large kernel buffers: a jumbo-MTU burst overflows the default 208 KiB at once.
/// `SO_*BUF` is capped by `net.core.{r,w}mem_max`; with CAP_NET_ADMIN the `*FORCE` variants
/// lift that cap. Failing both only costs throughput, so it is logged, not returned.
/// Linux reports twice the size asked for (it adds room for its own bookkeeping).
fn set_buffer_sizes(socket: &std::net::UdpSocket, state: &UdpSocketState, bytes: usize) {
    let sock = || UdpSockRef::from(socket);
    let granted = bytes.saturating_mul(2);
    let _ = state.set_recv_buffer_size(sock(), bytes);
    if state.recv_buffer_size(sock()).unwrap_or(0) < granted {
        let _ = force_buffer_size(socket, libc::SO_RCVBUFFORCE, bytes);
    }
    let _ = state.set_send_buffer_size(sock(), bytes);
    if state.send_buffer_size(sock()).unwrap_or(0) < granted {
        let _ = force_buffer_size(socket, libc::SO_SNDBUFFORCE, bytes);
    }
    let recv = state.recv_buffer_size(sock()).unwrap_or(0);
    let send = state.send_buffer_size(sock()).unwrap_or(0);
    if recv < granted || send < granted {
        tracing::info!(
            wanted = bytes,
            recv,
            send,
            "UDP socket buffers smaller than asked; raise net.core.rmem_max and wmem_max"
        );
    }
}

fn force_buffer_size(
    socket: &std::net::UdpSocket,
    option: libc::c_int,
    bytes: usize,
) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `socket` owns a valid descriptor for the duration of the call, and the option
    // value pointer and length describe a live `c_int`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
