//! Server secrets (HMAC keys) kept in the database so every instance shares them.

use hmac::{Hmac, Mac};
use postern_entity::secret;
use rand::RngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use sha2::Sha256;

use crate::{DomainError, Result};

/// A 256-bit key used to sign addresses we hand out (VERP, suffixes).
#[derive(Clone)]
pub struct HmacKey([u8; 32]);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

impl HmacKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// HMAC-SHA256 of `parts`, each prefixed with its length so boundaries cannot shift.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC-SHA256 accepts keys of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Reads the named secret, creating it with 32 random bytes the first time.
pub async fn load_or_create(db: &impl ConnectionTrait, name: &str) -> Result<HmacKey> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    // Insert-if-absent, then read: two instances starting together agree on one value.
    secret::Entity::insert(secret::ActiveModel {
        name: Set(name.to_string()),
        value: Set(fresh.to_vec()),
    })
    .on_conflict(
        OnConflict::column(secret::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let row = secret::Entity::find_by_id(name.to_string())
        .one(db)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("secret {name}")))?;
    let bytes: [u8; 32] = row
        .value
        .as_slice()
        .try_into()
        .map_err(|_| DomainError::Crypto(format!("secret {name} is not 32 bytes")))?;
    Ok(HmacKey(bytes))
}
