//! The shared logic of Postern, written once for the gateway, the API and the worker.
//!
//! The mail path is a pipeline ([`pipeline`]): the gateway hands over an [`Envelope`] and
//! the bytes; the message is parsed once ([`message`]), each recipient resolved and decided,
//! the flows ([`flow`]) plan the writes, one group commit makes them durable, and
//! [`delivery`] renders and sends each delivery.

pub mod accounts;
pub mod action;
pub mod address;
pub mod auth;
pub mod banner;
pub mod cache;
pub mod context;
pub mod db;
pub mod delivery;
pub mod dkim;
pub mod dns;
pub mod dnscheck;
pub mod dsn;
pub mod envelope;
pub mod error;
pub mod flow;
pub mod kek;
pub mod limit;
pub mod listing;
pub mod message;
pub mod mtasts;
pub mod outbound;
pub mod pipeline;
pub mod quarantine;
pub mod retention;
pub mod rewrite;
pub mod scrub;
pub mod secrets;
pub mod spam;
pub mod suffix;
pub mod verp;
mod words;

#[cfg(test)]
mod fuzz;

pub use address::EmailAddress;
pub use context::Context;
pub use envelope::Envelope;
pub use error::{DomainError, Result};

/// Milliseconds since the Unix epoch, the unit of queue scheduling columns.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
