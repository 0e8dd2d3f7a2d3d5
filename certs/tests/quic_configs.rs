//! The configs are meant for QUIC: quinn must accept them as they are.

use std::sync::Arc;

use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use sixfold_certs::{GatewayTls, InitOptions, NodeTls, init_cluster, issue_node};

#[test]
fn node_and_gateway_configs_convert_into_quic_configs() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path(), &InitOptions::default()).unwrap();
    let req = sixfold_certs::NodeCertRequest {
        node_id: uuid::Uuid::new_v4(),
        name: "n".into(),
        ips: vec!["127.0.0.1".parse().unwrap()],
        dns_names: vec![],
    };
    issue_node(dir.path(), &req, dir.path(), false).unwrap();

    let server: Arc<rustls::ServerConfig> = NodeTls::load(dir.path()).unwrap().server_config();
    let client: Arc<rustls::ClientConfig> = GatewayTls::load(dir.path()).unwrap().client_config();
    QuicServerConfig::try_from(server).expect("quic server config");
    QuicClientConfig::try_from(client).expect("quic client config");
}
