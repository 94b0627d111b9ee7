use sea_orm::entity::prelude::*;

/// An address allowed to send as one of the user's mailboxes through reverse aliases
/// (SimpleLogin's `authorized_address`): a second account the owner writes from.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authorized_addresses")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub mailbox_id: i64,
    /// Lowercase.
    pub email: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
