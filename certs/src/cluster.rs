//! The operations behind `sixfold-gateway certs init`, `certs issue-node` and
//! `certs renew-gateway`.
//!
//! No cluster token is written any more: a node proves who it is with its certificate (its
//! node id is in it, see [`crate::identity`]). A `cluster.token` left by an older release is
//! neither read nor removed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::ca::ClusterCa;
use crate::error::{CertsError, Result};
use crate::file_write::{FileAccess, create_private_dir, ensure_absent, write_file};
use crate::issue::NodeCertRequest;
use crate::layout::{CA_CERT, CA_KEY, GATEWAY_CERT, GATEWAY_KEY, NODE_CERT, NODE_KEY};
use crate::validity::Validity;

/// Options of [`init_cluster`].
#[derive(Clone, Copy, Debug)]
pub struct InitOptions {
    /// Replace existing files. This makes a new cluster: every node must be re-issued.
    pub force: bool,
    /// Validity of the CA certificate.
    pub ca_validity: Validity,
    /// Validity of the gateway certificate.
    pub gateway_validity: Validity,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            force: false,
            ca_validity: Validity::ca_default(),
            gateway_validity: Validity::leaf_default(),
        }
    }
}

/// The files of the gateway's certs dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPaths {
    /// The certs dir.
    pub dir: PathBuf,
    /// `ca.pem`
    pub ca_cert: PathBuf,
    /// `ca-key.pem`
    pub ca_key: PathBuf,
    /// `gateway.pem`
    pub gateway_cert: PathBuf,
    /// `gateway-key.pem`
    pub gateway_key: PathBuf,
}

impl ClusterPaths {
    /// The paths of the gateway's files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca_cert: dir.join(CA_CERT),
            ca_key: dir.join(CA_KEY),
            gateway_cert: dir.join(GATEWAY_CERT),
            gateway_key: dir.join(GATEWAY_KEY),
        }
    }
}

/// The three files a node needs in its certs dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePaths {
    /// The certs dir.
    pub dir: PathBuf,
    /// `ca.pem`
    pub ca_cert: PathBuf,
    /// `node.pem`
    pub node_cert: PathBuf,
    /// `node-key.pem`
    pub node_key: PathBuf,
}

impl NodePaths {
    /// The paths of a node's files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca_cert: dir.join(CA_CERT),
            node_cert: dir.join(NODE_CERT),
            node_key: dir.join(NODE_KEY),
        }
    }
}

/// Makes a new cluster in `dir` (created with mode 0700 if missing): a CA, the gateway's
/// certificate (role `urn:sixfold:gateway`).
///
/// Without `opts.force`, nothing is written if any of the four files exists.
pub fn init_cluster(dir: &Path, opts: &InitOptions) -> Result<ClusterPaths> {
    let paths = ClusterPaths::in_dir(dir);
    create_private_dir(dir)?;
    if !opts.force {
        ensure_absent(&[
            &paths.ca_cert,
            &paths.ca_key,
            &paths.gateway_cert,
            &paths.gateway_key,
        ])?;
    }
    let ca = ClusterCa::generate(opts.ca_validity)?;
    let gateway = ca.issue_gateway(opts.gateway_validity)?;

    ca.save(dir, opts.force)?;
    gateway.write(&paths.gateway_cert, &paths.gateway_key, opts.force)?;
    tracing::info!(dir = %dir.display(), "initialised cluster certificates");
    Ok(paths)
}

/// Issues a node certificate (default leaf validity) with the CA in `ca_dir` and writes
/// everything the node needs into `out_dir` (created with mode 0700 if missing):
/// `node.pem`, `node-key.pem`, and a copy of `ca.pem`.
///
/// Without `force`, nothing is written if any of those files exists. When `out_dir` is
/// `ca_dir` itself the copies are skipped.
pub fn issue_node(
    ca_dir: &Path,
    req: &NodeCertRequest,
    out_dir: &Path,
    force: bool,
) -> Result<NodePaths> {
    let ca = ClusterCa::load(ca_dir)?;
    let issued = ca.issue_node(req, Validity::leaf_default())?;

    create_private_dir(out_dir)?;
    let paths = NodePaths::in_dir(out_dir);
    let copy_shared = !same_dir(ca_dir, out_dir)?;
    if !force {
        let mut targets: Vec<&Path> = vec![&paths.node_cert, &paths.node_key];
        if copy_shared {
            targets.push(paths.ca_cert.as_path());
        }
        ensure_absent(&targets)?;
    }

    issued.write(&paths.node_cert, &paths.node_key, force)?;
    if copy_shared {
        write_file(
            &paths.ca_cert,
            ca.cert_pem().as_bytes(),
            FileAccess::Public,
            force,
        )?;
    }
    Ok(paths)
}

/// Re-issues the gateway's certificate with the CA in `dir` (replacing `gateway.pem` and
/// `gateway-key.pem`): for rotation, and to add the gateway role to a certificate made by a
/// release before roles existed. Nodes need nothing new: they trust the same CA.
pub fn renew_gateway(dir: &Path, validity: Validity) -> Result<ClusterPaths> {
    let paths = ClusterPaths::in_dir(dir);
    let ca = ClusterCa::load(dir)?;
    let gateway = ca.issue_gateway(validity)?;
    gateway.write(&paths.gateway_cert, &paths.gateway_key, true)?;
    tracing::info!(dir = %dir.display(), "renewed the gateway certificate");
    Ok(paths)
}

fn same_dir(a: &Path, b: &Path) -> Result<bool> {
    let a = fs::canonicalize(a).map_err(|e| CertsError::io(a, e))?;
    let b = fs::canonicalize(b).map_err(|e| CertsError::io(b, e))?;
    Ok(a == b)
}
