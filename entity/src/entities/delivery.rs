use sea_orm::entity::prelude::*;

/// One queued (message, recipient) pair: the unit of delivery and retry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: i64,
    pub user_id: Option<i64>,
    pub alias_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// `forward`, `reply` or `notice`.
    pub kind: String,
    pub rcpt: String,
    /// `queued`, `delivered`, `failed` (permanent) or `bounced` (a DSN came back).
    pub status: String,
    pub attempts: i32,
    /// Unix milliseconds; a claimed delivery is pushed forward by its lease.
    pub next_attempt_at: i64,
    pub expires_at: i64,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
