use sea_orm::entity::prelude::*;

/// An address on an alias domain that forwards to its mailboxes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aliases")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub enabled: bool,
    pub name: Option<String>,
    pub note: Option<String>,
    /// Shown first in lists.
    pub pinned: bool,
    /// Activity counts rolled up when old activity is pruned (the stats add them).
    pub pruned_forwards: i64,
    pub pruned_blocks: i64,
    pub pruned_replies: i64,
    /// In the trash since: mail to it is blocked, it is listed nowhere, and the retention job
    /// purges it after `retention.trash_days` (its address stays taken forever).
    pub deleted_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
