//! Rebuilding the metadata from the nodes alone (issue #13): the rules that decide which
//! files the chunks on the nodes bring back ([`rules`], pure), the view of a node's inventory
//! entry they judge ([`found`]), and the run behind `POST /admin/recover` ([`job`]).

pub mod found;
pub mod job;
pub mod rules;

pub use job::{Recovery, RecoveryError, RecoveryReport, RecoveryStatus, RunState};
