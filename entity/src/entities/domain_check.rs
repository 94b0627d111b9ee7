use sea_orm::entity::prelude::*;

/// The last DNS check of one of our domains (`postern domain check`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "domain_checks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub domain: String,
    pub checked_at: DateTimeUtc,
    pub ok: bool,
    /// One finding per line.
    #[sea_orm(column_type = "Text")]
    pub findings: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
