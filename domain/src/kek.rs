//! The key-encryption key: DKIM private keys are stored sealed with it (AES-256-GCM, the
//! key's domain and selector bound as associated data), so a copy of the database alone
//! signs nothing. Every instance sharing the database needs the same key.
//!
//! Where it comes from, first found: `dkim.kek` (as `POSTERN_DKIM__KEK` in the environment),
//! the file `dkim.kek_file`, or `<data_dir>/dkim-kek`, which the embedded default creates on
//! first start when the database holds no sealed key yet.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, RandomizedNonceKey};
use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use postern_config::Settings;
use postern_entity::dkim_key;
use rand::RngCore;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{DomainError, Result};

/// Format of a sealed key: this byte, the nonce, then ciphertext and tag.
const VERSION: u8 = 1;
const NONCE: usize = 12;

pub struct Kek(RandomizedNonceKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(***)")
    }
}

impl Kek {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map(Self)
            .map_err(|_| DomainError::Crypto("the key-encryption key is unusable".into()))
    }

    /// 32 bytes written as base64 or hex.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = BASE64
            .decode(text.as_bytes())
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| {
                HEXLOWER_PERMISSIVE
                    .decode(text.as_bytes())
                    .ok()
                    .filter(|b| b.len() == 32)
            })
            .ok_or_else(|| {
                DomainError::Invalid(
                    "the key-encryption key must be 32 bytes in base64 (44 characters) or hex (64)"
                        .into(),
                )
            })?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Self::from_bytes(&key)
    }

    pub fn seal(&self, aad: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let mut buf = plain.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| DomainError::Crypto("sealing a key failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE + buf.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let wrong = || {
            DomainError::Crypto(
                "a DKIM key cannot be opened with this key-encryption key: is it the one the \
                 other instances use?"
                    .into(),
            )
        };
        if sealed.len() < 1 + NONCE + 16 || sealed[0] != VERSION {
            return Err(wrong());
        }
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE])
            .map_err(|_| wrong())?;
        let mut buf = sealed[1 + NONCE..].to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }

    /// The key for this instance (see the module's documentation). Refuses, saying why, when
    /// the database holds sealed keys and no key is configured, or the key does not open them.
    pub async fn load(settings: &Settings, db: &impl ConnectionTrait) -> Result<Self> {
        let dkim = &settings.dkim;
        let sealed = dkim_key::Entity::find()
            .filter(dkim_key::Column::Encrypted.eq(true))
            .one(db)
            .await?;
        let kek = if let Some(text) = &dkim.kek {
            Self::parse(text)?
        } else if let Some(path) = &dkim.kek_file {
            read(path)?
        } else {
            let path = settings.data_dir.join("dkim-kek");
            if path.exists() {
                read(&path)?
            } else if sealed.is_some() {
                return Err(DomainError::Invalid(format!(
                    "the DKIM keys in the database are encrypted and this instance has no \
                     key-encryption key: set POSTERN_DKIM__KEK (or dkim.kek_file) to the key \
                     the other instances use (the first one keeps it in its {})",
                    path.display()
                )));
            } else {
                create(&path)?
            }
        };
        if let Some(k) = sealed {
            kek.open(&aad(&k.domain, &k.selector), &k.private_key)?;
        }
        Ok(kek)
    }
}

/// What a sealed key is bound to.
pub fn aad(domain: &str, selector: &str) -> String {
    format!("dkim:{domain}:{selector}")
}

fn read(path: &Path) -> Result<Kek> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DomainError::Invalid(format!(
            "cannot read the key-encryption key {}: {e}",
            path.display()
        ))
    })?;
    Kek::parse(&text).map_err(|e| DomainError::Invalid(format!("{}: {e}", path.display())))
}

/// A fresh key in a new file only its owner may read. Written whole to a private temporary
/// file and then linked into place, which fails if another process got there first: then its
/// key is the one, and is read back.
fn create(path: &Path) -> Result<Kek> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let text = format!("{}\n", BASE64.encode(&key));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    let created = write().and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match created {
        Ok(()) => Kek::from_bytes(&key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(DomainError::Invalid(format!(
            "cannot create the key-encryption key {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_key_and_binding() {
        let kek = Kek::from_bytes(&[9; 32]).expect("key");
        let sealed = kek.seal("dkim:a.test:s1", b"private").expect("seal");
        assert_ne!(&sealed[1 + NONCE..], b"private");
        assert_eq!(
            kek.open("dkim:a.test:s1", &sealed).expect("open"),
            b"private"
        );
        assert!(
            kek.open("dkim:b.test:s1", &sealed).is_err(),
            "bound to its name"
        );
        let other = Kek::from_bytes(&[8; 32]).expect("key");
        assert!(other.open("dkim:a.test:s1", &sealed).is_err());
        assert!(kek.open("dkim:a.test:s1", &sealed[..10]).is_err());
    }

    #[test]
    fn keys_are_read_as_base64_or_hex() {
        assert!(Kek::parse(&BASE64.encode(&[1; 32])).is_ok());
        assert!(Kek::parse(&"ab".repeat(32)).is_ok());
        assert!(Kek::parse("short").is_err());
    }
}
