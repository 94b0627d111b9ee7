use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::support::TempDir;
use crate::{TlsError, load_or_create_tls};

#[test]
fn certificate_is_created_once_and_then_reused() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = TempDir::new("tls-files");
    let cert = dir.path().join("tls/cert.pem");
    let key = dir.path().join("tls/key.pem");

    load_or_create_tls(&cert, &key, "mx.alias.test").expect("create");
    let created = fs::read(&cert).expect("certificate written");
    let mode = fs::metadata(&key)
        .expect("key written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    load_or_create_tls(&cert, &key, "mx.alias.test").expect("load");
    assert_eq!(fs::read(&cert).expect("certificate kept"), created);
}

#[test]
fn unusable_files_are_errors() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = TempDir::new("tls-bad-files");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    fs::write(&cert, "not a certificate").expect("write");
    fs::write(&key, "not a key").expect("write");
    assert!(matches!(
        load_or_create_tls(&cert, &key, "mx.alias.test"),
        Err(TlsError::NoCertificate { .. })
    ));

    load_or_create_tls(&dir.path().join("new.pem"), &key, "mx.alias.test")
        .expect("a missing certificate regenerates the pair");
}
