//! sixfold-node: the storage node. Thread-per-core monoio runtimes (one per shard), each with
//! its own QUIC endpoint and io_uring + O_DIRECT chunk store; a std thread registers the node
//! with the gateway and heartbeats.

pub mod cluster_id;
pub mod config;
pub mod gateways;
pub mod https_client;
pub mod node_id;
pub mod quic;
pub mod registration;
pub mod scrub;
pub mod service;
pub mod shard;
pub mod signals;
pub mod store;
