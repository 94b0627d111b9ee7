use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the STARTTLS certificate could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("no private key in {path}")]
    NoPrivateKey { path: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads the PEM certificate chain and key if both files exist; otherwise generates a
/// self-signed certificate for `hostname` and stores it there, so restarts keep it.
pub fn load_or_create_tls(
    cert_path: &Path,
    key_path: &Path,
    hostname: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    if !(cert_path.exists() && key_path.exists()) {
        create_self_signed(cert_path, key_path, hostname)?;
    }
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    // An explicit provider: the process default may be unset, or ambiguous if another
    // crate enables a second one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn create_self_signed(cert_path: &Path, key_path: &Path, hostname: &str) -> Result<(), TlsError> {
    tracing::info!(cert = %cert_path.display(), "generating a self-signed certificate");
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])?;
    // The key first: a crash in between leaves no certificate, so the next start
    // regenerates both rather than pairing a new certificate with a stale key.
    write_file(
        key_path,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(cert_path, generated.cert.pem().as_bytes(), 0o644)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let io_error = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    // `mode` applies only to new files; an existing key file must not stay readable.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

fn open(path: &Path) -> Result<BufReader<fs::File>, TlsError> {
    fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.to_owned(),
        })
}
