//! Abuse limits, each hit and recovered from: per client (sessions, connection rate,
//! commands, session length, refused recipients), per alias and user (messages, replies),
//! per user through the API (contacts).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use postern_tests::client::{self, SmtpClient};
use postern_tests::harness::TestServer;
use postern_tests::http::http;

use crate::message;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

async fn server(extra: &[(&str, &str)]) -> (TestServer, String) {
    let server = TestServer::start_with(extra).await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    (server, alias)
}

#[tokio::test]
async fn idle_sessions_from_one_client_cannot_hold_every_slot() {
    let (server, _) = server(&[("smtp.max_connections_per_client", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let c = SmtpClient::connect_from(server.smtp(), ip("127.0.0.1")).await;
        assert!(c.greeting.starts_with("220"), "{}", c.greeting);
        held.push(c);
    }
    let refused = SmtpClient::connect_from(server.smtp(), ip("127.0.0.1")).await;
    assert!(
        refused.greeting.starts_with("421 4.7.0") && refused.greeting.contains("your address"),
        "{}",
        refused.greeting
    );
    // Someone else is served.
    let other = SmtpClient::connect_from(server.smtp(), ip("127.0.0.2")).await;
    assert!(other.greeting.starts_with("220"), "{}", other.greeting);
    // A slot comes back when a session ends.
    let mut first = held.remove(0);
    assert!(first.cmd("QUIT").await.starts_with("221"));
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        let c = SmtpClient::connect_from(server.smtp(), ip("127.0.0.1")).await;
        if c.greeting.starts_with("220") {
            again = Some(c);
            break;
        }
        // The slot is given back just after the server closes the connection, an event
        // the client cannot see: a bounded retry, not a timing assumption.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "the client is served again once a session ends"
    );
}

#[tokio::test]
async fn new_connections_per_minute_are_limited_except_for_trusted_networks() {
    let (server, _) = server(&[
        ("smtp.connections_per_minute_per_client", "3"),
        ("smtp.trusted_networks", "127.0.0.3/32"),
    ])
    .await;
    for _ in 0..3 {
        let c = SmtpClient::connect_from(server.smtp(), ip("127.0.0.1")).await;
        assert!(c.greeting.starts_with("220"), "{}", c.greeting);
    }
    let c = SmtpClient::connect_from(server.smtp(), ip("127.0.0.1")).await;
    assert!(c.greeting.starts_with("421 4.7.0"), "{}", c.greeting);
    for _ in 0..10 {
        let c = SmtpClient::connect_from(server.smtp(), ip("127.0.0.3")).await;
        assert!(c.greeting.starts_with("220"), "trusted: {}", c.greeting);
    }
}

#[tokio::test]
async fn a_session_has_a_command_budget_and_a_time_budget() {
    let (server, _) = server(&[
        ("smtp.max_commands", "5"),
        ("smtp.max_session_duration", "1"),
    ])
    .await;
    let mut c = SmtpClient::ready(server.smtp()).await;
    for _ in 0..4 {
        assert!(c.cmd("NOOP").await.starts_with("250"));
    }
    let r = c.cmd("NOOP").await;
    assert!(r.starts_with("421 4.7.0 Too many commands"), "{r}");
    // A new session starts with a fresh budget…
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("NOOP").await.starts_with("250"));
    // …and ends when its time is up, even while idle: the server speaks first.
    let r = c.reply().await;
    assert!(r.starts_with("421 4.7.0 Session too long"), "{r}");
}

