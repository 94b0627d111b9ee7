use postern::cli::{Command, DomainCommand};
use postern_tests::client;
use postern_tests::harness::WAIT;

use crate::{message, reverse_alias_of, server_with_alias};

#[tokio::test]
async fn forward_rewrites_from_keeps_body_and_signs_twice() {
    let (server, alias) = server_with_alias().await;
    let body = "Hello from Bob.\r\n.leading dot line\r\nCaf\u{e9} cr\u{e8}me";
    let raw = message("\"Bob Smith\" <bob@ext.test>", &alias, "order 1", body);
    let reply = client::send(server.smtp(), "bob@ext.test", &[&alias], &raw).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");

    let got = server.sink.wait_for(1, WAIT).await;
    let m = &got[0];
    assert_eq!(m.rcpts, vec!["me@real.test"]);
    assert!(
        m.mail_from.starts_with("b.d") && m.mail_from.ends_with("@reply.test"),
        "VERP: {}",
        m.mail_from
    );
    let from = m.header("From").expect("From");
    assert!(
        from.starts_with("\"Bob Smith - bob at ext.test\" <"),
        "{from}"
    );
    let reverse = reverse_alias_of(&from);
    assert!(reverse.ends_with("@reply.test"), "{reverse}");
    assert_eq!(m.header("Subject").as_deref(), Some("order 1"));
    assert_eq!(
        m.header("Message-ID").as_deref(),
        Some("<orig-order-1@ext.test>")
    );
    assert_eq!(m.header("X-Postern-Alias").as_deref(), Some(alias.as_str()));
    assert_eq!(
        m.header("X-Postern-Envelope-From").as_deref(),
        Some("bob@ext.test")
    );
    assert!(
        m.header("X-Postern-Original-From")
            .expect("orig from")
            .contains("bob@ext.test")
    );
    // Our trace field on top of the upstream ones, which stay so hops can be counted.
    let text = m.text();
    assert_eq!(text.matches("\r\nReceived: ").count(), 2, "{text}");
    let ours = m.header("Received").expect("our Received");
    assert!(
        ours.contains("by mx.alias.test (Postern) with ESMTP"),
        "{ours}"
    );
    let text = m.text();
    assert!(
        !text.contains("d=ext.test"),
        "the sender's DKIM-Signature must be dropped"
    );
    assert_eq!(text.matches("DKIM-Signature:").count(), 2);
    // Body byte-identical (the client dot-stuffed, the sink unstuffed).
    let expected_body = format!("{body}\r\n");
    assert_eq!(m.body(), expected_body.as_bytes());

    // Both signatures verify against the published keys with an independent verifier.
    let dns = server
        .cli(Command::Domain(DomainCommand::Dns {
            domain: "reply.test".into(),
        }))
        .await
        .expect("dns");
    assert_eq!(
        dns.lines().filter(|l| l.contains("._domainkey.")).count(),
        2,
        "two DKIM records expected in:\n{dns}"
    );
    let report = postern_tests::verifier::verify_dkim(&server, &m.data, "reply.test")
        .await
        .unwrap_or_else(|report| panic!("DKIM verification failed:\n{report}"));
    assert!(
        report.contains("rsa-sha256") && report.contains("ed25519-sha256"),
        "{report}"
    );
}

#[tokio::test]
async fn forward_reaches_every_mailbox_once() {
    let (server, _) = server_with_alias().await;
    server.add_mailbox("me@real.test", "me@work.test").await;
    let alias = server
        .add_alias(
            "me@real.test",
            Some("multi@alias.test"),
            &["me@real.test", "me@work.test"],
        )
        .await;
    let raw = message("bob@ext.test", &alias, "hi both", "body");
    let reply = client::send(server.smtp(), "bob@ext.test", &[&alias], &raw).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(2, WAIT).await;
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["me@real.test", "me@work.test"]);
    // Separate deliveries: separate VERP addresses.
    assert_ne!(got[0].mail_from, got[1].mail_from);
    assert_eq!(got[0].header("From"), got[1].header("From"));
}

#[tokio::test]
async fn disabled_alias_is_accepted_but_not_delivered() {
    let (server, alias) = server_with_alias().await;
    server
        .cli(Command::Alias(postern::cli::AliasCommand::Disable {
            alias: alias.clone(),
        }))
        .await
        .expect("disable");
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "x", "y"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    // A second alias that is enabled proves the pipeline is live while the first stays silent.
    let other = server
        .add_alias("me@real.test", Some("open@alias.test"), &[])
        .await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&other],
        &message("bob@ext.test", &other, "z", "y"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("X-Postern-Alias").as_deref(),
        Some("open@alias.test")
    );
    let activities = postern_tests::harness::activities(&server, &alias).await;
    assert_eq!(activities, vec!["block"]);
}

