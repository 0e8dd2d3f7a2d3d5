//! sixfold gateway library: HTTP API, splitting and placement, metadata, node client.

pub mod admission;
pub mod api;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod cluster;
pub mod commit_marks;
pub mod config;
pub mod deletion;
pub mod download;
pub mod file_hash;
pub mod gateway_id;
pub mod http;
pub mod latency;
pub mod meta;
pub mod meta_postgres;
pub mod metrics;
pub mod node_client;
pub mod placement;
pub mod rebalance;
pub mod recovery;
pub mod s3;
pub mod server;
#[cfg(test)]
mod sim;
pub mod split;
pub mod time_fmt;
pub mod upload;
