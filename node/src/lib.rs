//! sixfold storage node library: the parts of the node that the binary wires together.

pub mod store;
