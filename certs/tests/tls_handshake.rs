//! Mutual-TLS handshakes between configs built by this crate, driven in memory.

mod common;

use common::{Side, client_for, handshake, ip_name, new_ca, node_cert, server_for};
use rustls::{AlertDescription, CertificateError, Error};
use sixfold_certs::{ALPN, ClusterCa, Validity};
use time::{Duration, OffsetDateTime};

fn gateway(ca: &ClusterCa) -> sixfold_certs::IssuedCert {
    ca.issue_gateway(Validity::leaf_default()).unwrap()
}

#[test]
fn same_ca_handshake_succeeds_with_alpn_and_client_certificate() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let gw = gateway(&ca);
    let done = handshake(
        client_for(&ca, &gw),
        server_for(&ca, &node),
        ip_name("127.0.0.1"),
    )
    .expect("handshake");
    assert_eq!(done.client.alpn_protocol(), Some(ALPN));
    assert_eq!(done.server.alpn_protocol(), Some(ALPN));
    assert_eq!(
        done.client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // Both ends prefer AES-128-GCM (the cheaper suite for the bulk data).
    for suite in [
        done.client.negotiated_cipher_suite(),
        done.server.negotiated_cipher_suite(),
    ] {
        assert_eq!(
            suite.map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }
    let presented = done.server.peer_certificates().expect("client certificate");
    assert_eq!(&presented[0], gw.cert_der());
    let served = done.client.peer_certificates().expect("server certificate");
    assert_eq!(&served[0], node.cert_der());
}

#[test]
fn a_node_refuses_another_node_certificate_as_client() {
    let ca = new_ca();
    let a = node_cert(&ca, &["127.0.0.1"]);
    let b = node_cert(&ca, &["127.0.0.2"]);
    let err = handshake(
        client_for(&ca, &b),
        server_for(&ca, &a),
        ip_name("127.0.0.1"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        (
            Side::Server,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        )
    );
}

#[test]
fn the_internal_listener_takes_only_nodes_and_nodes_take_only_the_gateway() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let gw = gateway(&ca);
    let ca_der = [ca.cert_der().clone()];
    let internal = |cert: &sixfold_certs::IssuedCert| {
        sixfold_certs::internal_server_config(
            &ca_der,
            vec![cert.cert_der().clone()],
            cert.key_der(),
        )
        .unwrap()
    };
    let registration = |cert: &sixfold_certs::IssuedCert| {
        sixfold_certs::registration_client_config(
            &ca_der,
            vec![cert.cert_der().clone()],
            cert.key_der(),
        )
        .unwrap()
    };
    // A node registers with the gateway, verified by role whatever name it dialled.
    let done = handshake(
        registration(&node),
        internal(&gw),
        rustls_pki_types::ServerName::try_from("gateway.example").unwrap(),
    )
    .expect("node to gateway");
    let identity =
        sixfold_certs::parse_identity(&done.server.peer_certificates().unwrap()[0]).unwrap();
    assert!(matches!(identity.role, sixfold_certs::PeerRole::Node(_)));
    assert_eq!(identity.common_name.as_deref(), Some("node-1"));
    // The gateway certificate is not a node's: the internal listener refuses it.
    let err = handshake(registration(&gw), internal(&gw), ip_name("127.0.0.1")).unwrap_err();
    assert_eq!(
        err,
        (
            Side::Server,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        )
    );
    // A node posing as the gateway's internal listener is refused by the node's client.
    let other = node_cert(&ca, &["127.0.0.2"]);
    let err = handshake(registration(&node), internal(&other), ip_name("127.0.0.1")).unwrap_err();
    assert_eq!(
        err,
        (
            Side::Client,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        )
    );
}

#[test]
fn server_refuses_client_certificate_from_another_ca() {
    let ca = new_ca();
    let other = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let foreign_gw = gateway(&other);
    // The client trusts the right CA but presents a certificate from another cluster.
    let client = sixfold_certs::client_config(
        &[ca.cert_der().clone()],
        vec![foreign_gw.cert_der().clone()],
        foreign_gw.key_der(),
    )
    .unwrap();
    let err = handshake(client, server_for(&ca, &node), ip_name("127.0.0.1")).unwrap_err();
    assert_eq!(
        err,
        (
            Side::Server,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        )
    );
}

#[test]
fn client_refuses_server_certificate_from_another_ca() {
    let ca = new_ca();
    let other = new_ca();
    let foreign_node = node_cert(&other, &["127.0.0.1"]);
    let gw = gateway(&ca);
    let server = sixfold_certs::server_config(
        &[ca.cert_der().clone()],
        vec![foreign_node.cert_der().clone()],
        foreign_node.key_der(),
    )
    .unwrap();
    let err = handshake(client_for(&ca, &gw), server, ip_name("127.0.0.1")).unwrap_err();
    assert_eq!(
        err,
        (
            Side::Client,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        )
    );
}

#[test]
fn server_refuses_a_client_without_certificate() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(sixfold_certs::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let err = handshake(anonymous, server_for(&ca, &node), ip_name("127.0.0.1")).unwrap_err();
    assert_eq!(err, (Side::Server, Error::NoCertificatesPresented));
}

fn expired_window() -> Validity {
    let now = OffsetDateTime::now_utc();
    Validity::new(now - Duration::days(30), now - Duration::days(1)).unwrap()
}

#[test]
fn client_refuses_expired_server_certificate() {
    let ca = new_ca();
    let expired = ca
        .issue_node(
            &common::node_request("old", &["127.0.0.1"]),
            expired_window(),
        )
        .unwrap();
    let gw = gateway(&ca);
    let err = handshake(
        client_for(&ca, &gw),
        server_for(&ca, &expired),
        ip_name("127.0.0.1"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            (
                Side::Client,
                Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            )
        ),
        "{err:?}"
    );
}

#[test]
fn server_refuses_expired_client_certificate() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let expired = ca.issue_gateway(expired_window()).unwrap();
    let err = handshake(
        client_for(&ca, &expired),
        server_for(&ca, &node),
        ip_name("127.0.0.1"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            (
                Side::Server,
                Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            )
        ),
        "{err:?}"
    );
}

