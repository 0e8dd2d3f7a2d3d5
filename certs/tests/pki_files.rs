//! Files on disk: PEM round trips, modes, overwrite protection, CA reload, and the
//! `init_cluster` / `issue_node` operations ending in a working handshake.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{handshake, ip_name, new_ca, node_cert, node_request};
use rcgen::{BasicConstraints, CertificateParams, DnType, DnValue, IsCa, KeyPair};
use sixfold_certs::{
    ALPN, CertsError, ClusterCa, ClusterPaths, GatewayTls, InitOptions, NodePaths, NodeTls,
    Validity, init_cluster, issue_node, layout, read_certificates, read_private_key,
    write_cert_and_key,
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issued_cert_round_trips_through_pem_files_with_modes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let cert_path = dir.path().join("node.pem");
    let key_path = dir.path().join("node-key.pem");
    node.write(&cert_path, &key_path, false).unwrap();

    assert_eq!(
        read_certificates(&cert_path).unwrap(),
        vec![node.cert_der().clone()]
    );
    assert_eq!(
        read_private_key(&key_path).unwrap().secret_der(),
        node.key_der().secret_der()
    );
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&cert_path), 0o644);
}

#[test]
fn cert_and_key_are_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let first = node_cert(&ca, &["127.0.0.1"]);
    let second = node_cert(&ca, &["127.0.0.1"]);
    let cert_path = dir.path().join("c.pem");
    let key_path = dir.path().join("k.pem");
    // Only the key exists: the certificate must not be written either.
    fs::write(&key_path, first.key_pem()).unwrap();
    let err = write_cert_and_key(
        &cert_path,
        second.cert_pem(),
        &key_path,
        second.key_pem(),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&err, CertsError::AlreadyExists { path } if path == &key_path),
        "{err:?}"
    );
    assert!(err.to_string().contains("k.pem"), "{err}");
    assert!(!cert_path.exists());

    write_cert_and_key(
        &cert_path,
        second.cert_pem(),
        &key_path,
        second.key_pem(),
        true,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&key_path).unwrap(), second.key_pem());
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn pem_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        read_certificates(&missing),
        Err(CertsError::Io { path, source }) if path == missing && source.kind() == std::io::ErrorKind::NotFound
    ));

    let ca = new_ca();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let key_only = dir.path().join("key.pem");
    fs::write(&key_only, node.key_pem()).unwrap();
    assert!(matches!(
        read_certificates(&key_only),
        Err(CertsError::MissingPemItem { path, what: "certificate" }) if path == key_only
    ));
    let cert_only = dir.path().join("cert.pem");
    fs::write(&cert_only, node.cert_pem()).unwrap();
    assert!(matches!(
        read_private_key(&cert_only),
        Err(CertsError::MissingPemItem { path, what: "private key" }) if path == cert_only
    ));
    let broken = dir.path().join("broken.pem");
    fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(matches!(
        read_certificates(&broken),
        Err(CertsError::Pem { path, .. }) if path == broken
    ));
}

#[test]
fn saved_ca_loads_back_and_signs_certificates_the_original_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    ca.save(dir.path(), false).unwrap();
    assert_eq!(mode(&dir.path().join(layout::CA_KEY)), 0o600);
    assert!(matches!(
        ca.save(dir.path(), false),
        Err(CertsError::AlreadyExists { .. })
    ));

    let loaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    assert_eq!(loaded.cert_pem(), ca.cert_pem());

    // Issued by the reloaded CA, trusted through the original CA certificate.
    let node = node_cert(&loaded, &["127.0.0.1"]);
    let gw = loaded.issue_gateway(Validity::leaf_default()).unwrap();
    handshake(
        common::client_for(&ca, &gw),
        common::server_for(&ca, &node),
        ip_name("127.0.0.1"),
    )
    .expect("handshake");
}

#[test]
fn ca_load_refuses_a_key_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    new_ca().save(&a, false).unwrap();
    new_ca().save(&b, false).unwrap();
    let key_b = b.join(layout::CA_KEY);
    let err = ClusterCa::load_files(&a.join(layout::CA_CERT), &key_b).unwrap_err();
    assert!(
        matches!(&err, CertsError::InvalidFile { path, .. } if path == &key_b),
        "{err:?}"
    );
}

/// Writes a CA made directly with rcgen, with the given common-name value.
fn write_foreign_ca(dir: &Path, common_name: DnValue) -> (String, KeyPair) {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CountryName,
        DnValue::PrintableString("DE".try_into().unwrap()),
    );
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.self_signed(&key).unwrap();
    fs::write(dir.join(layout::CA_CERT), cert.pem()).unwrap();
    fs::write(dir.join(layout::CA_KEY), key.serialize_pem()).unwrap();
    (cert.pem(), key)
}

#[test]
fn ca_made_elsewhere_with_printable_strings_can_sign() {
    let dir = tempfile::tempdir().unwrap();
    write_foreign_ca(
        dir.path(),
        DnValue::PrintableString("Example Root".try_into().unwrap()),
    );
    let ca = ClusterCa::load(dir.path()).unwrap();
    let node = node_cert(&ca, &["127.0.0.1"]);
    let gw = ca.issue_gateway(Validity::leaf_default()).unwrap();
    handshake(
        common::client_for(&ca, &gw),
        common::server_for(&ca, &node),
        ip_name("127.0.0.1"),
    )
    .expect("handshake");
}

#[test]
fn ca_with_an_unreproducible_subject_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_foreign_ca(dir.path(), DnValue::BmpString("Root".try_into().unwrap()));
    let err = ClusterCa::load(dir.path()).unwrap_err();
    let cert_path = dir.path().join(layout::CA_CERT);
    assert!(
        matches!(&err, CertsError::InvalidFile { path, .. } if path == &cert_path),
        "{err:?}"
    );
    assert!(err.to_string().contains("subject"), "{err}");
}

