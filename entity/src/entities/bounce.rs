use sea_orm::entity::prelude::*;

/// A delivery that came back (a report to its VERP address) or was refused for good, as
/// classified. `counts`: a hard bounce that says the mailbox is gone or full (5.1.x, 5.2.x),
/// counted toward disabling the mailbox.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bounces")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub alias_id: Option<i64>,
    pub delivery_id: Option<i64>,
    /// The mailbox that refused a forward.
    pub mailbox_id: Option<i64>,
    /// `forward` (a mailbox refused) or `reply` (a contact refused).
    pub phase: String,
    /// `hard`, `soft` or `complaint`.
    pub class: String,
    pub rcpt: String,
    pub status: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    pub counts: bool,
    /// The report as received (with the refused original), kept like the quarantine.
    pub message_id: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
