//! The shared logic of Postern, written once for the gateway, the API and the worker:
//! addresses, accounts and aliases, reverse aliases, rewriting, DKIM, VERP, the delivery
//! queue and the outbound transport.

pub mod accounts;
pub mod address;
pub mod auth;
pub mod db;
pub mod dkim;
pub mod error;
pub mod listing;
pub mod mailflow;
pub mod notice;
pub mod outbound;
pub mod queue;
pub mod resolve;
pub mod rewrite;
pub mod secrets;
pub mod suffix;
pub mod verp;
mod words;

pub use address::EmailAddress;
pub use error::{DomainError, Result};

/// Milliseconds since the Unix epoch, the unit of queue scheduling columns.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
