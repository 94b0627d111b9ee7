use sea_orm::entity::prelude::*;

/// One queued (message, recipient) pair: the unit of delivery and retry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The stored message this delivery is rendered from.
    pub message_id: i64,
    pub user_id: Option<i64>,
    pub alias_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub kind: DeliveryKind,
    pub rcpt: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// Unix milliseconds; while claimed, the end of the claimant's lease.
    pub next_attempt_at: i64,
    pub expires_at: i64,
    pub last_error: Option<String>,
    /// The instance attempting it right now (see `next_attempt_at` for how long).
    pub claimed_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// What a delivery sends, and so how it is rendered from its stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryKind {
    /// Mail to an alias, rewritten for one of its mailboxes.
    #[sea_orm(string_value = "forward")]
    Forward,
    /// The owner's reply, rewritten to come from the alias.
    #[sea_orm(string_value = "reply")]
    Reply,
    /// A message Postern wrote (failure notices and the like): signed, otherwise as stored.
    #[sea_orm(string_value = "notice")]
    Notice,
    /// Mail to postmaster@/abuse@, passed on as received with a marker header, unsigned.
    #[sea_orm(string_value = "postmaster")]
    Postmaster,
    /// Stored already rendered and signed (queued before rendering moved to delivery).
    #[sea_orm(string_value = "prepared")]
    Prepared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Refused for good, or out of time.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Accepted by the next hop, then a failure report came back.
    #[sea_orm(string_value = "bounced")]
    Bounced,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
