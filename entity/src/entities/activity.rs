use sea_orm::entity::prelude::*;

/// What happened to an alias: forward, reply, block, bounce.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "activities")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub alias_id: i64,
    pub contact_id: Option<i64>,
    /// `forward`, `reply`, `block`, `bounce` or `refused`.
    pub kind: String,
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