#[test]
fn server_name_must_match_an_ip_san() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1", "::1"]);
    let gw = gateway(&ca);
    for ok in ["127.0.0.1", "::1"] {
        handshake(client_for(&ca, &gw), server_for(&ca, &node), ip_name(ok))
            .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    let err = handshake(
        client_for(&ca, &gw),
        server_for(&ca, &node),
        ip_name("127.0.0.2"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            (
                Side::Client,
                Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            )
        ),
        "{err:?}"
    );
}

#[test]
fn server_name_may_be_a_dns_san() {
    let ca = new_ca();
    let req = sixfold_certs::NodeCertRequest {
        node_id: uuid::Uuid::new_v4(),
        name: "node-7".into(),
        ips: vec![],
        dns_names: vec!["node-7.cluster.internal".into()],
    };
    let node = ca.issue_node(&req, Validity::leaf_default()).unwrap();
    let gw = gateway(&ca);
    let name = rustls::pki_types::ServerName::try_from("node-7.cluster.internal").unwrap();
    handshake(client_for(&ca, &gw), server_for(&ca, &node), name).expect("handshake");
    let wrong = rustls::pki_types::ServerName::try_from("node-8.cluster.internal").unwrap();
    let err = handshake(client_for(&ca, &gw), server_for(&ca, &node), wrong).unwrap_err();
    assert!(
        matches!(
            err,
            (
                Side::Client,
                Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            )
        ),
        "{err:?}"
    );
}

#[test]
fn configs_refuse_a_key_that_is_not_the_certificates() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let other = node_cert(&ca, &["127.0.0.1"]);
    let err = sixfold_certs::server_config(
        &[ca.cert_der().clone()],
        vec![node.cert_der().clone()],
        other.key_der(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            sixfold_certs::CertsError::Tls(Error::InconsistentKeys(_))
        ),
        "{err:?}"
    );
}

#[test]
fn configs_refuse_an_empty_trust_store() {
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let err = sixfold_certs::server_config(&[], vec![node.cert_der().clone()], node.key_der())
        .unwrap_err();
    assert!(
        matches!(err, sixfold_certs::CertsError::Verifier(_)),
        "{err:?}"
    );
    let err = sixfold_certs::client_config(&[], vec![node.cert_der().clone()], node.key_der())
        .unwrap_err();
    assert!(
        matches!(err, sixfold_certs::CertsError::Verifier(_)),
        "{err:?}"
    );
}

#[test]
fn install_crypto_provider_is_idempotent() {
    sixfold_certs::install_crypto_provider();
    sixfold_certs::install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

/// A refused client is told why, so both ends can log the cause.
#[test]
fn refused_client_receives_an_alert() {
    let ca = new_ca();
    let other = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let foreign = gateway(&other);
    let client = sixfold_certs::client_config(
        &[ca.cert_der().clone()],
        vec![foreign.cert_der().clone()],
        foreign.key_der(),
    )
    .unwrap();
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(client), ip_name("127.0.0.1")).unwrap();
    let mut server =
        rustls::ServerConnection::new(std::sync::Arc::new(server_for(&ca, &node))).unwrap();
    let mut client_error = None;
    for _ in 0..16 {
        let mut buf = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            let _ = server.process_new_packets();
        }
        let mut back = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut back).unwrap();
        }
        if back.is_empty() {
            break;
        }
        conn.read_tls(&mut back.as_slice()).unwrap();
        if let Err(e) = conn.process_new_packets() {
            client_error = Some(e);
            break;
        }
    }
    assert_eq!(
        client_error,
        Some(Error::AlertReceived(AlertDescription::UnknownCA))
    );
}
