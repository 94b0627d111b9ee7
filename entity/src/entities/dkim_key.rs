use sea_orm::entity::prelude::*;

/// A DKIM signing key of a domain (PKCS#8 DER).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dkim_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub domain: String,
    pub selector: String,
    /// `rsa` or `ed25519`.
    pub algorithm: String,
    pub private_key: Vec<u8>,
    /// Base64 of the public key as published in the `p=` tag.
    pub public_key: String,
    pub created_at: DateTimeUtc,
    /// `pending` (published, not yet seen in DNS), `active` (signs), `retiring` (still
    /// published during the overlap, no longer signs).
    pub state: String,
    /// `private_key` is sealed with the key-encryption key (AES-256-GCM).
    pub encrypted: bool,
    pub activated_at: Option<DateTimeUtc>,
    pub retire_after: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
