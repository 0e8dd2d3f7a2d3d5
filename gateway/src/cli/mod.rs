//! The command-line surfaces of `sixfold-gateway` besides `serve`: `dev` (a whole local cluster),
//! `certs` (the cluster PKI) and `admin` (a client of a running gateway's admin API). Each is an
//! edge over the library, like the HTTP API.

pub mod admin;
pub mod admin_backup;
pub mod admin_rebalance;
pub mod certs;
pub mod dev;
