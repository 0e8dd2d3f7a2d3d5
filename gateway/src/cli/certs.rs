//! `sixfold-gateway certs init | issue-node`: the cluster PKI from the command line.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use sixfold_certs::{InitOptions, NodeCertRequest};

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA, the gateway's certificate and the cluster token in DIR.
    Init {
        /// The gateway's certs dir (default of `serve`: <data-dir>/certs).
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing files. This makes a new cluster: every node must be re-issued.
        #[arg(long)]
        force: bool,
    },
    /// Issue a node certificate signed by the cluster CA in DIR and write what the node needs
    /// (node.pem, node-key.pem, ca.pem, cluster.token) into OUT.
    IssueNode {
        /// The gateway's certs dir holding ca.pem, ca-key.pem and cluster.token.
        #[arg(long)]
        dir: PathBuf,
        /// The node's name (certificate common name).
        #[arg(long)]
        name: String,
        /// An IP address the gateway dials the node at; repeat for several.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// A DNS name of the node; repeat for several.
        #[arg(long = "dns")]
        dns_names: Vec<String>,
        /// Where to write the node's files (its certs dir, default <node data-dir>/certs).
        #[arg(long)]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Init { dir, force } => {
            let opts = InitOptions {
                force,
                ..InitOptions::default()
            };
            let paths = sixfold_certs::init_cluster(&dir, &opts).with_context(|| {
                format!("creating the cluster certificates in {}", dir.display())
            })?;
            println!(
                "cluster CA, gateway certificate and cluster token written to {}",
                paths.dir.display()
            );
            println!(
                "keep {} secret: it signs node certificates",
                paths.ca_key.display()
            );
            Ok(())
        }
        CertsCommand::IssueNode {
            dir,
            name,
            ips,
            dns_names,
            out,
            force,
        } => {
            if ips.is_empty() && dns_names.is_empty() {
                bail!("give at least one --ip or --dns: the address the gateway dials the node at");
            }
            let req = NodeCertRequest {
                name: name.clone(),
                ips,
                dns_names,
            };
            let paths = sixfold_certs::issue_node(&dir, &req, &out, force)
                .with_context(|| format!("issuing a certificate for node {name:?}"))?;
            println!(
                "node {name:?}: certificate, key, CA and cluster token written to {}",
                paths.dir.display()
            );
            Ok(())
        }
    }
}
