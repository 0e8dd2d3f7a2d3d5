//! sixfold gateway library: HTTP API, splitting and placement, metadata, node client.

pub mod cluster;
pub mod meta;
pub mod placement;
pub mod split;
