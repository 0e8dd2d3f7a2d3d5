//! One pooled QUIC connection per node shard, opened on first use, reused by every request to
//! that shard, and replaced when it is lost or the node restarts.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, TokioRuntime, VarInt};
use rustls::pki_types::CertificateDer;
use sixfold_certs::PeerRole;
use tokio::time::Instant;
use uuid::Uuid;

use super::config::MtuSetting;
use super::error::{ClusterError, NodeError};
use super::quic_config::{self, SOCKET_BUFFER};
use super::reconnect::{self, Failure};
use super::registry::Route;

/// Application close code when the gateway drops a connection on purpose.
const CLOSE_REPLACED: u32 = 0;
/// Application close code when the peer's certificate is not the expected node's.
const CLOSE_WRONG_IDENTITY: u32 = 1;

/// Path figures of one pooled connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    pub node: Uuid,
    pub addr: SocketAddr,
    /// UDP payload size in use (falls to 1200 if quinn suspected an MTU black hole).
    pub mtu: u16,
    pub rtt: std::time::Duration,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_window: u64,
}

/// The client endpoints and the connection table.
pub struct Pool {
    tls: Arc<QuicClientConfig>,
    mtu: MtuSetting,
    stream_window: u32,
    v4: Endpoint,
    /// Bound on first use: most clusters never need it.
    v6: Mutex<Option<Endpoint>>,
    slots: Mutex<HashMap<(Uuid, SocketAddr), Arc<Slot>>>,
}

/// The connection to one shard, and a gate so that only one task connects at a time.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Pooled>>,
    connecting: tokio::sync::Mutex<()>,
    /// The last failed attempt to connect, so that tasks queued behind it or arriving
    /// shortly after share the failure instead of each waiting out its own timeout.
    last_failure: Mutex<Option<Failure>>,
}

