use sea_orm::entity::prelude::*;

/// A message held back instead of forwarded (its sender's DMARC policy asks for quarantine,
/// it fails that check, and the owner chose to hold such mail). The owner lists it, releases
/// it (then it is forwarded, marked) or deletes it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "quarantine")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub alias_id: i64,
    /// The stored message (kept while it is held).
    pub message_id: i64,
    pub sender: String,
    pub subject: Option<String>,
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
