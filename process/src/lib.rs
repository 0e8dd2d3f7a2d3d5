//! Process-wide settings the gateway and the bench apply first thing in `main`, before any thread
//! exists.

mod malloc_tuning;

pub use malloc_tuning::{Applied, MallocTuning, keep_freed_memory};
