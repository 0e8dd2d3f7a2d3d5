//! In-memory TLS handshakes between a rustls client and server, no sockets.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use sixfold_certs::{ClusterCa, IssuedCert, NodeCertRequest, Validity};

/// Which side of the handshake reported an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

#[derive(Debug)]
pub struct Finished {
    pub client: ClientConnection,
    pub server: ServerConnection,
}

/// Runs a handshake to completion, or to the first error either side reports.
pub fn handshake(
    client_config: impl Into<Arc<ClientConfig>>,
    server_config: impl Into<Arc<ServerConfig>>,
    server_name: ServerName<'static>,
) -> Result<Finished, (Side, rustls::Error)> {
    let mut client =
        ClientConnection::new(client_config.into(), server_name).map_err(|e| (Side::Client, e))?;
    let mut server = ServerConnection::new(server_config.into()).map_err(|e| (Side::Server, e))?;
    // Bounded: a TLS 1.3 handshake needs a handful of flights.
    for _ in 0..16 {
        let to_server = pump(&mut client, &mut server).map_err(|e| (Side::Server, e))?;
        let to_client = pump(&mut server, &mut client).map_err(|e| (Side::Client, e))?;
        if !to_server && !to_client {
            break;
        }
    }
    assert!(!client.is_handshaking(), "client handshake stalled");
    assert!(!server.is_handshaking(), "server handshake stalled");
    Ok(Finished { client, server })
}

/// Moves every pending TLS record from `from` into `to`; returns whether anything moved.
fn pump<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
) -> Result<bool, rustls::Error> {
    let mut moved = false;
    while from.wants_write() {
        let mut buf = Vec::new();
        from.write_tls(&mut buf).expect("write to Vec");
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            to.read_tls(&mut slice).expect("read from slice");
            to.process_new_packets()?;
        }
        moved = true;
    }
    Ok(moved)
}

pub fn ip_name(ip: &str) -> ServerName<'static> {
    ServerName::IpAddress(ip.parse::<IpAddr>().unwrap().into())
}

pub fn node_request(name: &str, ips: &[&str]) -> NodeCertRequest {
    NodeCertRequest {
        node_id: uuid::Uuid::new_v4(),
        name: name.into(),
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        dns_names: vec![],
    }
}

pub fn new_ca() -> ClusterCa {
    ClusterCa::generate(Validity::ca_default()).unwrap()
}

pub fn node_cert(ca: &ClusterCa, ips: &[&str]) -> IssuedCert {
    ca.issue_node(&node_request("node-1", ips), Validity::leaf_default())
        .unwrap()
}

pub fn server_for(trusted: &ClusterCa, cert: &IssuedCert) -> ServerConfig {
    sixfold_certs::server_config(
        &[trusted.cert_der().clone()],
        vec![cert.cert_der().clone()],
        cert.key_der(),
    )
    .unwrap()
}

pub fn client_for(trusted: &ClusterCa, cert: &IssuedCert) -> ClientConfig {
    sixfold_certs::client_config(
        &[trusted.cert_der().clone()],
        vec![cert.cert_der().clone()],
        cert.key_der(),
    )
    .unwrap()
}
