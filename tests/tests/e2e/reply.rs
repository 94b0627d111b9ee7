use postern_tests::client;
use postern_tests::harness::WAIT;

use crate::{message, reverse_alias_of, server_with_alias};

/// Bob writes to the alias; returns the reverse alias the owner sees for him.
async fn contact_from(
    server: &postern_tests::harness::TestServer,
    alias: &str,
    sender: &str,
    n: usize,
) -> String {
    let raw = message(
        &format!("\"{sender}\" <{sender}>"),
        alias,
        &format!("hello {n}"),
        "hi",
    );
    let reply = client::send(server.smtp(), sender, &[alias], &raw).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(n, WAIT).await;
    reverse_alias_of(&got[n - 1].header("From").expect("From"))
}

fn owner_reply(to: &str, cc: Option<&str>, in_reply_to: &str) -> Vec<u8> {
    let cc = cc.map(|c| format!("Cc: {c}\r\n")).unwrap_or_default();
    format!(
        "Received: from [198.51.100.9] (helo=laptop.real.test) by smtp.real.test\r\n\
         From: Me Myself <me@real.test>\r\n\
         Sender: me@real.test\r\n\
         Reply-To: me@real.test\r\n\
         To: {to}\r\n\
         {cc}\
         Subject: Re: hello\r\n\
         Date: Sun, 22 Nov 2026 11:00:00 +0000\r\n\
         Message-ID: <reply-1@real.test>\r\n\
         In-Reply-To: <{in_reply_to}>\r\n\
         References: <{in_reply_to}>\r\n\
         User-Agent: Thunderbird/128.0 (me@real.test)\r\n\
         X-Originating-IP: [198.51.100.9]\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Thanks Bob!\r\n\r\nOn Sunday, Me <ME@real.test> wrote:\r\n> hello\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn reply_goes_out_from_the_alias_and_never_shows_the_mailbox() {
    let (server, alias) = server_with_alias().await;
    let reverse = contact_from(&server, &alias, "bob@ext.test", 1).await;

    let raw = owner_reply(&reverse, None, "orig-hello-1@ext.test");
    let reply = client::send(server.smtp(), "me@real.test", &[&reverse], &raw).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(2, WAIT).await;
    let m = &got[1];
    assert_eq!(m.rcpts, vec!["bob@ext.test"]);
    assert!(
        m.mail_from.ends_with("@reply.test"),
        "VERP: {}",
        m.mail_from
    );
    assert_eq!(m.header("From").as_deref(), Some("<shop@alias.test>"));
    let to = m.header("To").expect("To");
    assert!(to.contains("bob@ext.test"), "{to}");
    assert!(
        m.header("Message-ID")
            .expect("Message-ID")
            .ends_with("@alias.test>")
    );
    assert_eq!(
        m.header("In-Reply-To").as_deref(),
        Some("<orig-hello-1@ext.test>")
    );
    // The owner's address, host and IP appear nowhere in what Bob receives.
    let raw = m.data.to_ascii_lowercase();
    for secret in ["me@real.test", "real.test", "198.51.100.9", "thunderbird"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} leaked:\n{}",
            m.text()
        );
    }
    assert_eq!(m.text().matches("DKIM-Signature:").count(), 2);
    assert!(m.text().contains("d=alias.test"));
}

#[tokio::test]
async fn reply_all_reaches_every_contact_and_threads_back() {
    let (server, alias) = server_with_alias().await;
    let bob = contact_from(&server, &alias, "bob@ext.test", 1).await;
    let carol = contact_from(&server, &alias, "carol@other.test", 2).await;

    let raw = owner_reply(
        &bob,
        Some(&format!("Carol <{carol}>")),
        "orig-hello-2@ext.test",
    );
    let reply = client::send(server.smtp(), "me@real.test", &[&bob, &carol], &raw).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(4, WAIT).await;
    let mut rcpts: Vec<String> = got[2..].iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["bob@ext.test", "carol@other.test"]);
    let out = &got[2];
    assert!(out.header("To").expect("To").contains("bob@ext.test"));
    assert!(out.header("Cc").expect("Cc").contains("carol@other.test"));
    let our_id = out.header("Message-ID").expect("id");

    // Bob answers the reply: the owner sees their own original Message-ID in In-Reply-To.
    let answer = format!(
        "From: bob@ext.test\r\nTo: shop@alias.test\r\nSubject: Re: Re: hello\r\n\
         Message-ID: <bob-2@ext.test>\r\nIn-Reply-To: {our_id}\r\nReferences: {our_id}\r\n\r\nok\r\n"
    );
    let reply = client::send(server.smtp(), "bob@ext.test", &[&alias], answer.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(5, WAIT).await;
    assert_eq!(
        got[4].header("In-Reply-To").as_deref(),
        Some("<reply-1@real.test>")
    );
}

