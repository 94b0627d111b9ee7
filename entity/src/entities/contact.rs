use sea_orm::entity::prelude::*;

/// An external correspondent of one alias, reached through its reverse alias.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub alias_id: i64,
    /// The external address (lowercase).
    pub email: String,
    pub name: Option<String>,
    /// The reverse alias: the address the owner writes to in order to reach `email`.
    #[sea_orm(unique)]
    pub reply_email: String,
    pub blocked: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