#[tokio::test]
async fn guessing_recipients_is_slowed_then_cut_off() {
    let (server, alias) = server(&[("smtp.tarpit_after", "2"), ("smtp.max_errors", "5")]).await;
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(
        c.cmd("MAIL FROM:<prober@ext.test>")
            .await
            .starts_with("250")
    );
    let mut waits = Vec::new();
    let mut last = String::new();
    for n in 0..5 {
        let started = Instant::now();
        last = c.cmd(&format!("RCPT TO:<guess{n}@alias.test>")).await;
        waits.push(started.elapsed());
    }
    assert!(last.starts_with("550 5.1.1"), "{last}");
    let closing = c.reply().await;
    assert!(
        closing.starts_with("421 4.7.0"),
        "the fifth error ends the session: {closing}"
    );
    // The third refusal on waits; each longer than the one before.
    assert!(waits[2] >= Duration::from_millis(500), "{waits:?}");
    assert!(waits[3] >= Duration::from_millis(1000), "{waits:?}");
    // A real recipient in a new session is answered at once.
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("MAIL FROM:<bob@ext.test>").await.starts_with("250"));
    let started = Instant::now();
    assert!(
        c.cmd(&format!("RCPT TO:<{alias}>"))
            .await
            .starts_with("250")
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn messages_per_alias_and_replies_per_user_are_limited() {
    let (server, alias) = server(&[
        ("limits.messages_per_alias_per_minute", "3"),
        ("limits.replies_per_user_per_hour", "2"),
        ("smtp.trusted_networks", "127.0.0.3/32"),
    ])
    .await;
    let other = server
        .add_alias("me@real.test", Some("other@alias.test"), &[])
        .await;
    for n in 0..3 {
        let r = client::send(
            server.smtp(),
            "bob@ext.test",
            &[&alias],
            &message("bob@ext.test", &alias, &format!("m{n}"), "x"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("MAIL FROM:<bob@ext.test>").await.starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{alias}>")).await;
    assert!(r.starts_with("450 4.7.1"), "{r}");
    // Another alias of the same owner is not held back, nor is a trusted client.
    assert!(
        c.cmd(&format!("RCPT TO:<{other}>"))
            .await
            .starts_with("250")
    );
    let mut trusted = SmtpClient::connect_from(server.smtp(), ip("127.0.0.3")).await;
    assert!(trusted.cmd("EHLO lb.test").await.starts_with("250"));
    assert!(
        trusted
            .cmd("MAIL FROM:<bob@ext.test>")
            .await
            .starts_with("250")
    );
    assert!(
        trusted
            .cmd(&format!("RCPT TO:<{alias}>"))
            .await
            .starts_with("250")
    );

    // Replies: the owner writes through reverse aliases at most twice an hour here.
    let got = server.sink.wait_for(3, postern_tests::harness::WAIT).await;
    let reverse = crate::reverse_alias_of(&got[0].header("From").expect("From"));
    for n in 0..2 {
        let r = client::send(
            server.smtp(),
            "me@real.test",
            &[&reverse],
            &message("me@real.test", &reverse, &format!("re {n}"), "x"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    let r = client::send(
        server.smtp(),
        "me@real.test",
        &[&reverse],
        &message("me@real.test", &reverse, "re 3", "x"),
    )
    .await;
    assert!(r.contains("450 4.7.1"), "{r}");
}

#[tokio::test]
async fn new_contacts_per_user_per_hour_are_limited() {
    let server = TestServer::start_with(&[("limits.contacts_per_user_per_hour", "2")]).await;
    let key = server.add_user("me@real.test").await;
    server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    let auth = [
        ("Authentication", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http(
        server.http(),
        "GET",
        "/api/v2/aliases?page_id=0",
        &auth,
        None,
    )
    .await;
    let id = r.json["aliases"][0]["id"].as_i64().expect("id");
    for n in 0..3 {
        let body = format!(r#"{{"contact": "friend{n}@ext.test"}}"#);
        let r = http(
            server.http(),
            "POST",
            &format!("/api/aliases/{id}/contacts"),
            &auth,
            Some(&body),
        )
        .await;
        if n < 2 {
            assert_eq!(r.status, 201, "{}", r.body);
        } else {
            assert_eq!(r.status, 429, "{}", r.body);
        }
    }
}
