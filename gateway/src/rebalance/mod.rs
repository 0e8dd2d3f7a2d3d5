//! Rebalancing (issue 15, DESIGN §11): moving parts between nodes when a node is added, set
//! draining, or the fill spread asks for it. [`plan`] decides which parts move where (pure);
//! the move itself is crash-safe, one part at a time ([`crate::meta`]'s moves table).

pub mod job;
pub mod plan;
