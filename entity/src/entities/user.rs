use sea_orm::entity::prelude::*;

/// An account: owns mailboxes, aliases and API keys.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub name: Option<String>,
    /// argon2id PHC string; `None` for users created by an admin without a password.
    pub password_hash: Option<String>,
    pub default_mailbox_id: Option<i64>,
    /// Maximum number of aliases; `None` is unlimited.
    pub alias_quota: Option<i32>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
