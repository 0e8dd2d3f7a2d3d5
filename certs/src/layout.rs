//! File names inside a certs dir (a shared convention of the whole cluster).

/// The cluster CA certificate (every host has a copy).
pub const CA_CERT: &str = "ca.pem";
/// The cluster CA private key (only on the gateway host).
pub const CA_KEY: &str = "ca-key.pem";
/// The gateway's client certificate.
pub const GATEWAY_CERT: &str = "gateway.pem";
/// The gateway's private key.
pub const GATEWAY_KEY: &str = "gateway-key.pem";
/// A node's certificate.
pub const NODE_CERT: &str = "node.pem";
/// A node's private key.
pub const NODE_KEY: &str = "node-key.pem";
/// The cluster token: a random secret nodes present when registering.
pub const CLUSTER_TOKEN: &str = "cluster.token";
