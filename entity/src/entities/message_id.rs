use sea_orm::entity::prelude::*;

/// A Message-ID we put on a reply, and the one the mailbox gave it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_ids")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub alias_id: i64,
    #[sea_orm(unique)]
    pub our_id: String,
    pub original_id: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
