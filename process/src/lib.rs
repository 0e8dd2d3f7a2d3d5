//! Process-wide settings every sixfold binary applies first thing in `main`, before any thread
//! exists.

mod malloc_tuning;

pub use malloc_tuning::{Applied, MallocTuning, keep_freed_memory};
