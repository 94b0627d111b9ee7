use sea_orm::entity::prelude::*;

/// An account: owns mailboxes, aliases and API keys.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub name: Option<String>,
    /// argon2id PHC string; `None` for users created by an admin without a password.
    pub password_hash: Option<String>,
    pub default_mailbox_id: Option<i64>,
    /// Maximum number of aliases; `None` is unlimited.
    pub alias_quota: Option<i32>,
    /// False until a self-registered user confirms the address.
    pub activated: bool,
    pub disabled: bool,
    /// Base32 TOTP secret when two-factor authentication is on.
    pub totp_secret: Option<String>,
    /// The last TOTP step accepted, so a code works once.
    pub totp_last_step: Option<i64>,
    /// A secret the server generated at MFA setup, waiting for a code to confirm it.
    pub totp_pending: Option<String>,
    /// What a blocked sender or a disabled alias's sender hears: `return_2xx` (accepted,
    /// silently dropped; the default) or `return_5xx` (`550 5.1.1`), as SimpleLogin names them.
    pub block_behaviour: String,
    /// Mail failing a DMARC `p=quarantine`: `warn` (forwarded with a warning; the default) or
    /// `hold` (kept in the quarantine until released).
    pub dmarc_quarantine: String,
    /// In tenths of a point: mail that a trusted upstream filter (`smtp.spam_filters`) scored
    /// above it is held in the quarantine. `None`: no threshold, such scores are ignored.
    pub spam_threshold: Option<i32>,
    /// `word` or `uuid`: how random aliases are made when a client does not say.
    pub alias_generator: String,
    /// How reverse aliases show senders: `AT`, `A`, `NAME_ONLY`, `AT_ONLY`, `NO_NAME`.
    pub sender_format: String,
    /// `word` (`.cat123`) or `random_string` (`.48213`) suffixes for custom aliases.
    pub random_alias_suffix: String,
    pub notification: bool,
    /// Domain of new random aliases; `None` is the server's first alias domain.
    pub default_alias_domain: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
