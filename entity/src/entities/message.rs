use sea_orm::entity::prelude::*;

/// A message stored once, exactly as received (or, for notices, as Postern wrote it).
/// Every delivery made from it refers to it; what is sent is rendered from it at delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The envelope sender it arrived with (`""` for the null sender); `None` for notices.
    pub mail_from: Option<String>,
    /// A random token: the Message-ID we give the messages rendered from it, when they need one.
    pub token: Option<String>,
    /// The bytes; empty when the message is stored in `parts` pieces instead.
    pub raw: Vec<u8>,
    pub created_at: DateTimeUtc,
    /// How many `message_parts` hold the bytes (0: they are in `raw`).
    pub parts: i32,
    /// The client's address and HELO name, for checking the sender again when a forward is
    /// sealed (ARC); `None` for notices.
    pub client_ip: Option<String>,
    pub helo: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
