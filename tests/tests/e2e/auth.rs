//! Sender authentication at the MX: SPF, DKIM and DMARC checked against DNS answers seeded on
//! loopback, written into our Authentication-Results, and acted on.

use postern::cli::Command;
use postern_tests::client::{self, SmtpClient};
use postern_tests::harness::{TestServer, WAIT};

const ALIAS: &str = "shop@alias.test";

async fn server() -> TestServer {
    // signer.test is one of ours only so that the server has keys for it: tests sign
    // "outside" mail with them and publish them in the test DNS.
    let server = TestServer::start_with(&[("mail.alias_domains", "alias.test,signer.test")]).await;
    server.add_user("me@real.test").await;
    server.add_alias("me@real.test", Some(ALIAS), &[]).await;
    server
}

fn mail(from: &str, subject: &str) -> String {
    format!(
        "From: Sender <{from}>\r\nTo: {ALIAS}\r\nSubject: {subject}\r\n\
         Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@ext.test>\r\n\r\nbody\r\n"
    )
}

/// Sends `raw` from `mail_from`; returns the final reply.
async fn send(server: &TestServer, mail_from: &str, raw: &[u8]) -> String {
    client::send(server.smtp(), mail_from, &[ALIAS], raw).await
}

/// Our Authentication-Results in the n-th forward, unfolded.
async fn verdict(server: &TestServer, n: usize) -> String {
    let got = server.sink.wait_for(n, WAIT).await;
    let header = got[n - 1]
        .header("Authentication-Results")
        .expect("our A-R");
    assert!(header.starts_with("mx.alias.test;"), "{header}");
    header.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn spf_pass_fail_softfail_none_and_temperror() {
    let server = server().await;
    let dns = &server.dns;
    dns.txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
    dns.txt("fail.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt("soft.test", "v=spf1 ~all");
    dns.fail("temp.test");
    let cases = [
        ("a@pass.test", "spf=pass"),
        ("a@fail.test", "spf=fail"),
        ("a@soft.test", "spf=softfail"),
        ("a@none.test", "spf=none"),
        ("a@temp.test", "spf=temperror"),
    ];
    for (n, (from, expected)) in cases.iter().enumerate() {
        let r = send(&server, from, mail(from, &format!("spf{n}")).as_bytes()).await;
        assert!(r.starts_with("250"), "{from}: {r}");
        let v = verdict(&server, n + 1).await;
        assert!(v.contains(expected), "{from}: {v}");
        assert!(v.contains(&format!("smtp.mailfrom={from}")), "{v}");
    }
}

/// `message` DKIM-signed (RSA and Ed25519) for signer.test with the server's keys, and
/// those keys published in the test DNS.
async fn signed(server: &TestServer, message: &str) -> Vec<u8> {
    server.publish_dkim("signer.test").await;
    server
        .running()
        .ctx
        .signers()
        .sign("signer.test", message.as_bytes().to_vec())
        .expect("sign")
}

#[tokio::test]
async fn dkim_pass_fail_and_none() {
    let server = server().await;
    let good = signed(&server, &mail("news@signer.test", "dkim-good")).await;
    let r = send(&server, "bounce@other.test", &good).await;
    assert!(r.starts_with("250"), "{r}");
    let v = verdict(&server, 1).await;
    assert_eq!(v.matches("dkim=pass").count(), 2, "both signatures: {v}");

    // Body tampered after signing.
    let tampered = String::from_utf8(signed(&server, &mail("news@signer.test", "dkim-body")).await)
        .expect("text")
        .replace("\r\n\r\nbody\r\n", "\r\n\r\nBODY changed\r\n");
    send(&server, "bounce@other.test", tampered.as_bytes()).await;
    let v = verdict(&server, 2).await;
    assert!(
        (v.contains("dkim=fail") || v.contains("dkim=neutral")) && !v.contains("dkim=pass"),
        "{v}"
    );

    // A signed header changed.
    let header = String::from_utf8(signed(&server, &mail("news@signer.test", "dkim-head")).await)
        .expect("text")
        .replace("Subject: dkim-head", "Subject: dkim-head changed");
    send(&server, "bounce@other.test", header.as_bytes()).await;
    let v = verdict(&server, 3).await;
    assert!(
        (v.contains("dkim=fail") || v.contains("dkim=neutral")) && !v.contains("dkim=pass"),
        "{v}"
    );

    // Unsigned.
    send(
        &server,
        "bounce@other.test",
        mail("news@signer.test", "dkim-none").as_bytes(),
    )
    .await;
    let v = verdict(&server, 4).await;
    assert!(v.contains("dkim=none"), "{v}");
}

#[tokio::test]
async fn dmarc_reject_quarantine_and_pass() {
    let server = server().await;
    let dns = &server.dns;
    for domain in ["reject.test", "quarantine.test"] {
        dns.txt(domain, "v=spf1 ip4:192.0.2.1 -all");
    }
    dns.txt("_dmarc.reject.test", "v=DMARC1; p=reject");
    dns.txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine");
    dns.txt("_dmarc.aligned.test", "v=DMARC1; p=reject; aspf=s");
    dns.txt("pass.aligned.test", "v=spf1 ip4:127.0.0.0/8 -all");

    // p=reject and failing: refused at DATA, nothing forwarded.
    let r = send(
        &server,
        "x@reject.test",
        mail("ceo@reject.test", "forged").as_bytes(),
    )
    .await;
    assert!(r.starts_with("550 5.7.1"), "{r}");

    // p=quarantine and failing: delivered, marked.
    let r = send(
        &server,
        "x@quarantine.test",
        mail("ceo@quarantine.test", "invoice").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].header("Subject").as_deref(),
        Some("[Unverified sender] invoice")
    );
    assert!(got[0].header("X-Postern-Warning").is_some());
    assert!(
        got[0]
            .text()
            .contains("\r\n\r\nWARNING: this message failed its sender's DMARC check"),
        "the banner is in the body: {}",
        got[0].text()
    );
    let v = verdict(&server, 1).await;
    assert!(
        v.contains("dmarc=fail") && v.contains("policy.dmarc=quarantine"),
        "{v}"
    );

    // Strict SPF alignment: a subdomain's pass does not align; the exact domain's does.
    dns.txt("aligned.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let r = send(
        &server,
        "x@aligned.test",
        mail("ceo@aligned.test", "fine").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let v = verdict(&server, 2).await;
    assert!(v.contains("dmarc=pass"), "{v}");
    let r = send(
        &server,
        "x@pass.aligned.test",
        mail("ceo@aligned.test", "strict").as_bytes(),
    )
    .await;
    assert!(r.starts_with("550 5.7.1"), "strict alignment: {r}");
    assert_eq!(server.sink.received().len(), 2);
}

/// DMARC exempts a `From:` that names several domains (RFC 7489 6.6.1), so a forger could add
/// a second author, or a second `From:` field, from a domain of their own and slip a
/// `p=reject` domain past the check. Each domain is checked, and the strictest failure counts.
#[tokio::test]
async fn a_second_author_from_another_domain_does_not_exempt_a_forgery_from_dmarc() {
    let server = server().await;
    let dns = &server.dns;
    dns.txt("reject.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt("_dmarc.reject.test", "v=DMARC1; p=reject");
    dns.txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine");
    dns.txt("quarantine.test", "v=spf1 ip4:192.0.2.1 -all");
    // The forger's own domain passes SPF and DMARC on its own.
    dns.txt("forger.test", "v=spf1 ip4:127.0.0.0/8 -all");
    dns.txt("_dmarc.forger.test", "v=DMARC1; p=reject");

    let body = "To: shop@alias.test\r\nSubject: s\r\nMessage-ID: <m@forger.test>\r\n\r\nbody\r\n";
    for from in [
        "From: CEO <ceo@reject.test>, me@forger.test\r\n".to_string(),
        "From: me@forger.test, CEO <ceo@reject.test>\r\n".to_string(),
        "From: CEO <ceo@reject.test>\r\nFrom: me@forger.test\r\n".to_string(),
        "From: me@forger.test\r\nFrom: CEO <ceo@REJECT.test>\r\n".to_string(),
        "From: ceo@quarantine.test, boss@reject.test, me@forger.test\r\n".to_string(),
    ] {
        let raw = format!("{from}{body}");
        let r = send(&server, "me@forger.test", raw.as_bytes()).await;
        assert!(r.starts_with("550 5.7.1"), "{from:?}: {r}");
    }
    // More author domains than are checked: refused as if the unchecked one said p=reject.
    let many: Vec<String> = (0..12).map(|i| format!("a{i}@d{i}.forger.test")).collect();
    let raw = format!("From: {}\r\n{body}", many.join(", "));
    let r = send(&server, "me@forger.test", raw.as_bytes()).await;
    assert!(r.starts_with("550 5.7.1"), "twelve domains: {r}");
    assert!(server.sink.received().is_empty());

    // Several authors of one domain are one DMARC check, as before; and a second domain
    // that passes does not spoil a first that passes.
    dns.txt("_dmarc.ok.test", "v=DMARC1; p=reject");
    dns.txt("ok.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let raw = format!("From: a@forger.test, b@forger.test\r\n{body}");
    let r = send(&server, "me@forger.test", raw.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    assert!(
        verdict(&server, 1)
            .await
            .contains("dmarc=pass header.from=forger.test")
    );
    // ok.test's SPF passes for the client, but the envelope is forger.test's: ok.test is not
    // aligned, so its author fails DMARC, and p=reject refuses the whole message.
    let raw = format!("From: a@forger.test, b@ok.test\r\n{body}");
    let r = send(&server, "me@forger.test", raw.as_bytes()).await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    assert_eq!(server.sink.received().len(), 1);
}
#[tokio::test]
async fn a_dns_outage_is_a_temporary_failure_never_a_pass() {
    let server = server().await;
    server.dns.fail("_dmarc.down.test");
    let r = send(
        &server,
        "x@down.test",
        mail("ceo@down.test", "outage").as_bytes(),
    )
    .await;
    assert!(r.starts_with("451 4.4.3"), "{r}");
    assert!(server.sink.received().is_empty());
    assert!(postern_tests::harness::deliveries(&server).await.is_empty());
}

#[tokio::test]
async fn results_claiming_our_name_are_removed_others_kept() {
    let server = server().await;
    server.dns.txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let raw = format!(
        "Authentication-Results: mx.alias.test; spf=pass; dkim=pass; dmarc=pass\r\n\
         ARC-Authentication-Results: i=1; mx.alias.test; dmarc=pass\r\n\
         ARC-Seal: i=1; a=rsa-sha256; cv=none; d=alias.test; s=x; b=AAAA\r\n\
         ARC-Message-Signature: i=1; a=rsa-sha256; d=alias.test; s=x; h=from; bh=AAAA; b=AAAA\r\n\
         Authentication-Results: mx.upstream.test; spf=pass smtp.mailfrom=pass.test\r\n\
         {}",
        mail("a@pass.test", "claims")
    );
    let r = send(&server, "a@pass.test", raw.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert_eq!(
        text.matches("Authentication-Results: mx.alias.test;")
            .count(),
        1,
        "only ours:\n{text}"
    );
    assert!(
        !text.contains("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=alias.test"),
        "{text}"
    );
    assert!(
        text.contains("Authentication-Results: mx.upstream.test;"),
        "{text}"
    );
    let v = verdict(&server, 1).await;
    assert!(v.contains("spf=pass") && !v.contains("dkim=pass"), "{v}");
}

#[tokio::test]
async fn rcpt_to_a_reverse_alias_tells_a_stranger_nothing() {
    let server = server().await;
    server.dns.txt("ext.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let r = send(
        &server,
        "bob@ext.test",
        mail("bob@ext.test", "hello").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let reverse = crate::reverse_alias_of(&got[0].header("From").expect("From"));
    for sender in ["me@real.test", "mallory@evil.test", "guess@real.test"] {
        let mut c = SmtpClient::ready(server.smtp()).await;
        assert!(
            c.cmd(&format!("MAIL FROM:<{sender}>"))
                .await
                .starts_with("250")
        );
        let r = c.cmd(&format!("RCPT TO:<{reverse}>")).await;
        assert!(r.starts_with("250 2.1.5"), "{sender}: {r}");
    }
}

#[tokio::test]
async fn forwards_are_arc_sealed_and_dkimpy_validates_the_chain() {
    let server = server().await;
    server.dns.txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let r = send(
        &server,
        "a@pass.test",
        mail("a@pass.test", "sealed").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    for field in [
        "ARC-Seal: i=1;",
        "ARC-Message-Signature: i=1;",
        "ARC-Authentication-Results: i=1;",
    ] {
        assert!(text.contains(field), "{field} in:\n{text}");
    }
    assert!(text.contains("cv=none"), "{text}");
    // The set's results are our verdict, word for word, not a second opinion.
    let words = |name: &str| {
        let value = got[0]
            .header(name)
            .unwrap_or_else(|| panic!("{name} in:\n{text}"));
        value.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let ours = words("Authentication-Results");
    assert!(ours.starts_with("mx.alias.test; spf=pass"), "{ours}");
    assert_eq!(words("ARC-Authentication-Results"), format!("i=1; {ours}"));
    let report = postern_tests::verifier::verify_dkim_and_arc(&server, &got[0].data, "reply.test")
        .await
        .unwrap_or_else(|report| panic!("ARC verification failed:\n{report}"));
    assert!(report.contains("cv=pass"), "{report}");
}

#[tokio::test]
async fn with_arc_sealing_off_forwards_keep_their_dkim_signatures_and_no_seal_of_ours() {
    let server = TestServer::start_with(&[("dkim.arc_seal", "false")]).await;
    server.add_user("me@real.test").await;
    server.add_alias("me@real.test", Some(ALIAS), &[]).await;
    server.dns.txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let r = send(
        &server,
        "a@pass.test",
        mail("a@pass.test", "unsealed").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert!(!text.contains("ARC-"), "no ARC set in:\n{text}");
    assert!(
        got[0]
            .header("Authentication-Results")
            .is_some_and(|v| v.starts_with("mx.alias.test; spf=pass")),
        "our verdict is still written:\n{text}"
    );
    postern_tests::verifier::verify_dkim(&server, &got[0].data, "reply.test")
        .await
        .unwrap_or_else(|report| panic!("DKIM verification failed:\n{report}"));
}

#[tokio::test]
async fn a_received_chain_is_extended_one_instance_up() {
    let server = server().await;
    // An upstream forwarder (signer.test, keys published) sealed the message first.
    let upstream = signed(&server, &mail("news@signer.test", "chained")).await;
    let ctx = &server.running().ctx;
    let sealed = {
        let results = mail_auth::AuthenticationResults::new("mx.signer.test");
        ctx.signers()
            .seal(
                "signer.test",
                upstream,
                &results,
                &mail_auth::ArcOutput::default(),
            )
            .expect("upstream seal")
    };
    let r = send(&server, "bounce@signer.test", &sealed).await;
    assert!(r.starts_with("250"), "{r}");
    let v = verdict(&server, 1).await;
    assert!(v.contains("arc=pass"), "{v}");
    let got = server.sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert!(
        text.contains("ARC-Seal: i=2;") && text.contains("cv=pass"),
        "{text}"
    );
    assert!(text.contains("ARC-Seal: i=1;"), "the upstream set is kept");
    let report = postern_tests::verifier::verify_dkim_and_arc(&server, &got[0].data, "reply.test")
        .await
        .unwrap_or_else(|report| panic!("ARC verification failed:\n{report}"));
    assert!(report.contains("cv=pass"), "{report}");

    // The same upstream set with its seal broken: recorded as a failed chain.
    let broken = String::from_utf8(sealed_again(&server).await)
        .expect("text")
        .replacen("mx.signer.test", "mx.signer.tesx", 1);
    assert!(
        broken.contains("mx.signer.tesx"),
        "the sealed results were changed"
    );
    let r = send(&server, "bounce@signer.test", broken.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let v = verdict(&server, 2).await;
    assert!(v.contains("arc=fail"), "{v}");
    // Forwarded with the chain extended and marked failed, for the receiver to judge.
    let got = server.sink.wait_for(2, WAIT).await;
    let text = got[1].text();
    assert!(text.contains("Subject: broken"), "{text}");
    let seal = text
        .split("\r\n")
        .find(|l| l.starts_with("ARC-Seal: i=2;"))
        .unwrap_or_else(|| panic!("a second set in:\n{text}"));
    assert!(seal.contains("cv=fail"), "{seal}");
}

/// A chain we cannot extend goes on as it came, unsealed (our DKIM signatures still vouch for
/// the forward): a malformed one would get a second `i=1` set beside its own, a full one (50
/// sets, RFC 8617's limit) an `i=51` that no receiver accepts.
#[tokio::test]
async fn a_chain_that_cannot_be_extended_is_forwarded_unsealed() {
    let server = server().await;
    let ctx = &server.running().ctx;
    let ours = |text: &str| text.matches("ARC-Seal:").count();

    // A lone ARC-Seal with no signature or results beside it.
    let lone = format!(
        "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=elsewhere.test; s=x; t=1; b=AAAA\r\n{}",
        mail("news@ext.test", "lone")
    );
    let r = send(&server, "news@ext.test", lone.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let text = got[0].text();
    assert_eq!(ours(&text), 1, "only the seal it came with:\n{text}");
    assert!(text.contains("DKIM-Signature:"), "{text}");

    // Fifty valid sets, each sealed by signer.test over the last.
    let mut message = signed(&server, &mail("news@signer.test", "fifty")).await;
    for _ in 0..50 {
        let parsed = mail_auth::AuthenticatedMessage::parse(&message).expect("parse");
        let chain = ctx.authenticator().verify_arc(&parsed).await;
        let results = mail_auth::AuthenticationResults::new("mx.signer.test");
        let next = ctx
            .signers()
            .seal("signer.test", message.clone(), &results, &chain)
            .expect("upstream seal");
        message = next;
    }
    let text = String::from_utf8_lossy(&message).into_owned();
    assert!(text.contains("ARC-Seal: i=50;"), "the chain is full");
    let r = send(&server, "bounce@signer.test", &message).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(2, WAIT).await;
    let text = got[1].text();
    assert_eq!(ours(&text), 50, "no fifty-first set");
    assert!(!text.contains("i=51"), "{text}");
    assert!(text.contains("Subject: fifty"), "{text}");
}

async fn sealed_again(server: &TestServer) -> Vec<u8> {
    let upstream = signed(server, &mail("news@signer.test", "broken")).await;
    let results = mail_auth::AuthenticationResults::new("mx.signer.test");
    server
        .running()
        .ctx
        .signers()
        .seal(
            "signer.test",
            upstream,
            &results,
            &mail_auth::ArcOutput::default(),
        )
        .expect("upstream seal")
}

#[tokio::test]
async fn blocked_senders_hear_250_or_550_as_the_owner_chose() {
    let server = server().await;
    let key = server.add_user("other@real.test").await;
    server
        .add_alias("other@real.test", Some("second@alias.test"), &[])
        .await;
    server.dns.txt("ext.test", "v=spf1 ip4:127.0.0.0/8 -all");
    // Disable both aliases: each owner's choice decides what the sender hears.
    for alias in [ALIAS, "second@alias.test"] {
        server
            .cli(Command::Alias(postern::cli::AliasCommand::Disable {
                alias: alias.into(),
            }))
            .await
            .expect("disable");
    }
    let r = send(
        &server,
        "bob@ext.test",
        mail("bob@ext.test", "silent").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "return_2xx is the default: {r}");
    let r = postern_tests::http::http(
        server.http(),
        "PATCH",
        "/api/setting",
        &[
            ("Authentication", &key),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"block_behaviour": "return_5xx"}"#),
    )
    .await;
    assert_eq!(r.json["block_behaviour"], "return_5xx", "{}", r.body);
    let only_second = client::send(
        server.smtp(),
        "bob@ext.test",
        &["second@alias.test"],
        mail("bob@ext.test", "loud").as_bytes(),
    )
    .await;
    assert!(only_second.starts_with("550 5.1.1"), "{only_second}");
    // One refusing recipient among accepting ones: 250 for the transaction.
    let both = client::send(
        server.smtp(),
        "bob@ext.test",
        &[ALIAS, "second@alias.test"],
        mail("bob@ext.test", "mixed").as_bytes(),
    )
    .await;
    assert!(both.starts_with("250"), "{both}");
    let blocked = postern_tests::harness::activities(&server, "second@alias.test").await;
    assert_eq!(
        blocked,
        vec!["block", "block"],
        "both attempts are recorded"
    );
    assert!(server.sink.received().is_empty());
}

#[tokio::test]
async fn mail_from_our_own_reverse_alias_or_another_alias_of_the_owner_is_a_loop() {
    let server = server().await;
    server
        .add_alias("me@real.test", Some("other@alias.test"), &[])
        .await;
    server.dns.txt("ext.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let r = send(
        &server,
        "bob@ext.test",
        mail("bob@ext.test", "first").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let reverse = crate::reverse_alias_of(&got[0].header("From").expect("From"));
    for from in [reverse.as_str(), "other@alias.test"] {
        let r = send(
            &server,
            "bounce@elsewhere.test",
            mail(from, "looping").as_bytes(),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    let activities = postern_tests::harness::activities(&server, ALIAS).await;
    assert_eq!(
        activities,
        vec!["forward", "loop", "loop"],
        "{activities:?}"
    );
    assert_eq!(server.sink.received().len(), 1);
}

#[tokio::test]
async fn the_quarantine_holds_lists_releases_and_deletes() {
    let server = server().await;
    let key = server.add_user("holder@real.test").await;
    server
        .add_alias("holder@real.test", Some("held@alias.test"), &[])
        .await;
    server
        .dns
        .txt("quarantine.test", "v=spf1 ip4:192.0.2.1 -all");
    server
        .dns
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine");
    let auth = [
        ("Authentication", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    let api = |method: &'static str, path: String, body: Option<&'static str>| {
        let addr = server.http();
        async move { postern_tests::http::http(addr, method, &path, &auth, body).await }
    };
    let r = api(
        "PATCH",
        "/api/setting".into(),
        Some(r#"{"dmarc_quarantine": "hold"}"#),
    )
    .await;
    assert_eq!(r.json["dmarc_quarantine"], "hold", "{}", r.body);
    for subject in ["first", "second"] {
        let raw = mail("ceo@quarantine.test", subject).replace(ALIAS, "held@alias.test");
        let r = client::send(
            server.smtp(),
            "x@quarantine.test",
            &["held@alias.test"],
            raw.as_bytes(),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    let r = api("GET", "/api/quarantine?page_id=0".into(), None).await;
    let held = r.json["quarantine"].as_array().expect("list").clone();
    assert_eq!(held.len(), 2, "{}", r.body);
    assert_eq!(held[0]["subject"], "second");
    assert_eq!(held[0]["sender"], "ceo@quarantine.test");
    // The owner is told (in the app and by email), and nothing is forwarded while held.
    let told = server.sink.wait_for(2, WAIT).await;
    assert!(
        told.iter().all(|m| m.header("Subject").as_deref()
            == Some("held@alias.test has a new mail in quarantine")),
        "nothing forwarded while held"
    );
    let notes = api("GET", "/api/notifications?page=0".into(), None).await;
    assert_eq!(
        notes.json["notifications"][0]["title"],
        "held@alias.test has a new mail in quarantine"
    );
    // Housekeeping keeps what is held.
    postern_worker::Job::Retention
        .run_once(&server.running().ctx)
        .await
        .expect("retention");

    // Another user can neither see nor touch them.
    let other = server.add_user("nosy@real.test").await;
    let r = postern_tests::http::http(
        server.http(),
        "POST",
        &format!("/api/quarantine/{}/release", held[0]["id"]),
        &[("Authentication", other.as_str())],
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);

    let r = api(
        "POST",
        format!("/api/quarantine/{}/release", held[0]["id"]),
        None,
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"released": true}), "{}", r.body);
    let got = server.sink.wait_for(3, WAIT).await;
    let released = got
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("[Unverified sender] second"))
        .expect("released and forwarded, marked");
    assert_eq!(released.rcpts, vec!["holder@real.test".to_string()]);
    let r = api("DELETE", format!("/api/quarantine/{}", held[1]["id"]), None).await;
    assert_eq!(r.json, serde_json::json!({"deleted": true}), "{}", r.body);
    let r = api("GET", "/api/quarantine?page_id=0".into(), None).await;
    assert_eq!(r.json["quarantine"], serde_json::json!([]));
    let activities = postern_tests::harness::activities(&server, "held@alias.test").await;
    assert_eq!(activities, vec!["quarantined", "quarantined"]);
}

#[tokio::test]
async fn a_listed_filters_spam_score_over_the_owners_threshold_is_held_and_no_one_elses_counts() {
    // The filter in front of us is on loopback here; a second server lists another network.
    let listed = TestServer::start_with(&[("smtp.spam_filters", "127.0.0.0/8")]).await;
    let unlisted = TestServer::start_with(&[("smtp.spam_filters", "192.0.2.0/24")]).await;
    for server in [&listed, &unlisted] {
        let key = server.add_user("me@real.test").await;
        server.add_alias("me@real.test", Some(ALIAS), &[]).await;
        server.dns.txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
        let set = |body: &'static str| {
            let (addr, key) = (server.http(), key.clone());
            async move {
                let auth = [
                    ("Authentication", key.as_str()),
                    ("Content-Type", "application/json"),
                ];
                postern_tests::http::http(addr, "PATCH", "/api/setting", &auth, Some(body)).await
            }
        };
        for bad in [
            r#"{"spam_threshold": "high"}"#,
            r#"{"spam_threshold": 0}"#,
            r#"{"spam_threshold": 100.5}"#,
        ] {
            let r = set(bad).await;
            assert_eq!(r.status, 400, "{bad}: {}", r.body);
            assert!(r.json["error"].is_string(), "{}", r.body);
        }
        let r = set(r#"{"spam_threshold": 5}"#).await;
        assert_eq!(r.json["spam_threshold"], 5.0, "{}", r.body);
    }
    let scored = |subject: &str, field: &str| {
        mail("a@pass.test", subject).replacen("Subject:", &format!("{field}\r\nSubject:"), 1)
    };
    let spam = scored(
        "spam",
        "X-Spam-Status: Yes, score=7.5 required=5.0 tests=BAYES_99",
    );
    let ham = scored(
        "ham",
        "X-Spamd-Result: default: False [3.00 / 15.00];\r\n\tBAYES_HAM(-3.00)",
    );

    // Listed: the spam is held (its owner told), the ham forwarded.
    for raw in [&spam, &ham] {
        let r = send(&listed, "a@pass.test", raw.as_bytes()).await;
        assert!(r.starts_with("250"), "{r}");
    }
    let got = listed.sink.wait_for(2, WAIT).await;
    let subjects: Vec<_> = got.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(subjects.contains(&"ham".to_string()), "{subjects:?}");
    assert!(
        subjects.contains(&format!("{ALIAS} has a new mail in quarantine")),
        "{subjects:?}"
    );
    assert!(!subjects.contains(&"spam".to_string()), "{subjects:?}");
    use sea_orm::EntityTrait;
    let ctx = &listed.running().ctx;
    let held = postern_entity::quarantine::Entity::find()
        .all(ctx.db())
        .await
        .expect("quarantine");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].subject.as_deref(), Some("spam"));
    assert!(
        held[0]
            .reason
            .contains("scored it 7.5, above your threshold of 5.0"),
        "{}",
        held[0].reason
    );

    // Not listed: anyone can write those fields, so they mean nothing.
    let r = send(&unlisted, "a@pass.test", spam.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = unlisted.sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("Subject").as_deref(), Some("spam"));
    let none = postern_entity::quarantine::Entity::find()
        .all(unlisted.running().ctx.db())
        .await
        .expect("quarantine");
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn a_warned_message_shows_the_banner_in_text_and_html_unless_it_is_signed() {
    let server = server().await;
    server
        .dns
        .txt("quarantine.test", "v=spf1 ip4:192.0.2.1 -all");
    server
        .dns
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine");
    let alternative = format!(
        "From: <ceo@quarantine.test>\r\nTo: {ALIAS}\r\nSubject: both\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Pay the invoice=21\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>Pay the invoice!</p></body></html>\r\n--b--\r\n"
    );
    let r = send(&server, "x@quarantine.test", alternative.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let signed = format!(
        "From: <ceo@quarantine.test>\r\nTo: {ALIAS}\r\nSubject: signed\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=s\r\n\r\n\
         --s\r\nContent-Type: text/plain\r\n\r\nsigned words\r\n--s\r\n\
         Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nxx\r\n-----END PGP SIGNATURE-----\r\n--s--\r\n"
    );
    let r = send(&server, "x@quarantine.test", signed.as_bytes()).await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(2, WAIT).await;
    let both = got
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("[Unverified sender] both"))
        .expect("the alternative one");
    let text = both.text();
    assert!(
        text.contains("\r\n\r\nWARNING: this message failed its sender's DMARC check"),
        "{text}"
    );
    assert!(text.contains("<html><body><div style="), "{text}");
    assert!(
        text.contains("\r\n\r\nPay the invoice!\r\n--b"),
        "re-encoded: {text}"
    );
    let signed = got
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("[Unverified sender] signed"))
        .expect("the signed one: the subject prefix only");
    assert!(!signed.text().contains("WARNING: this message failed"));
    assert!(signed.text().contains("\r\n\r\nsigned words\r\n"));
}

#[tokio::test]
async fn an_authorised_address_may_reply_once_the_owner_allows_it_with_sudo() {
    let server = server().await;
    // work.test is a domain the test DNS gives an SPF pass for loopback.
    server.dns.txt("ext.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let r = send(
        &server,
        "bob@ext.test",
        mail("bob@ext.test", "question").as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = server.sink.wait_for(1, WAIT).await;
    let reverse = crate::reverse_alias_of(&got[0].header("From").expect("From"));
    let reply = |from: &'static str, subject: &'static str| {
        let reverse = reverse.clone();
        let smtp = server.smtp();
        async move {
            let raw = format!(
                "From: Me <{from}>\r\nTo: {reverse}\r\nSubject: {subject}\r\n\
                 Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@work.test>\r\n\r\n\
                 Sent from {from}\r\n"
            );
            client::send(smtp, from, &[&reverse], raw.as_bytes()).await
        }
    };
    // Not authorised yet: answered like any reply, and not sent.
    assert!(reply("me@work.test", "early").await.starts_with("250"));
    // Authorising takes sudo.
    let owner_key = {
        use postern_domain::accounts;
        let db = server.running().ctx.db();
        let user = accounts::require_user(db, "me@real.test")
            .await
            .expect("user");
        accounts::create_api_key(db, user.id, "test")
            .await
            .expect("key")
    };
    server
        .set_password("me@real.test", "a long passphrase")
        .await;
    let boxes =
        postern_tests::http::call(&server, "GET", "/api/v2/mailboxes", Some(&owner_key), None)
            .await;
    let mailbox_id = boxes.json["mailboxes"][0]["id"].clone();
    let path = format!("/api/mailboxes/{mailbox_id}/authorized_addresses");
    let body = serde_json::json!({"email": "Me@Work.test"});
    let r = postern_tests::http::call(&server, "POST", &path, Some(&owner_key), Some(body.clone()))
        .await;
    assert_eq!(r.status, 440, "{}", r.body);
    let r = postern_tests::http::call(
        &server,
        "PATCH",
        "/api/sudo",
        Some(&owner_key),
        Some(serde_json::json!({"password": "a long passphrase"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = postern_tests::http::call(&server, "POST", &path, Some(&owner_key), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["email"], "me@work.test");
    let listed = postern_tests::http::call(&server, "GET", &path, Some(&owner_key), None).await;
    assert_eq!(
        listed.json["authorized_addresses"][0]["email"],
        "me@work.test"
    );
    // Our own domains cannot be authorised.
    let r = postern_tests::http::call(
        &server,
        "POST",
        &path,
        Some(&owner_key),
        Some(serde_json::json!({"email": "x@alias.test"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Now a reply from it goes out, from the alias, its address scrubbed.
    assert!(reply("me@work.test", "authorised").await.starts_with("250"));
    let to_bob = |subject: &str| {
        server.sink.received().into_iter().find(|m| {
            m.rcpts == ["bob@ext.test"] && m.header("Subject").as_deref() == Some(subject)
        })
    };
    postern_tests::harness::wait_until("the authorised reply at the sink", || {
        let sent = to_bob("authorised").is_some();
        async move { sent }
    })
    .await;
    let sent = to_bob("authorised").expect("sent");
    assert!(sent.header("From").is_some_and(|f| f.contains(ALIAS)));
    assert!(!sent.text().contains("me@work.test"), "{}", sent.text());
    assert!(to_bob("early").is_none(), "the unauthorised one never went");
    // Removed: refused again.
    let id = listed.json["authorized_addresses"][0]["id"].clone();
    let r = postern_tests::http::call(
        &server,
        "DELETE",
        &format!("{path}/{id}"),
        Some(&owner_key),
        None,
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"deleted": true}), "{}", r.body);
    assert!(reply("me@work.test", "late").await.starts_with("250"));
    postern_tests::harness::settled(&server).await;
    assert!(to_bob("late").is_none());
}
