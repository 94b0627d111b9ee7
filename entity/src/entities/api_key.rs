use sea_orm::entity::prelude::*;

/// An API key, stored only as a SHA-256 hash of the key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub use_count: i64,
    pub last_used: Option<DateTimeUtc>,
    /// Set by re-entering the password; sensitive calls need it to be recent.
    pub sudo_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
