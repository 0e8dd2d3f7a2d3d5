//! `sixfold-gateway dev`: a complete local cluster in one command. Placeholder until the lead
//! fills it in.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `sixfold-gateway dev` flags.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the gateway's and the nodes' data go.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of storage nodes to start.
    #[arg(long, default_value_t = 6)]
    pub nodes: usize,
    /// HTTP address of the gateway.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

pub fn run(_args: DevArgs) -> anyhow::Result<()> {
    anyhow::bail!("`sixfold-gateway dev` is not yet implemented")
}