#[derive(Clone)]
struct Pooled {
    generation: u64,
    conn: Connection,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent at every await-free step; a panic elsewhere
    // must not take the pool down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    /// Binds the IPv4 client endpoint. Must run inside a tokio runtime.
    pub fn new(
        tls: Arc<QuicClientConfig>,
        mtu: MtuSetting,
        stream_window: u32,
    ) -> Result<Self, ClusterError> {
        let v4 = bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        tracing::info!(local = ?v4.local_addr().ok(), mtu = %mtu, "QUIC client endpoint bound");
        Ok(Self {
            tls,
            mtu,
            stream_window,
            v4,
            v6: Mutex::new(None),
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn endpoint_for(&self, addr: &SocketAddr) -> Result<Endpoint, NodeError> {
        if addr.is_ipv4() {
            return Ok(self.v4.clone());
        }
        let mut v6 = lock(&self.v6);
        if let Some(e) = v6.as_ref() {
            return Ok(e.clone());
        }
        let e = bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
            .map_err(|e| NodeError::Unavailable(format!("cannot bind an IPv6 endpoint: {e}")))?;
        *v6 = Some(e.clone());
        Ok(e)
    }

    fn slot(&self, node: Uuid, addr: SocketAddr) -> Arc<Slot> {
        lock(&self.slots).entry((node, addr)).or_default().clone()
    }

    /// A live connection to the shard at `route`, connecting (once, for all waiters) if there
    /// is none or the pooled one is stale. Connecting must finish before `deadline`.
    pub async fn connection(
        &self,
        node: Uuid,
        route: Route,
        deadline: Instant,
    ) -> Result<Connection, NodeError> {
        let slot = self.slot(node, route.addr);
        if let Some(conn) = slot.live(route.generation) {
            return Ok(conn);
        }
        let queued_at = Instant::now();
        slot.recent_failure(
            route.generation,
            reconnect::failures_since(queued_at, false),
        )?;
        let _gate = tokio::time::timeout_at(deadline, slot.connecting.lock())
            .await
            .map_err(|_| unavailable_timeout(route.addr))?;
        if let Some(conn) = slot.live(route.generation) {
            return Ok(conn);
        }
        slot.recent_failure(route.generation, reconnect::failures_since(queued_at, true))?;
        let connected = self
            .connect(route.addr, deadline)
            .await
            .and_then(|conn| verify_node_identity(node, route.addr, conn));
        match connected {
            Ok(conn) => {
                *lock(&slot.last_failure) = None;
                let old = lock(&slot.current).replace(Pooled {
                    generation: route.generation,
                    conn: conn.clone(),
                });
                if let Some(old) = old {
                    old.conn
                        .close(VarInt::from_u32(CLOSE_REPLACED), b"replaced");
                }
                Ok(conn)
            }
            Err(e) => {
                let why = match &e {
                    NodeError::Unavailable(why) => why.clone(),
                    other => other.to_string(),
                };
                *lock(&slot.last_failure) = Some(Failure {
                    at: Instant::now(),
                    generation: route.generation,
                    why,
                });
                Err(e)
            }
        }
    }

    async fn connect(&self, addr: SocketAddr, deadline: Instant) -> Result<Connection, NodeError> {
        let endpoint = self.endpoint_for(&addr)?;
        let mtu = self.mtu.for_addr(&addr);
        let config = quic_config::client_config(self.tls.clone(), mtu, self.stream_window);
        // Node certificates carry their IP addresses as SANs.
        let server_name = addr.ip().to_string();
        let connecting = endpoint
            .connect_with(config, addr, &server_name)
            .map_err(|e| NodeError::Unavailable(format!("cannot connect to {addr}: {e}")))?;
        let conn = tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| unavailable_timeout(addr))?
            .map_err(|e| NodeError::Unavailable(format!("cannot connect to {addr}: {e}")))?;
        tracing::debug!(%addr, mtu, "connected to node shard");
        Ok(conn)
    }

    /// Drops `conn` from the pool if it is still the pooled connection of its shard (after it
    /// failed in a way that a new connection may fix).
    pub fn discard(&self, node: Uuid, addr: SocketAddr, conn: &Connection) {
        let slot = lock(&self.slots).get(&(node, addr)).cloned();
        if let Some(slot) = slot {
            let mut current = lock(&slot.current);
            if current
                .as_ref()
                .is_some_and(|p| p.conn.stable_id() == conn.stable_id())
            {
                *current = None;
            }
        }
    }

    /// Closes and forgets every connection to `node` (it restarted or moved).
    pub fn forget_node(&self, node: Uuid) {
        let mut slots = lock(&self.slots);
        slots.retain(|(id, _), slot| {
            if *id != node {
                return true;
            }
            if let Some(p) = lock(&slot.current).take() {
                p.conn
                    .close(VarInt::from_u32(CLOSE_REPLACED), b"node restarted");
            }
            false
        });
    }

    /// Path figures of every open pooled connection, for metrics and diagnosis.
    pub fn stats(&self) -> Vec<ConnectionStats> {
        let mut out: Vec<ConnectionStats> = lock(&self.slots)
            .iter()
            .filter_map(|((node, addr), slot)| {
                let current = lock(&slot.current);
                let p = current
                    .as_ref()
                    .filter(|p| p.conn.close_reason().is_none())?;
                let stats = p.conn.stats();
                Some(ConnectionStats {
                    node: *node,
                    addr: *addr,
                    mtu: stats.path.current_mtu,
                    rtt: stats.path.rtt,
                    sent_packets: stats.path.sent_packets,
                    lost_packets: stats.path.lost_packets,
                    congestion_window: stats.path.cwnd,
                })
            })
            .collect();
        out.sort_by_key(|s| (s.node, s.addr));
        out
    }

    /// Number of pooled connections that are still open.
    pub fn open_connections(&self) -> usize {
        lock(&self.slots)
            .values()
            .filter(|s| {
                lock(&s.current)
                    .as_ref()
                    .is_some_and(|p| p.conn.close_reason().is_none())
            })
            .count()
    }

    /// Closes every connection and endpoint, waiting at most until `deadline` for the peers to
    /// acknowledge.
    pub async fn close(&self, deadline: Instant) {
        let endpoints: Vec<Endpoint> = std::iter::once(self.v4.clone())
            .chain(lock(&self.v6).clone())
            .collect();
        for e in &endpoints {
            e.close(VarInt::from_u32(CLOSE_REPLACED), b"gateway shutting down");
        }
        lock(&self.slots).clear();
        for e in endpoints {
            if tokio::time::timeout_at(deadline, e.wait_idle())
                .await
                .is_err()
            {
                tracing::debug!("QUIC endpoint did not drain before the shutdown deadline");
            }
        }
    }
}

impl Slot {
    /// Fails with the last connect failure if it happened at or after `since` for the same
    /// generation of the node.
    fn recent_failure(&self, generation: u64, since: Option<Instant>) -> Result<(), NodeError> {
        let last = lock(&self.last_failure);
        match reconnect::shared_failure(last.as_ref(), generation, since) {
            Some(why) => Err(NodeError::Unavailable(why.to_owned())),
            None => Ok(()),
        }
    }

    fn live(&self, generation: u64) -> Option<Connection> {
        let current = lock(&self.current);
        let p = current.as_ref()?;
        reconnect::reusable(p.generation, p.conn.close_reason().is_none(), generation)
            .then(|| p.conn.clone())
    }
}

/// Checks that the certificate the shard at `addr` presented names node `node`: a certificate
/// from the cluster CA proves membership, only its node id proves it is *this* node (another
/// node's address, reported in a forged registration, must not receive this node's parts).
/// On a mismatch the connection is closed and the node counts as unreachable.
fn verify_node_identity(
    node: Uuid,
    addr: SocketAddr,
    conn: Connection,
) -> Result<Connection, NodeError> {
    let role = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(sixfold_certs::parse_identity));
    let why = match role {
        Some(Ok(identity)) if identity.role == PeerRole::Node(node) => return Ok(conn),
        Some(Ok(identity)) => format!(
            "its certificate is {} ({:?}), not node {node}",
            identity.role, identity.common_name
        ),
        Some(Err(e)) => format!("its certificate names no node: {e}"),
        None => "it presented no certificate".to_owned(),
    };
    tracing::warn!(
        %node,
        %addr,
        reason = %why,
        "refusing a node connection: the peer is not the registered node"
    );
    conn.close(
        VarInt::from_u32(CLOSE_WRONG_IDENTITY),
        b"wrong node identity",
    );
    Err(NodeError::Unavailable(format!(
        "the shard at {addr} is not node {node}: {why}"
    )))
}

fn unavailable_timeout(addr: SocketAddr) -> NodeError {
    NodeError::Unavailable(format!("connecting to {addr} timed out"))
}

fn bind(local: SocketAddr) -> Result<Endpoint, ClusterError> {
    let socket = std::net::UdpSocket::bind(local)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // The kernel caps these at net.core.{r,w}mem_max; a smaller buffer only costs throughput.
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    if let Err(e) = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the UDP send buffer");
    }
    Ok(Endpoint::new(
        quic_config::endpoint_config()?,
        None,
        socket,
        Arc::new(TokioRuntime),
    )?)
}
