//! sixfold gateway library: HTTP API, splitting and placement, metadata, node client.

pub mod admission;
pub mod api;
pub mod auth;
pub mod chunk_store;
pub mod cluster;
pub mod config;
pub mod download;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod placement;
pub mod recovery;
pub mod s3;
pub mod server;
#[cfg(test)]
mod sim;
pub mod split;
pub mod upload;
