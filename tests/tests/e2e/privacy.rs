//! Nothing reveals the real mailbox, and what an MTA would accept gets through: every header a
//! client may write to, the reply scrub over every encoding, the repairs, the contact bound.

use postern_tests::client::{self, SmtpClient};
use postern_tests::harness::{TestServer, WAIT};
use postern_tests::sink::Received;

use crate::{reverse_alias_of, server_with_alias};

/// Every address-like token of a header value, lowercased.
fn addresses_in(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || "<>,;\"'()".contains(c))
        .map(|t| t.trim_start_matches("mailto:"))
        .map(|t| t.split('?').next().unwrap_or_default().to_lowercase())
        .filter(|t| t.contains('@'))
        .collect()
}

#[tokio::test]
async fn every_header_a_client_writes_to_goes_through_a_reverse_alias() {
    let (server, alias) = server_with_alias().await;
    // Field, value; the owner's client may write to any address in these by itself.
    let table = [
        ("Reply-To", "Bob <bob@ext.test>"),
        ("Mail-Reply-To", "bob-personal@ext.test"),
        ("Mail-Followup-To", "list@lists.ext.test, bob@ext.test"),
        ("Disposition-Notification-To", "receipts@ext.test"),
        ("Return-Receipt-To", "<receipts@ext.test>"),
        ("X-Confirm-Reading-To", "reading@ext.test"),
        ("Errors-To", "errors@ext.test"),
        ("List-Post", "<mailto:list@lists.ext.test>"),
        (
            "List-Unsubscribe",
            "<mailto:unsub@lists.ext.test?subject=unsubscribe>, <https://lists.ext.test/u/42>",
        ),
        ("List-Help", "<mailto:help@lists.ext.test>"),
        ("List-Subscribe", "<mailto:sub%2Bme@lists.ext.test>"),
        ("List-Owner", "<mailto:owner@lists.ext.test>"),
    ];
    let mut raw = String::from("From: Bob <bob@ext.test>\r\n");
    raw.push_str(&format!("To: {alias}\r\nSubject: headers\r\n"));
    for (name, value) in table {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n");
    let r = client::send(server.smtp(), "bob@ext.test", &[&alias], raw.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let forward = &got[0];
    for (name, _) in table {
        let value = forward
            .header(name)
            .unwrap_or_else(|| panic!("{name} kept (through a reverse alias)"));
        let found = addresses_in(&value);
        assert!(!found.is_empty(), "{name}: {value}");
        for address in found {
            assert!(
                address.ends_with("@reply.test"),
                "{name} names {address} directly: {value}"
            );
        }
    }
    let unsubscribe = forward.header("List-Unsubscribe").expect("kept");
    assert!(
        unsubscribe.contains("<https://lists.ext.test/u/42>"),
        "{unsubscribe}"
    );
    assert!(
        unsubscribe.contains("?subject=unsubscribe>"),
        "{unsubscribe}"
    );
    assert_eq!(
        forward.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );

    // A read receipt the owner's client sends goes out from the alias to the real address.
    let receipt_to = reverse_alias_of(&forward.header("Disposition-Notification-To").expect("dnt"));
    let receipt = format!(
        "From: Me <me@real.test>\r\nTo: {receipt_to}\r\nSubject: Read: headers\r\n\
         Content-Type: multipart/report; report-type=disposition-notification; boundary=r\r\n\r\n\
         --r\r\nContent-Type: text/plain\r\n\r\nDisplayed.\r\n--r--\r\n"
    );
    let r = client::send(
        server.smtp(),
        "me@real.test",
        &[&receipt_to],
        receipt.as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(2, WAIT).await;
    assert_eq!(got[1].rcpts, vec!["receipts@ext.test"]);
    assert!(!got[1].text().to_lowercase().contains("me@real.test"));
}

/// Decoded text of every part, headers included, as a reader of the message would see it.
fn decoded(m: &Received) -> String {
    let parsed = mail_parser::MessageParser::new()
        .parse(&m.data)
        .expect("a message");
    let mut out = String::new();
    fn walk(message: &mail_parser::Message, out: &mut String) {
        for header in message.headers() {
            out.push_str(&format!("{}: {:?}\n", header.name(), header.value()));
        }
        for part in &message.parts {
            for header in part.headers() {
                out.push_str(&format!("{}: {:?}\n", header.name(), header.value()));
            }
            match &part.body {
                mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => {
                    out.push_str(t);
                    out.push('\n');
                }
                mail_parser::PartType::Message(inner) => walk(inner, out),
                mail_parser::PartType::Binary(b) | mail_parser::PartType::InlineBinary(b) => {
                    out.push_str(&String::from_utf8_lossy(b));
                }
                _ => {}
            }
        }
    }
    walk(&parsed, &mut out);
    out.push_str(&String::from_utf8_lossy(&m.data));
    out
}

/// Whether `address` appears on its own (not inside a longer address).
fn names(text: &str, address: &str) -> bool {
    let text = text.to_lowercase();
    let mut from = 0;
    while let Some(i) = text[from..].find(address) {
        let start = from + i;
        let end = start + address.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let inside = before.is_some_and(|c| c.is_alphanumeric() || "._+-".contains(c))
            || after.is_some_and(|c| c.is_alphanumeric() || c == '-');
        if !inside {
            return true;
        }
        from = end;
    }
    false
}

#[tokio::test]
async fn the_reply_scrub_sees_through_every_encoding() {
    let (server, alias) = server_with_alias().await;
    server.add_mailbox("me@real.test", "me@work.test").await;
    let r = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &crate::message("Bob <bob@ext.test>", &alias, "hello", "hi"),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let reverse = reverse_alias_of(&got[0].header("From").expect("From"));

    let b64 = |s: &str| {
        data_encoding::BASE64_MIME
            .encode(s.as_bytes())
            .trim_end()
            .to_string()
    };
    let reply = format!(
        "From: Me <me@real.test>\r\n\
         To: {reverse}\r\n\
         Subject: =?utf-8?b?{subject}?=\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
         \r\n\
         --outer\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
         \r\n\
         --alt\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {text}\r\n\
         --alt\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         <p>Write to <a href=3D\"mailto:me=40work.test\">me=40work.test</a>, not home@real.test.</p>\r\n\
         --alt--\r\n\
         \r\n\
         --outer\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Disposition: attachment\r\n\
         \r\n\
         Received: from laptop.real.test ([198.51.100.9]) by smtp.real.test\r\n\
         X-Originating-IP: [198.51.100.9]\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; d=real.test; s=s1; b=AAAA\r\n\
         From: Me <me@real.test>\r\n\
         To: Bob <bob@ext.test>\r\n\
         Subject: what I sent before\r\n\
         \r\n\
         Earlier, from ME@REAL.TEST.\r\n\
         --outer--\r\n",
        subject = b64("Re: from me@real.test"),
        text = b64("Thanks! My other address is me@work.test.\r\n-- \r\nMe <me@real.test>\r\n"),
    );
    let r = client::send(server.smtp(), "me@real.test", &[&reverse], reply.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(2, WAIT).await;
    let sent = &got[1];
    assert_eq!(sent.rcpts, vec!["bob@ext.test"]);
    let text = decoded(sent);
    for secret in [
        "me@real.test",
        "me@work.test",
        "198.51.100.9",
        "laptop.real.test",
    ] {
        assert!(
            !names(&text, secret),
            "{secret} reached the contact:\n{text}"
        );
    }
    assert!(
        text.contains("home@real.test"),
        "an address that merely contains the mailbox is left alone:\n{text}"
    );
    assert!(
        text.contains("My other address is shop@alias.test."),
        "{text}"
    );
    assert!(text.contains("Re: from shop@alias.test"), "{text}");
    // Both signatures still verify after the parts were re-encoded.
    let report = postern_tests::verifier::verify_dkim(&server, &sent.data, "alias.test")
        .await
        .unwrap_or_else(|report| panic!("DKIM verification failed:\n{report}"));
    assert!(report.contains("ed25519-sha256"), "{report}");
}

#[tokio::test]
async fn odd_but_valid_mail_is_accepted_and_repaired() {
    let (server, alias) = server_with_alias().await;
    let fixtures: [(&str, String); 3] = [
        (
            "no header section",
            "Just a line of text.\r\nAnd another.\r\n".to_string(),
        ),
        (
            "no blank line",
            format!(
                "From: Bob <bob@ext.test>\r\nTo: {alias}\r\nSubject: tight\r\nThe body starts here.\r\n"
            ),
        ),
        (
            "mbox separator",
            format!(
                "From bob@ext.test Sat Jan  2 10:00:00 2027\r\nFrom: Bob <bob@ext.test>\r\nTo: {alias}\r\nSubject: mbox\r\n\r\nbody\r\n"
            ),
        ),
    ];
    for (n, (label, raw)) in fixtures.iter().enumerate() {
        let r = client::send(server.smtp(), "bob@ext.test", &[&alias], raw.as_bytes()).await;
        assert!(r.starts_with("250"), "{label}: {r}");
        let got = server.sink.wait_for(n + 1, WAIT).await;
        let m = &got[n];
        assert!(m.header("Date").is_some(), "{label}");
        assert!(m.header("Message-ID").is_some(), "{label}");
        let from = m.header("From").expect("From");
        assert!(from.contains("@reply.test>"), "{label}: {from}");
        if n == 0 {
            assert!(from.contains("Unverified sender"), "{label}: {from}");
            assert!(m.text().contains("\r\n\r\nJust a line of text."), "{label}");
        } else {
            assert!(!from.contains("Unverified"), "{label}: {from}");
        }
        if n == 1 {
            assert!(
                m.text().contains("\r\n\r\nThe body starts here."),
                "{label}"
            );
        }
        if n == 2 {
            assert!(!m.text().contains("From bob@ext.test Sat"), "{label}");
        }
    }
    // An empty message is the one thing no MTA could pass on.
    let mut c = SmtpClient::ready(server.smtp()).await;
    let r = c.send_mail("bob@ext.test", &[&alias], b"").await;
    assert!(r.starts_with("554 5.6.0"), "{r}");
}

#[tokio::test]
async fn one_message_creates_a_bounded_number_of_contacts() {
    let server = TestServer::start_with(&[("limits.contacts_per_message", "20")]).await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    let cc: Vec<String> = (0..300).map(|n| format!("person{n}@ext.test")).collect();
    let raw = format!(
        "From: Bob <bob@ext.test>\r\nTo: {alias}\r\nCc: {}\r\nSubject: crowd\r\n\r\nhi all\r\n",
        cc.join(", ")
    );
    let r = client::send(server.smtp(), "bob@ext.test", &[&alias], raw.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let kept = addresses_in(&got[0].header("Cc").expect("Cc"));
    assert_eq!(kept.len(), 19, "sender + 19 Cc = the bound of 20");
    assert!(kept.iter().all(|a| a.ends_with("@reply.test")));
    let omitted = got[0].header("X-Postern-Omitted-Recipients").expect("told");
    assert!(omitted.starts_with("281 "), "{omitted}");
    let db = server.running().ctx.db();
    let contacts = {
        use sea_orm::{EntityTrait, PaginatorTrait};
        postern_entity::contact::Entity::find()
            .count(db)
            .await
            .expect("count")
    };
    assert_eq!(contacts, 20);
}

#[tokio::test]
async fn a_message_past_thirty_hops_is_a_loop() {
    let (server, alias) = server_with_alias().await;
    let with_hops = |n: usize| {
        let mut raw = String::new();
        for i in 0..n {
            raw.push_str(&format!(
                "Received: from hop{i}.ext.test by hop{}.ext.test\r\n",
                i + 1
            ));
        }
        raw.push_str(&format!(
            "From: bob@ext.test\r\nTo: {alias}\r\nSubject: hops {n}\r\n\r\nx\r\n"
        ));
        raw
    };
    let r = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        with_hops(30).as_bytes(),
    )
    .await;
    assert!(r.starts_with("554 5.4.6"), "{r}");
    let r = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        with_hops(29).as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text().matches("Received: ").count(), 30);
    assert_eq!(got[0].header("Subject").as_deref(), Some("hops 29"));
}
