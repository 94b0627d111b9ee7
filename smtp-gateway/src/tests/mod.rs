//! SMTP transcripts driven in memory over `tokio::io::duplex`.

mod commands;
mod data;
mod fuzz;
mod server;
mod starttls;
mod support;
mod tls_files;