#[tokio::test]
async fn reply_to_a_non_reverse_alias_sends_nothing_and_tells_the_owner() {
    let (server, alias) = server_with_alias().await;
    let bob = contact_from(&server, &alias, "bob@ext.test", 1).await;

    let raw = owner_reply(&bob, Some("dave@elsewhere.test"), "orig-hello-1@ext.test");
    let reply = client::send(server.smtp(), "me@real.test", &[&bob], &raw).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(2, WAIT).await;
    let notice = &got[1];
    assert_eq!(
        notice.rcpts,
        vec!["me@real.test"],
        "only the owner hears about it"
    );
    assert!(
        notice
            .header("Subject")
            .expect("subject")
            .contains("not sent")
    );
    assert!(server.sink.for_rcpt("bob@ext.test").is_empty());
    assert!(server.sink.for_rcpt("dave@elsewhere.test").is_empty());
}

/// The SMTP transcript of sending `raw` from `mail_from` to `rcpt`, replies only.
async fn transcript(
    server: &postern_tests::harness::TestServer,
    mail_from: &str,
    rcpt: &str,
    raw: &[u8],
) -> Vec<String> {
    let mut c = client::SmtpClient::ready(server.smtp()).await;
    let mut out = Vec::new();
    for line in [
        format!("MAIL FROM:<{mail_from}>"),
        format!("RCPT TO:<{rcpt}>"),
    ] {
        out.push(c.cmd(&line).await.chars().take(3).collect());
    }
    out.push(c.data(raw).await.chars().take(3).collect());
    out
}

#[tokio::test]
async fn forged_replies_reach_no_contact_and_look_like_genuine_ones() {
    let (server, alias) = server_with_alias().await;
    let bob = contact_from(&server, &alias, "bob@ext.test", 1).await;
    let genuine = transcript(
        &server,
        "me@real.test",
        &bob,
        &owner_reply(&bob, None, "x@ext.test"),
    )
    .await;
    server.sink.wait_for(2, WAIT).await;
    assert_eq!(
        server.sink.for_rcpt("bob@ext.test").len(),
        1,
        "the genuine reply went out"
    );

    // A stranger; and someone sending as one of the alias's mailboxes from a host that
    // domain's SPF does not allow, with no DKIM signature.
    server.dns.txt("forged.test", "v=spf1 -all");
    server.add_mailbox("me@real.test", "me@forged.test").await;
    let stranger = transcript(
        &server,
        "mallory@evil.test",
        &bob,
        &owner_reply(&bob, None, "x@ext.test"),
    )
    .await;
    let spoofed = transcript(
        &server,
        "me@forged.test",
        &bob,
        &owner_reply(&bob, None, "x@ext.test"),
    )
    .await;
    assert_eq!(
        stranger, genuine,
        "a stranger learns nothing from the transcript"
    );
    assert_eq!(
        spoofed, genuine,
        "a forger learns nothing from the transcript"
    );
    // Neither reached Bob; the owner heard of both, at a mailbox of the alias.
    let mails = server.sink.wait_for(4, WAIT).await;
    assert_eq!(server.sink.for_rcpt("bob@ext.test").len(), 1);
    let alerts: Vec<_> = mails
        .iter()
        .filter(|m| {
            m.header("Subject").as_deref() == Some("Someone tried to send through your alias")
        })
        .collect();
    assert_eq!(alerts.len(), 2, "one alert per attempt");
    assert!(
        alerts
            .iter()
            .all(|m| m.rcpts == vec!["me@real.test".to_string()])
    );
    let activities = postern_tests::harness::activities(&server, &alias).await;
    assert_eq!(
        activities.iter().filter(|a| *a == "refused").count(),
        2,
        "{activities:?}"
    );
}
