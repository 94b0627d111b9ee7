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
    pub kind: ActivityKind,
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ActivityKind {
    /// Forwarded to the alias's mailboxes.
    #[sea_orm(string_value = "forward")]
    Forward,
    /// The owner's reply, sent to a contact.
    #[sea_orm(string_value = "reply")]
    Reply,
    /// Received but not forwarded: disabled alias, blocked contact, no mailbox.
    #[sea_orm(string_value = "block")]
    Block,
    /// A delivery failed or came back.
    #[sea_orm(string_value = "bounce")]
    Bounce,
    /// A reply that was not sent (unauthorised sender, recipient without a reverse alias).
    #[sea_orm(string_value = "refused")]
    Refused,
    /// Mail from the alias's own mailbox to the alias: not sent back.
    #[sea_orm(string_value = "loop")]
    Loop,
    /// Mail to a bounce address that is not a failure report.
    #[sea_orm(string_value = "auto-reply")]
    AutoReply,
    /// Held in the quarantine (DMARC p=quarantine failed, the owner holds such mail).
    #[sea_orm(string_value = "quarantined")]
    Quarantined,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Reply => "reply",
            Self::Block => "block",
            Self::Bounce => "bounce",
            Self::Refused => "refused",
            Self::Loop => "loop",
            Self::AutoReply => "auto-reply",
            Self::Quarantined => "quarantined",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
