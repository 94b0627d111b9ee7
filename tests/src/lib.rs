//! Test support for Postern's end-to-end suite: the whole service on loopback ports, a real
//! SMTP sink standing in for the relay, and a plain SMTP client.

pub mod browser;
pub mod client;
pub mod dns;
pub mod harness;
pub mod http;
pub mod sink;
pub mod tls;
pub mod verifier;
