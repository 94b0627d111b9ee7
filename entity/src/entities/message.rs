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
    pub raw: Vec<u8>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
