use sea_orm::entity::prelude::*;

/// A real address that receives what its aliases forward.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mailboxes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    /// Unique among verified mailboxes; unverified claims of an address may coexist.
    pub email: String,
    pub verified: bool,
    /// Forwarding stopped after repeated hard bounces (the owner re-enables it).
    pub disabled: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
