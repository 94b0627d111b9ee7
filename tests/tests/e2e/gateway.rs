use postern_tests::client::{self, SmtpClient};
use postern_tests::harness::TestServer;

use crate::{message, server_with_alias};

#[tokio::test]
async fn recipients_are_resolved_at_rcpt_and_relaying_is_refused() {
    let (server, alias) = server_with_alias().await;
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(
        c.greeting.starts_with("220 mx.alias.test"),
        "{}",
        c.greeting
    );
    assert!(c.cmd("MAIL FROM:<bob@ext.test>").await.starts_with("250"));
    let cases = [
        (alias.as_str(), "250 2.1.5"),
        ("SHOP@Alias.Test", "250 2.1.5"),
        ("nobody@alias.test", "550 5.1.1"),
        ("someone@reply.test", "550 5.1.1"),
        ("b.d1.aaaaaaaaaaaaaaaa@reply.test", "550 5.1.1"),
        ("victim@elsewhere.test", "550 5.7.1"),
        ("victim%elsewhere.test@alias.test", "550 5.7.1"),
        ("elsewhere.test!victim@alias.test", "550 5.7.1"),
        ("\"victim@elsewhere.test\"@alias.test", "550 5.7.1"),
        ("victim@elsewhere.test@alias.test", "5"),
    ];
    for (rcpt, expected) in cases {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(
            r.starts_with(expected),
            "RCPT {rcpt}: expected {expected}, got {r}"
        );
    }
    // A source route names the final address; the domain is still checked.
    let r = c.cmd("RCPT TO:<@alias.test:victim@elsewhere.test>").await;
    assert!(r.starts_with("550 5.7.1"), "source route: {r}");
    let r = c.cmd("RCPT TO:<@relay.test:shop@alias.test>").await;
    assert!(r.starts_with("250"), "source route to our alias: {r}");
}

#[tokio::test]
async fn oversize_messages_get_552_and_nothing_is_queued() {
    let server = TestServer::start_with(&[("smtp.max_message_size", "2000")]).await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("EHLO x.test").await.contains("SIZE 2000"));
    let r = c.cmd("MAIL FROM:<bob@ext.test> SIZE=5000").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    let big = message("bob@ext.test", &alias, "big", &"x".repeat(3000));
    let r = c.send_mail("bob@ext.test", &[&alias], &big).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session survives and a normal message still goes through.
    let small = message("bob@ext.test", &alias, "small", "ok");
    let r = c.send_mail("bob@ext.test", &[&alias], &small).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(postern_tests::harness::deliveries(&server).await.len(), 1);
}

#[tokio::test]
async fn smuggled_end_of_data_does_not_split_the_message() {
    let (server, alias) = server_with_alias().await;
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("MAIL FROM:<bob@ext.test>").await.starts_with("250"));
    assert!(
        c.cmd(&format!("RCPT TO:<{alias}>"))
            .await
            .starts_with("250")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    let payload = format!(
        "From: bob@ext.test\r\nTo: {alias}\r\nSubject: smuggle\r\n\r\nline\n.\r\nMAIL FROM:<evil@ext.test>\r\nRCPT TO:<{alias}>\r\nDATA\r\nFrom: evil@ext.test\r\n\r\nsmuggled\r\n.\r\n"
    );
    c.send_raw(payload.as_bytes()).await;
    let r = c.reply().await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, postern_tests::harness::WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].text().contains("smuggled"),
        "the smuggled part stays inside the one message"
    );
    // Nothing else arrives: the next reply on the session is for our NOOP, not a smuggled command.
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert_eq!(postern_tests::harness::deliveries(&server).await.len(), 1);
}

#[tokio::test]
async fn a_real_client_library_can_send_through_the_gateway() {
    let (server, alias) = server_with_alias().await;
    // The pipelined form of a transaction, as many MTAs send it.
    let mut c = SmtpClient::ready(server.smtp()).await;
    let raw = message("bob@ext.test", &alias, "pipelined", "body");
    c.send_raw(format!("MAIL FROM:<bob@ext.test>\r\nRCPT TO:<{alias}>\r\nRCPT TO:<nobody@alias.test>\r\nDATA\r\n").as_bytes()).await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert!(c.reply().await.starts_with("354"));
    let mut data = raw.clone();
    data.extend_from_slice(b".\r\n");
    c.send_raw(&data).await;
    assert!(c.reply().await.starts_with("250"));
    server.sink.wait_for(1, postern_tests::harness::WAIT).await;
    let _ = client::send; // the helper used by the other tests
}

#[tokio::test]
async fn postmaster_reaches_the_configured_admin() {
    let server = TestServer::start_with(&[("mail.postmaster", "admin@ops.test")]).await;
    for rcpt in ["postmaster@alias.test", "abuse@reply.test"] {
        let raw =
            format!("From: someone@ext.test\r\nTo: {rcpt}\r\nSubject: report\r\n\r\nhello\r\n");
        let r = client::send(server.smtp(), "someone@ext.test", &[rcpt], raw.as_bytes()).await;
        assert!(r.starts_with("250"), "{rcpt}: {r}");
    }
    let mut c = SmtpClient::ready(server.smtp()).await;
    assert!(
        c.cmd("MAIL FROM:<someone@ext.test>")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<Postmaster>").await;
    assert!(r.starts_with("250"), "bare postmaster: {r}");
    let got = server.sink.wait_for(2, postern_tests::harness::WAIT).await;
    assert!(got.iter().all(|m| m.rcpts == vec!["admin@ops.test"]));
    let mut marked: Vec<String> = got
        .iter()
        .filter_map(|m| m.header("X-Postern-Postmaster"))
        .collect();
    marked.sort();
    assert_eq!(marked, vec!["abuse@reply.test", "postmaster@alias.test"]);

    // Without a postmaster configured, the address is unknown like any other.
    let (plain, _) = server_with_alias().await;
    let mut c = SmtpClient::ready(plain.smtp()).await;
    assert!(
        c.cmd("MAIL FROM:<someone@ext.test>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<postmaster@alias.test>")
            .await
            .starts_with("550 5.1.1")
    );
}

#[tokio::test]
async fn a_sender_on_our_own_domain_still_gets_a_reverse_alias() {
    let (server, alias) = server_with_alias().await;
    server.add_user("b@real2.test").await;
    let other = server
        .add_alias("b@real2.test", Some("b-alias@alias.test"), &[])
        .await;
    let raw = crate::message(&other, &alias, "alias to alias", "hi");
    let r = client::send(server.smtp(), &other, &[&alias], &raw).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, postern_tests::harness::WAIT).await;
    let from = got[0].header("From").expect("From");
    let reverse = crate::reverse_alias_of(&from);
    assert_ne!(
        reverse, other,
        "the owner must answer through a reverse alias: {from}"
    );
    assert!(reverse.ends_with("@reply.test"));
}
