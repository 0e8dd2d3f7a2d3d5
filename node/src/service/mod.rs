//! The protocol handler of one shard: QUIC streams in, store operations, wire responses out.
//!
//! One task per accepted connection and one per bidirectional stream (one request each, see
//! `wire/PROTOCOL.md`). Everything here lives on the shard's monoio runtime; the only state
//! shared with other threads is the shard's [`crate::shard::ShardStats`] counters and the node's
//! stop flags.
//!
//! - [`rules`]: pure request checks, and one store error → wire status mapping per operation.
//! - [`put_end`]: pure mapping of how a put ends to what the handler does about it.
//! - [`header`]: reading a request header off a stream.
//! - [`stream`]: dispatch and the small requests; [`put`] and [`get`]: the streaming ones.

mod get;
pub mod header;
mod put;
mod put_end;
pub mod rules;
mod stream;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::quic::QuicEndpoint;
use crate::shard::NodeShared;
use crate::store::ChunkStore;

/// One shard's request handler. Cheap to share (`Rc`) between its tasks.
pub struct ShardService {
    store: ChunkStore,
    shard: u16,
    node: Arc<NodeShared>,
    in_flight: Cell<u32>,
    draining: Cell<bool>,
}

impl ShardService {
    pub fn new(store: ChunkStore, shard: u16, node: Arc<NodeShared>) -> Rc<Self> {
        let svc = Rc::new(Self {
            store,
            shard,
            node,
            in_flight: Cell::new(0),
            draining: Cell::new(false),
        });
        svc.refresh_stats();
        svc
    }

    pub fn shard(&self) -> u16 {
        self.shard
    }

    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Accepts connections until the endpoint is closed; each gets its own task, each of its
    /// streams another.
    pub async fn serve(self: Rc<Self>, endpoint: QuicEndpoint) {
        while let Some(conn) = endpoint.accept().await {
            let peer = conn.remote_address();
            // The handshake already required the gateway role (see sixfold_certs::role_verify);
            // the identity is kept for the log line of every request on this connection.
            let identity = Rc::new(stream::PeerLabel::of(conn.peer_certificates().as_deref()));
            tracing::debug!(
                shard = self.shard,
                %peer,
                peer_role = %identity.role,
                peer_cn = ?identity.common_name,
                "connection accepted"
            );
            let svc = Rc::clone(&self);
            drop(monoio::spawn(async move {
                while let Some((recv, send)) = conn.accept_bi().await {
                    drop(monoio::spawn(stream::handle(
                        Rc::clone(&svc),
                        Rc::clone(&identity),
                        recv,
                        send,
                    )));
                }
                tracing::debug!(
                    shard = svc.shard,
                    %peer,
                    reason = ?conn.close_reason(),
                    "connection closed"
                );
            }));
        }
        tracing::debug!(shard = self.shard, "endpoint closed; no more connections");
    }

    /// From now on, new requests are answered `ShuttingDown`; running ones go on.
    pub fn start_draining(&self) {
        self.draining.set(true);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Requests being served (from header to response).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// Publishes the store's usage for the heartbeat thread.
    pub fn refresh_stats(&self) {
        let usage = self.store.usage();
        let stats = self.node.stats(self.shard);
        stats.used_bytes.store(usage.used_bytes, Ordering::Relaxed);
        stats
            .chunk_count
            .store(usage.chunk_count, Ordering::Relaxed);
    }

    /// Counts a request as in flight until the guard is dropped.
    fn enter(self: &Rc<Self>) -> InFlight {
        let n = self.in_flight.get() + 1;
        self.in_flight.set(n);
        self.node
            .stats(self.shard)
            .in_flight
            .store(n, Ordering::Relaxed);
        InFlight(Rc::clone(self))
    }
}

struct InFlight(Rc<ShardService>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let svc = &self.0;
        let n = svc.in_flight.get().saturating_sub(1);
        svc.in_flight.set(n);
        svc.node
            .stats(svc.shard)
            .in_flight
            .store(n, Ordering::Relaxed);
    }
}
