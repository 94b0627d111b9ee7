//! One file per SMTP verb, each an `impl Session` block.

mod data;
mod ehlo;
mod mail;
mod rcpt;
mod starttls;
