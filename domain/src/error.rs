use sea_orm::DbErr;

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

/// What can go wrong in domain logic; callers map it to SMTP replies, HTTP statuses or CLI errors.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A part of the service is not running (the database writer, say): try again later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Input a person or client gave that breaks a rule (a short password, a bad address).
    #[error("{0}")]
    Invalid(String),
    /// Message content no server could pass on as it is.
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("crypto error: {0}")]
    Crypto(String),
}

impl DomainError {
    /// True when trying again later may succeed (database unavailable, lock contention).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DomainError::Db(_) | DomainError::Crypto(_) | DomainError::Unavailable(_)
        )
    }
}
