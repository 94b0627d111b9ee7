use sea_orm::entity::prelude::*;

/// Which mailboxes an alias forwards to.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alias_mailboxes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub alias_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub mailbox_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
