//! Certificate verifiers that check the peer's role (see [`crate::identity`]) on top of the
//! chain to the cluster CA: a node accepts only the gateway as a client, the gateway's
//! internal listener only nodes, and a node's registration client only the gateway as server.
//!
//! A verifier refuses in the handshake, so a peer with the wrong role never gets to send a
//! request. Chain, validity and signature checks are rustls' own (webpki); only the role test
//! is ours.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::{PeerRole, parse_identity};

/// Which roles a verifier lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredRole {
    /// Only the gateway's certificate.
    Gateway,
    /// Any node's certificate (the node id is read from it later).
    AnyNode,
}

impl RequiredRole {
    fn admits(self, role: PeerRole) -> bool {
        matches!(
            (self, role),
            (RequiredRole::Gateway, PeerRole::Gateway) | (RequiredRole::AnyNode, PeerRole::Node(_))
        )
    }
}

/// The role check on a certificate that already chains to the CA.
fn check_role(cert: &CertificateDer<'_>, required: RequiredRole) -> Result<(), Error> {
    match parse_identity(cert) {
        Ok(identity) if required.admits(identity.role) => Ok(()),
        Ok(identity) => {
            tracing::warn!(
                role = %identity.role,
                common_name = ?identity.common_name,
                ?required,
                "refused a peer certificate with the wrong role"
            );
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, ?required, "refused a peer certificate without a role");
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// rustls' WebPKI client verifier plus a role check.
#[derive(Debug)]
pub struct RoleClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    required: RequiredRole,
}

impl RoleClientVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, required: RequiredRole) -> Self {
        Self { inner, required }
    }
}

impl ClientCertVerifier for RoleClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_role(end_entity, self.required)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies a server by its chain to the cluster CA and its role, not by its name: inside the
/// cluster the role in a CA-signed certificate is the identity, and the gateway's address may
/// be any name or IP the operator chose.
#[derive(Debug)]
pub struct RoleServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    required: RequiredRole,
}

impl RoleServerVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        required: RequiredRole,
    ) -> Self {
        Self {
            roots,
            provider,
            required,
        }
    }
}

impl ServerCertVerifier for RoleServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        check_role(end_entity, self.required)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
