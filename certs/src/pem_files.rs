//! Reading certificates and private keys from PEM files, and writing a cert + key pair.

use std::fs;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{CertsError, Result};
use crate::file_write::{FileAccess, ensure_absent, warn_if_exposed, write_file};

/// Reads every certificate in a PEM file (a chain is leaf first). At least one is required.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    read_certificates_pem(path).map(|(_, certs)| certs)
}

/// Like [`read_certificates`], also returning the file's text (to copy it verbatim).
pub(crate) fn read_certificates_pem(path: &Path) -> Result<(String, Vec<CertificateDer<'static>>)> {
    const WHAT: &str = "certificate";
    let text = fs::read_to_string(path).map_err(|e| CertsError::io(path, e))?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e, WHAT))?;
    if certs.is_empty() {
        return Err(CertsError::MissingPemItem {
            path: path.to_path_buf(),
            what: WHAT,
        });
    }
    Ok((text, certs))
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) in a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e, "private key"))?;
    warn_if_exposed(path);
    Ok(key)
}

/// Writes a certificate (mode 0644) and its private key (mode 0600).
///
/// Without `force`, nothing is written if either file exists.
pub fn write_cert_and_key(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
    force: bool,
) -> Result<()> {
    if !force {
        ensure_absent(&[cert_path, key_path])?;
    }
    write_file(key_path, key_pem.as_bytes(), FileAccess::Secret, force)?;
    write_file(cert_path, cert_pem.as_bytes(), FileAccess::Public, force)
}

fn pem_error(path: &Path, err: pem::Error, what: &'static str) -> CertsError {
    match err {
        pem::Error::Io(source) => CertsError::io(path, source),
        pem::Error::NoItemsFound => CertsError::MissingPemItem {
            path: path.to_path_buf(),
            what,
        },
        source => CertsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    }
}
