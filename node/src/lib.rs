//! sixfold storage node.

pub mod quic;
