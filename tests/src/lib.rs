//! Test support for sixfold's end-to-end tests: builds the real binaries, starts them on
//! loopback ports that do not clash, and stops them by PID when a test ends, pass or fail.

pub mod cluster;
pub mod data;
pub mod process;

pub use cluster::{ClusterOptions, ExtraGateway, TestCluster, run_ok};
pub use data::{Pattern, pattern};
pub use process::{Proc, bin_path, free_tcp_port, free_udp_port};