#[tokio::test]
async fn mail_from_own_mailbox_to_the_alias_does_not_loop() {
    let (server, alias) = server_with_alias().await;
    let reply = client::send(
        server.smtp(),
        "me@real.test",
        &[&alias],
        &message("me@real.test", &alias, "loop", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let activities = postern_tests::harness::activities(&server, &alias).await;
    assert_eq!(activities, vec!["loop"]);
    assert!(server.sink.received().is_empty());
}

#[tokio::test]
async fn a_forward_without_message_id_gets_one() {
    let (server, alias) = server_with_alias().await;
    let raw = format!("From: bob@ext.test\r\nTo: {alias}\r\nSubject: no id\r\n\r\nbody\r\n");
    let reply = client::send(server.smtp(), "bob@ext.test", &[&alias], raw.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(1, WAIT).await;
    let id = got[0].header("Message-ID").expect("a Message-ID was added");
    assert!(id.starts_with('<') && id.ends_with("@reply.test>"), "{id}");
    assert!(got[0].header("Date").is_some(), "a Date was added");
}

/// One message of the signature corpus: bit `i` picks its optional parts, so the signed
/// header list, the folding and the body vary from one to the next.
fn corpus_message(i: usize, alias: &str) -> String {
    let bit = |n: usize| i >> n & 1 == 1;
    let mut m = String::new();
    for hop in 0..(i % 4) {
        m.push_str(&format!(
            "Received: from hop{hop}.ext.test by hop{}.ext.test\r\n",
            hop + 1
        ));
    }
    m.push_str("From: \"Bob Example\" <bob@ext.test>\r\n");
    let mut to = vec![alias.to_string()];
    to.extend((0..(i * 7 % 45)).map(|n| format!("Person {n} <p{n}@ext{}.test>", n % 3)));
    m.push_str(&format!("To: {}\r\n", to.join(",\r\n ")));
    if bit(0) {
        m.push_str("Cc: carol@ext.test, \"Dan D.\" <dan@ext.test>\r\n");
    }
    if bit(1) {
        m.push_str("Reply-To: replies@ext.test\r\n");
    }
    let subject = "word ".repeat(1 + i * 13 % 70);
    m.push_str(&format!("Subject: corpus {i}: {}\r\n", subject.trim_end()));
    if bit(2) {
        m.push_str("Subject: a repeated subject\r\n");
        m.push_str("X-Repeated: one\r\nX-Repeated: two\r\n");
    }
    m.push_str("Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n");
    m.push_str(&format!("Message-ID: <corpus-{i}@ext.test>\r\n"));
    if bit(3) {
        m.push_str(&format!(
            "In-Reply-To: <earlier-{i}@ext.test>\r\nReferences: <first@ext.test>\r\n <earlier-{i}@ext.test>\r\n"
        ));
    }
    if bit(4) {
        m.push_str("List-Id: Corpus <corpus.lists.ext.test>\r\n");
        m.push_str("List-Unsubscribe: <https://lists.ext.test/u>, <mailto:u@lists.ext.test>\r\n");
    }
    m.push_str("MIME-Version: 1.0\r\n");
    if bit(5) {
        m.push_str(
            "Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
             Grüße, 8-bit text.\r\n\
             --b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             PHA+R3LDvMOfZTwvcD4=\r\n--b--\r\n",
        );
    } else {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        for line in 0..(i % 9) {
            m.push_str(&format!("line {line}: {}\r\n", "é".repeat(line * 5)));
        }
        m.push_str("  trailing spaces  \r\n\r\n\r\n");
    }
    m
}

#[tokio::test]
async fn every_forward_of_a_varied_corpus_verifies_with_dkimpy() {
    let (server, alias) = server_with_alias().await;
    const N: usize = 48;
    for i in 0..N {
        let raw = corpus_message(i, &alias);
        let r = client::send(server.smtp(), "bob@ext.test", &[&alias], raw.as_bytes()).await;
        assert!(r.starts_with("250"), "message {i}: {r}");
    }
    let got = server.sink.wait_for(N, WAIT).await;
    assert_eq!(got.len(), N);
    let mut failures = Vec::new();
    for m in &got {
        if let Err(report) =
            postern_tests::verifier::verify_dkim(&server, &m.data, "reply.test").await
        {
            failures.push(format!(
                "{}:\n{report}",
                m.header("Subject").unwrap_or_default()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {N} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
