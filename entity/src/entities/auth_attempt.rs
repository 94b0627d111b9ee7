use sea_orm::entity::prelude::*;

/// One counted sign-in attempt (login, MFA code, password reset), so limits hold across
/// API instances. Old rows are pruned by the worker.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `login`, `mfa` or `reset`.
    pub scope: String,
    /// The account id, or the client address for attempts on no account.
    pub subject: String,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
