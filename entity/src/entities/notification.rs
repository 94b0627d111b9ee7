use sea_orm::entity::prelude::*;

/// Something Postern tells a user in the app (and, rate-limited, by email): a bounce, a
/// disabled mailbox, a held message.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub message: String,
    pub alias_id: Option<i64>,
    pub read: bool,
    /// Whether it was also sent by email (emails are limited per kind and day).
    pub emailed: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
