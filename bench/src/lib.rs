//! sixfold-bench as a library: the load generator's run loop, callable from integration tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sixfold_bench::RunError> {
//! let mut cfg = sixfold_bench::Config::new("http://127.0.0.1:8080");
//! cfg.size = 64 << 20;
//! cfg.files = 3;
//! cfg.concurrency = 2;
//! let report = sixfold_bench::run(&cfg).await?;
//! assert!(report.is_ok(), "{:?}", report.errors);
//! assert_eq!(report.verified_bytes, 3 * (64 << 20));
//! # Ok(()) }
//! ```

pub mod baseline;
pub mod content;
pub mod datagen;
pub mod histogram;
pub mod loopback;
pub mod pool;
pub mod procstat;
pub mod progress;
pub mod report;
mod runner;
pub mod size;
pub mod soak;
pub mod source;
pub mod stats;
pub mod transfer;
pub mod verify;

pub use baseline::BaselineConfig;
pub use report::{ErrorRecord, FileRecord, PhaseReport, Report};
pub use runner::{Config, Mode, RunError, run, run_blocking};
pub use soak::report::SoakReport;
pub use soak::{SoakConfig, soak, soak_blocking};
