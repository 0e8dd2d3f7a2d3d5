//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = CertsError> = std::result::Result<T, E>;

/// Everything that can go wrong while making, storing or loading cluster PKI material.
///
/// Variants that concern a file carry its path, so the message alone tells an operator
/// which file to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// The target file exists and overwriting was not requested.
    #[error("{}: already exists (use force to overwrite)", path.display())]
    AlreadyExists {
        /// The file that exists.
        path: PathBuf,
    },

    /// Reading, writing, creating or renaming a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A PEM file could not be parsed.
    #[error("{}: invalid PEM: {source}", path.display())]
    Pem {
        /// The file concerned.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// A PEM file holds no item of the expected kind.
    #[error("{}: no {what} found", path.display())]
    MissingPemItem {
        /// The file concerned.
        path: PathBuf,
        /// What was looked for ("certificate", "private key").
        what: &'static str,
    },

    /// A key or certificate file is readable but its content is unusable.
    #[error("{}: {reason}", path.display())]
    InvalidFile {
        /// The file concerned.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// The certificate request or validity window is not acceptable.
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),

    /// rcgen refused to generate a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),

    /// rustls refused the certificates or key for a TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    /// The client-certificate verifier could not be built (e.g. no CA certificate).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
}

impl CertsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::InvalidFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
