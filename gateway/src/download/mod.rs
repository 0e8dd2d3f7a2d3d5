//! Downloads (DESIGN §5, §6): the parts a byte range touches are read from their nodes in
//! order, the next part's stream being opened while the current one is sent (at most two open),
//! each with the node's own bounded read-ahead. Every whole part's crc32c is checked as it
//! passes, and its last frame is held back until the check is done: a mismatch (or a node
//! failing) ends the body with an error, so the client sees an incomplete response and never a
//! complete bad one. Ranges that cover part of a part rely on the node's per-block checks.

//!
//! - [`plan`]: which reads of which parts a byte range needs (pure);
//! - [`stream`]: the response body, fed part by part from the nodes;
//! - [`segments`]: the body of an object made of several files (S3 multipart objects).

pub mod plan;
pub mod segments;
pub mod stream;

pub use plan::{Fetch, damaged_fetch, plan_fetches};
pub use segments::{SegmentRead, open_object, plan_reads};
pub use stream::open_body;

use crate::node_client::NodeCallError;

/// Why a download stream was cut off.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("part {index}: {source}")]
    Node {
        index: u32,
        #[source]
        source: NodeCallError,
    },
    #[error("part {index}: checksum mismatch (stored {expected:08x}, read {actual:08x})")]
    ChecksumMismatch {
        index: u32,
        expected: u32,
        actual: u32,
    },
    #[error("part {index}: node sent {got} bytes, {expected} were asked for")]
    Length { index: u32, expected: u64, got: u64 },
    #[error("internal: {0}")]
    Internal(String),
}
