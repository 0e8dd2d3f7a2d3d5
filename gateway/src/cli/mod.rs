//! The command-line surfaces of `sixfold-gateway` besides `serve`: `dev` (a whole local cluster)
//! and `certs` (the cluster PKI). Each is an edge over the library, like the HTTP API.

pub mod certs;
pub mod dev;
