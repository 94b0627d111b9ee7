//! Postern's inbound SMTP server (the MX): receives mail for aliases and hands each
//! message to a [`Backend`] implemented by the domain layer.

mod backend;
mod config;
mod domain_backend;
mod guard;
mod inbound;
mod reply;
mod server;
mod session;
mod tls;

pub use backend::Backend;
pub use config::GatewayConfig;
pub use domain_backend::DomainBackend;
pub use reply::Reply;
pub use server::serve;
pub use session::Session;
pub use tls::{TlsError, load_or_create_tls};

#[cfg(test)]
mod tests;
