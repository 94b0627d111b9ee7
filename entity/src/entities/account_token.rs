use sea_orm::entity::prelude::*;

/// A one-time secret sent by email: account activation or password reset. Stored hashed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    /// `activate` or `reset`.
    pub purpose: String,
    #[sea_orm(unique)]
    pub token_hash: String,
    /// A short code the user can type instead of following the link (activation).
    pub code_hash: Option<String>,
    pub tries: i32,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
