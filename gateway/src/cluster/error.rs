//! Errors of the cluster layer.

use sixfold_wire::{Status, WireError};

use crate::meta::MetaError;

/// Why a request to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The gateway has never heard of this node.
    #[error("unknown node")]
    UnknownNode,
    /// The node is down, or no connection could be made to it.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// The node answered with an error status.
    #[error("node answered {status} (detail {detail}): {message}")]
    Status {
        status: Status,
        detail: u64,
        message: String,
    },
    /// The node's answer does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] WireError),
    /// The stream or connection broke while the request was under way.
    #[error("stream failed: {0}")]
    Stream(String),
    /// A body ended before the announced length (the caller's on a put, the node's on a get).
    #[error("body ended after {got} of {expected} bytes")]
    ShortBody { expected: u64, got: u64 },
    /// No answer within the request timeout.
    #[error("request timed out")]
    Timeout,
}

impl NodeError {
    /// Whether the node itself is at fault or unreachable, as opposed to the request being
    /// refused (used to stop hammering a node that is not answering).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            NodeError::Unavailable(_) | NodeError::Timeout | NodeError::Stream(_)
        )
    }

    /// The node's status code, if it answered with one.
    pub fn status(&self) -> Option<Status> {
        match self {
            NodeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Short stable name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::UnknownNode => "unknown_node",
            NodeError::Unavailable(_) => "unavailable",
            NodeError::Status { status, .. } => status.name(),
            NodeError::Protocol(_) => "protocol",
            NodeError::Stream(_) => "stream",
            NodeError::ShortBody { .. } => "short_body",
            NodeError::Timeout => "timeout",
        }
    }
}

/// Why the cluster layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("QUIC endpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS configuration cannot be used for QUIC: {0}")]
    Tls(String),
}

/// Why a node cannot be removed (`DELETE /admin/nodes/{id}`).
#[derive(Debug, thiserror::Error)]
pub enum RemoveNodeError {
    #[error("no node with this id is registered")]
    NotFound,
    /// The node answers heartbeats: stop it first (it would register again at once).
    #[error("node is {state}: stop it before removing it (only a down node can be removed)")]
    Serving { state: &'static str },
    #[error(
        "node still holds data: {parts} parts referenced by files or uploads, {chunks} chunks \
         in its last report"
    )]
    NotEmpty { parts: u64, chunks: u64 },
    #[error("metadata: {0}")]
    Meta(#[from] crate::meta::MetaError),
}
