//! Database entities (sea-orm) and the migrations that create them, for SQLite and PostgreSQL.
//!
//! Entities stay plain data; queries and behaviour live in the `domain` crate.

pub mod entities;
pub mod migration;

pub use entities::*;