#[test]
fn init_cluster_and_issue_node_give_configs_that_handshake() {
    let root = tempfile::tempdir().unwrap();
    let gw_dir = root.path().join("gateway/certs");
    let node_dir = root.path().join("node-1/certs");

    let cluster = init_cluster(&gw_dir, &InitOptions::default()).unwrap();
    assert_eq!(cluster, ClusterPaths::in_dir(&gw_dir));
    for secret in [&cluster.ca_key, &cluster.gateway_key] {
        assert_eq!(mode(secret), 0o600, "{}", secret.display());
    }
    assert_eq!(mode(&gw_dir), 0o700);

    let req = node_request("node-1", &["127.0.0.1"]);
    let node = issue_node(&gw_dir, &req, &node_dir, false).unwrap();
    assert_eq!(node, NodePaths::in_dir(&node_dir));
    let mut files: Vec<_> = fs::read_dir(&node_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    // No cluster token any more: the certificate is the node's credential.
    assert_eq!(files, ["ca.pem", "node-key.pem", "node.pem"]);
    assert!(!gw_dir.join("cluster.token").exists());
    assert_eq!(
        fs::read(&node.ca_cert).unwrap(),
        fs::read(&cluster.ca_cert).unwrap()
    );
    assert_eq!(mode(&node.node_key), 0o600);

    let server = NodeTls::load(&node_dir).unwrap();
    assert_eq!(
        server.identity().unwrap().role,
        sixfold_certs::PeerRole::Node(req.node_id)
    );
    let client = GatewayTls::load(&gw_dir).unwrap();
    assert_eq!(
        client.identity().unwrap().role,
        sixfold_certs::PeerRole::Gateway
    );
    let done = handshake(
        client.client_config(),
        server.server_config(),
        ip_name("127.0.0.1"),
    )
    .expect("handshake");
    assert_eq!(done.client.alpn_protocol(), Some(ALPN));

    // Re-issuing without force leaves the node's files alone.
    let key_before = fs::read(&node.node_key).unwrap();
    let err = issue_node(&gw_dir, &req, &node_dir, false).unwrap_err();
    assert!(
        matches!(&err, CertsError::AlreadyExists { path } if path == &node.node_cert),
        "{err:?}"
    );
    assert_eq!(fs::read(&node.node_key).unwrap(), key_before);
    issue_node(&gw_dir, &req, &node_dir, true).unwrap();
    assert_ne!(fs::read(&node.node_key).unwrap(), key_before);
    NodeTls::load(&node_dir).unwrap();
}

#[test]
fn init_cluster_refuses_to_replace_a_cluster_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_cluster(dir.path(), &InitOptions::default()).unwrap();
    let ca_before = fs::read(&paths.ca_cert).unwrap();

    // Any one existing file blocks the whole operation.
    fs::remove_file(&paths.ca_cert).unwrap();
    let err = init_cluster(dir.path(), &InitOptions::default()).unwrap_err();
    assert!(
        matches!(&err, CertsError::AlreadyExists { path } if path == &paths.ca_key),
        "{err:?}"
    );
    assert!(!paths.ca_cert.exists());
    fs::write(&paths.ca_cert, &ca_before).unwrap();

    let forced = InitOptions {
        force: true,
        ..InitOptions::default()
    };
    init_cluster(dir.path(), &forced).unwrap();
    assert_ne!(fs::read(&paths.ca_cert).unwrap(), ca_before);
    ClusterCa::load(dir.path()).unwrap();
}

#[test]
fn issue_node_into_the_gateway_dir_keeps_the_shared_files() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = init_cluster(dir.path(), &InitOptions::default()).unwrap();
    let ca_before = fs::read(&cluster.ca_cert).unwrap();
    issue_node(
        dir.path(),
        &node_request("local", &["127.0.0.1"]),
        dir.path(),
        false,
    )
    .unwrap();
    assert_eq!(fs::read(&cluster.ca_cert).unwrap(), ca_before);
    let server = NodeTls::load(dir.path()).unwrap();
    let client = GatewayTls::load(dir.path()).unwrap();
    handshake(
        client.client_config(),
        server.server_config(),
        ip_name("127.0.0.1"),
    )
    .expect("handshake");
}

#[test]
fn loaders_name_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path(), &InitOptions::default()).unwrap();
    let err = NodeTls::load(dir.path()).unwrap_err();
    let node_pem = dir.path().join(layout::NODE_CERT);
    assert!(
        matches!(&err, CertsError::Io { path, .. } if path == &node_pem),
        "{err:?}"
    );
    assert!(err.to_string().contains("node.pem"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = GatewayTls::load(empty.path()).unwrap_err();
    let ca_pem = empty.path().join(layout::CA_CERT);
    assert!(
        matches!(&err, CertsError::Io { path, .. } if path == &ca_pem),
        "{err:?}"
    );
}

#[test]
fn issue_node_without_a_ca_key_fails_before_writing() {
    let root = tempfile::tempdir().unwrap();
    let gw_dir = root.path().join("gw");
    let out = root.path().join("out");
    init_cluster(&gw_dir, &InitOptions::default()).unwrap();
    fs::remove_file(gw_dir.join(layout::CA_KEY)).unwrap();
    let err = issue_node(&gw_dir, &node_request("n", &["10.0.0.1"]), &out, false).unwrap_err();
    assert!(
        matches!(&err, CertsError::Io { path, .. } if path == &gw_dir.join(layout::CA_KEY)),
        "{err:?}"
    );
    assert!(!out.exists());
}
