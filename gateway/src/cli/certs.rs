//! `sixfold-gateway certs init | issue-node | renew-gateway`: the cluster PKI from the command
//! line.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use sixfold_certs::{InitOptions, NodeCertRequest, Validity};
use uuid::Uuid;

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA and the gateway's certificate in DIR.
    Init {
        /// The gateway's certs dir (default of `serve`: <data-dir>/certs).
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing files. This makes a new cluster: every node must be re-issued.
        #[arg(long)]
        force: bool,
    },
    /// Issue a node certificate signed by the cluster CA in DIR and write what the node needs
    /// (node.pem, node-key.pem, ca.pem) into OUT.
    IssueNode {
        /// The gateway's certs dir holding ca.pem and ca-key.pem.
        #[arg(long)]
        dir: PathBuf,
        /// The node's name (certificate common name).
        #[arg(long)]
        name: String,
        /// The node's id (UUID), written into the certificate; the node takes its id from
        /// it. Default: a new random id. To re-issue the certificate of an existing node, give
        /// the id in its data dir's `node_id` file.
        #[arg(long)]
        node_id: Option<Uuid>,
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
    /// Re-issue the gateway's certificate (gateway.pem, gateway-key.pem) with the CA in DIR:
    /// to rotate it, or to add the gateway role to a certificate of an older release.
    RenewGateway {
        /// The gateway's certs dir holding ca.pem and ca-key.pem.
        #[arg(long)]
        dir: PathBuf,
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
                "cluster CA and gateway certificate written to {}",
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
            node_id,
            ips,
            dns_names,
            out,
            force,
        } => {
            if ips.is_empty() && dns_names.is_empty() {
                bail!("give at least one --ip or --dns: the address the gateway dials the node at");
            }
            let node_id = node_id.unwrap_or_else(Uuid::new_v4);
            let req = NodeCertRequest {
                node_id,
                name: name.clone(),
                ips,
                dns_names,
            };
            let paths = sixfold_certs::issue_node(&dir, &req, &out, force)
                .with_context(|| format!("issuing a certificate for node {name:?}"))?;
            println!(
                "node {name:?}: certificate, key and CA written to {}",
                paths.dir.display()
            );
            println!("node id: {node_id}");
            Ok(())
        }
        CertsCommand::RenewGateway { dir } => {
            let paths = sixfold_certs::renew_gateway(&dir, Validity::leaf_default()).with_context(
                || format!("renewing the gateway certificate in {}", dir.display()),
            )?;
            println!(
                "gateway certificate renewed: {}",
                paths.gateway_cert.display()
            );
            Ok(())
        }
    }
}
