//! End-to-end: the whole service on loopback ports, a real SMTP client sending, a real SMTP
//! sink receiving. Runs on SQLite, or on PostgreSQL with POSTERN_TEST_DATABASE_URL.

mod accounts;
mod admin;
mod api;
mod auth;
mod bounces;
mod browser;
mod dkim;
mod forward;
mod gateway;
mod hardening;
mod limits;
mod mtasts;
mod privacy;
mod queue;
mod reply;
mod web;
mod worker;

use postern_tests::harness::TestServer;

/// A user `me@real.test` with one alias; returns (server, alias).
pub async fn server_with_alias() -> (TestServer, String) {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    (server, alias)
}

/// A small message from Bob to `to`.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "Received: from bob-laptop (192.0.2.7) by mx.ext.test\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; d=ext.test; s=x; b=AAAA\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <orig-{subject_id}@ext.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {body}\r\n",
        subject_id = subject.replace(' ', "-")
    )
    .into_bytes()
}

/// The reverse alias in a forwarded message's From header.
pub fn reverse_alias_of(from_header: &str) -> String {
    let start = from_header.rfind('<').expect("From has <") + 1;
    let end = from_header.rfind('>').expect("From has >");
    from_header[start..end].to_string()
}
