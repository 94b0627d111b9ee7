//! Bounces, complaints and automatic replies, end to end: a real forward goes out, a report
//! written after a real MTA's format comes back over SMTP to its VERP address, and what
//! changed is read through the activity, `/api/bounces`, `/api/notifications` and the
//! notification mail at the sink.

use postern_tests::client;
use postern_tests::harness::{TestServer, settled, wait_until};
use postern_tests::http::call;
use postern_tests::sink::Received;
use serde_json::Value;

use crate::message;

const MAILBOX: &str = "me@real.test";

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dsn")
}

fn manifest() -> Vec<toml::Table> {
    let text = std::fs::read_to_string(fixtures_dir().join("MANIFEST.toml")).expect("manifest");
    let table: toml::Table = text.parse().expect("toml");
    table["fixture"]
        .as_array()
        .expect("fixtures")
        .iter()
        .map(|f| f.as_table().expect("table").clone())
        .collect()
}

/// A fixture with its placeholders filled in.
fn fixture(file: &str, verp: &str, rcpt: &str, alias: &str, message_id: &str) -> Vec<u8> {
    std::fs::read_to_string(fixtures_dir().join(file))
        .expect("fixture")
        .replace("{{VERP}}", verp)
        .replace("{{RCPT2}}", "other@work.test")
        .replace("{{RCPT}}", rcpt)
        .replace("{{FROM}}", alias)
        .replace("{{MSGID}}", message_id)
        .into_bytes()
}

/// Waits for a message at the sink that `wanted` picks, for up to WAIT.
async fn wait_for_mail(server: &TestServer, wanted: impl Fn(&Received) -> bool) -> Received {
    let what = format!(
        "a message at the sink (it had: {:?})",
        server
            .sink
            .received()
            .iter()
            .map(|m| (m.rcpts.clone(), m.header("Subject")))
            .collect::<Vec<_>>()
    );
    wait_until(&what, || {
        let found = server.sink.received().iter().any(&wanted);
        async move { found }
    })
    .await;
    server
        .sink
        .received()
        .into_iter()
        .find(|m| wanted(m))
        .expect("found above")
}

/// How many messages at the sink went to `rcpt` with a subject containing `words`.
fn count(server: &TestServer, rcpt: &str, words: &str) -> usize {
    server
        .sink
        .for_rcpt(rcpt)
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains(words)))
        .count()
}

/// Waits until [`count`] reaches `n`.
async fn wait_for_count(server: &TestServer, rcpt: &str, words: &str, n: usize) {
    let what = format!("{n} messages to {rcpt} about `{words}`");
    wait_until(&what, || {
        let reached = count(server, rcpt, words) >= n;
        async move { reached }
    })
    .await;
}

/// Sends a message from Bob to `alias` with `subject`; returns the forward as received.
async fn forward(server: &TestServer, alias: &str, subject: &str) -> Received {
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[alias],
        &message("bob@ext.test", alias, subject, "hello"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = wait_for_mail(server, |m| {
        m.header("Subject").as_deref() == Some(subject) && m.mail_from.starts_with("b.d")
    })
    .await;
    wait_for_status(server, delivery_id(&got.mail_from), "delivered").await;
    got
}

/// The delivery a VERP address names.
fn delivery_id(verp: &str) -> i64 {
    verp.strip_prefix("b.d")
        .and_then(|rest| rest.split('.').next())
        .and_then(|id| id.parse().ok())
        .expect("a VERP address")
}

async fn status_of(server: &TestServer, id: i64) -> String {
    use sea_orm::ActiveEnum;
    postern_domain::delivery::queue::find(server.running().ctx.db(), id)
        .await
        .expect("query")
        .expect("delivery")
        .status
        .to_value()
}

async fn wait_for_status(server: &TestServer, id: i64, want: &str) {
    wait_until(&format!("delivery {id} {want}"), || async move {
        status_of(server, id).await == want
    })
    .await;
}

/// A report from a mail server: the null sender, to `verp`.
async fn report(server: &TestServer, verp: &str, raw: &[u8]) {
    report_from(server, "", verp, raw).await;
}

/// Mail to `verp` from `mail_from` (an automatic reply sent from the person's own address).
async fn report_from(server: &TestServer, mail_from: &str, verp: &str, raw: &[u8]) {
    let reply = client::send(server.smtp(), mail_from, &[verp], raw).await;
    assert!(reply.starts_with("250"), "accepted: {reply}");
}

async fn api(server: &TestServer, key: &str, path: &str) -> Value {
    let r = call(server, "GET", path, Some(key), None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json
}

fn message_id_of(m: &Received) -> String {
    m.header("Message-ID")
        .expect("Message-ID")
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

#[tokio::test]
async fn every_report_format_is_read_and_acted_on_end_to_end() {
    let server = TestServer::start_with(&[
        ("bounces.per_day", "1000"),
        ("bounces.per_week", "1000"),
        ("notifications.emails_per_kind_per_day", "1000"),
    ])
    .await;
    let key = server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    for (n, f) in manifest().iter().enumerate() {
        let file = f["file"].as_str().expect("file");
        let kind = f["kind"].as_str().expect("kind");
        let subject = format!("fixture {n}");
        let fwd = forward(&server, &alias, &subject).await;
        let id = delivery_id(&fwd.mail_from);
        let refused_before = count(&server, MAILBOX, "refused a message");
        let spam_before = count(&server, MAILBOX, "reported as spam");
        let notes_before = api(&server, &key, "/api/notifications?page=0").await["notifications"]
            .as_array()
            .map_or(0, Vec::len);
        let raw = fixture(file, &fwd.mail_from, MAILBOX, &alias, &message_id_of(&fwd));
        // A report comes from the null sender; a vacation notice from the mailbox itself,
        // whose domain's SPF passes for it.
        let mail_from = if kind == "auto-reply" { MAILBOX } else { "" };
        report_from(&server, mail_from, &fwd.mail_from, &raw).await;
        let bounces = api(&server, &key, "/api/bounces").await;
        let newest = &bounces["bounces"][0];
        match kind {
            "hard" | "complaint" => {
                assert_eq!(status_of(&server, id).await, "bounced", "{file}");
                assert_eq!(newest["class"], kind, "{file}: {newest}");
                assert_eq!(newest["recipient"], MAILBOX, "{file}");
                assert_eq!(newest["phase"], "forward", "{file}");
                if kind == "hard" {
                    assert_eq!(
                        newest["status"],
                        f["status"].as_str().expect("status"),
                        "{file}"
                    );
                    assert_eq!(
                        newest["counts_toward_disabling"].as_bool(),
                        f["counts_toward_disable"].as_bool(),
                        "{file}"
                    );
                }
                assert_eq!(newest["message_kept"], true, "{file}");
                // The refused message is there to inspect.
                let kept = call(
                    &server,
                    "GET",
                    &format!("/api/bounces/{}/message", newest["id"]),
                    Some(&key),
                    None,
                )
                .await;
                assert_eq!(kept.status, 200, "{file}");
                assert!(kept.body.contains(&fwd.mail_from), "{file}");
                // Told in the app...
                let notes = api(&server, &key, "/api/notifications?page=0").await;
                let title = notes["notifications"][0]["title"]
                    .as_str()
                    .unwrap_or_default();
                let want = if kind == "hard" {
                    "refused a message"
                } else {
                    "reported as spam"
                };
                assert!(title.contains(want), "{file}: {title}");
                // ...and by email, with the links to act.
                let before = if kind == "hard" {
                    refused_before
                } else {
                    spam_before
                };
                wait_for_count(&server, MAILBOX, want, before + 1).await;
                let mail = server
                    .sink
                    .for_rcpt(MAILBOX)
                    .into_iter()
                    .rfind(|m| m.header("Subject").is_some_and(|s| s.contains(want)))
                    .expect("the notice");
                assert!(mail.text().contains("/act/"), "{file}");
            }
            "delayed" => {
                assert_eq!(status_of(&server, id).await, "delivered", "{file}");
                assert_eq!(newest["class"], "soft", "{file}: {newest}");
                assert_eq!(newest["message_kept"], false, "{file}");
            }
            "auto-reply" => {
                // The owner's mailbox answered the forward: the answer goes to Bob from the
                // alias, rewritten and scrubbed like any reply.
                let sent = wait_for_mail(&server, |m| m.rcpts == ["bob@ext.test"]).await;
                assert!(
                    sent.header("From").is_some_and(|f| f.contains(&alias)),
                    "{:?}",
                    sent.header("From")
                );
                assert!(
                    !sent.text().to_lowercase().contains(MAILBOX),
                    "the mailbox leaked:\n{}",
                    sent.text()
                );
                assert_eq!(status_of(&server, id).await, "delivered", "{file}");
            }
            other => panic!("{file}: unknown kind {other}"),
        }
        if kind == "delayed" {
            // Whatever the report queued has been attempted before saying no notice came.
            settled(&server).await;
            assert_eq!(
                count(&server, MAILBOX, "refused a message"),
                refused_before,
                "{file}"
            );
            let notes = api(&server, &key, "/api/notifications?page=0").await["notifications"]
                .as_array()
                .map_or(0, Vec::len);
            assert_eq!(notes, notes_before, "{file}: a delay tells no one");
        }
    }
    let kinds = postern_tests::harness::activities(&server, &alias).await;
    assert!(
        kinds.iter().filter(|k| *k == "bounce").count() >= 12,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"auto-reply".to_string()), "{kinds:?}");
}

#[tokio::test]
async fn a_mailbox_that_keeps_saying_it_is_gone_stops_receiving_and_its_only_alias_is_disabled() {
    let server =
        TestServer::start_with(&[("bounces.per_day", "2"), ("bounces.per_week", "100")]).await;
    let key = server.add_user(MAILBOX).await;
    server.add_mailbox(MAILBOX, "gone@work.test").await;
    let only = server
        .add_alias(MAILBOX, Some("only@alias.test"), &["gone@work.test"])
        .await;
    let both = server
        .add_alias(
            MAILBOX,
            Some("both@alias.test"),
            &["gone@work.test", MAILBOX],
        )
        .await;
    // Refusals of this message (spam, policy) count for nothing.
    for n in 0..3 {
        let fwd = forward(&server, &only, &format!("spam {n}")).await;
        let raw = fixture(
            "exchange-spam.eml",
            &fwd.mail_from,
            "gone@work.test",
            &only,
            "x@y",
        );
        report(&server, &fwd.mail_from, &raw).await;
    }
    let boxes = api(&server, &key, "/api/v2/mailboxes").await;
    assert_eq!(boxes["mailboxes"].as_array().map(Vec::len), Some(2));
    // "User unknown", three times in a day: more than `per_day`. A second report about the
    // same forward counts once.
    for n in 0..3 {
        let fwd = forward(&server, &only, &format!("gone {n}")).await;
        let raw = fixture(
            "postfix-hard.eml",
            &fwd.mail_from,
            "gone@work.test",
            &only,
            "x@y",
        );
        report(&server, &fwd.mail_from, &raw).await;
        if n == 0 {
            report(&server, &fwd.mail_from, &raw).await;
        }
        if n == 1 {
            let notes = api(&server, &key, "/api/notifications?page=0").await;
            assert!(
                !notes
                    .to_string()
                    .contains("Forwarding to gone@work.test is stopped"),
                "two forwards bounced, not three: {notes}"
            );
        }
    }
    let notes = api(&server, &key, "/api/notifications?page=0").await;
    let titles: Vec<&str> = notes["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["title"].as_str())
        .collect();
    assert!(
        titles.contains(&"Forwarding to gone@work.test is stopped"),
        "{titles:?}"
    );
    // Said by email too, to the default mailbox.
    let said = wait_for_mail(&server, |m| {
        m.rcpts == [MAILBOX]
            && m.header("Subject").as_deref() == Some("Forwarding to gone@work.test is stopped")
    })
    .await;
    assert!(said.text().contains("only@alias.test"), "{}", said.text());
    let aliases = api(&server, &key, "/api/v2/aliases?page_id=0").await;
    let enabled = |email: &str| {
        aliases["aliases"]
            .as_array()
            .expect("aliases")
            .iter()
            .find(|a| a["email"] == email)
            .map(|a| a["enabled"].clone())
    };
    assert_eq!(enabled("only@alias.test"), Some(Value::Bool(false)));
    assert_eq!(enabled("both@alias.test"), Some(Value::Bool(true)));
    // The alias with another mailbox still forwards, to that one only.
    forward(&server, &both, "after").await;
    settled(&server).await;
    assert_eq!(count(&server, "gone@work.test", "after"), 0);
    assert_eq!(count(&server, MAILBOX, "after"), 1);
    // The owner turns it back on.
    let id = api(&server, &key, "/api/v2/mailboxes").await["mailboxes"]
        .as_array()
        .expect("boxes")
        .iter()
        .find(|m| m["email"] == "gone@work.test")
        .map(|m| m["id"].clone())
        .expect("mailbox");
    let r = call(
        &server,
        "PUT",
        &format!("/api/mailboxes/{id}"),
        Some(&key),
        Some(serde_json::json!({"disabled": false})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    forward(&server, &both, "back").await;
    wait_for_count(&server, "gone@work.test", "back", 1).await;
}

#[tokio::test]
async fn a_reply_that_bounces_tells_the_sending_mailbox_and_disables_nothing() {
    let server = TestServer::start().await;
    let key = server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    let fwd = forward(&server, &alias, "question").await;
    let reverse = crate::reverse_alias_of(&fwd.header("From").expect("From"));
    let reply = client::send(
        server.smtp(),
        MAILBOX,
        &[&reverse],
        &message(MAILBOX, &reverse, "answer", "my answer"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let sent = wait_for_mail(&server, |m| m.rcpts == ["bob@ext.test"]).await;
    wait_for_status(&server, delivery_id(&sent.mail_from), "delivered").await;
    let raw = fixture(
        "gmail-hard.eml",
        &sent.mail_from,
        "bob@ext.test",
        &alias,
        "x@y",
    );
    report(&server, &sent.mail_from, &raw).await;
    let told = wait_for_mail(&server, |m| {
        m.rcpts == [MAILBOX] && m.header("Subject").as_deref() == Some("Undelivered message")
    })
    .await;
    assert!(told.text().contains("bob@ext.test"), "{}", told.text());
    let bounces = api(&server, &key, "/api/bounces").await;
    assert_eq!(bounces["bounces"][0]["phase"], "reply");
    assert_eq!(bounces["bounces"][0]["counts_toward_disabling"], false);
    let aliases = api(&server, &key, "/api/v2/aliases?page_id=0").await;
    assert_eq!(aliases["aliases"][0]["enabled"], true);
}

#[tokio::test]
async fn a_contacts_vacation_notice_reaches_the_owner_from_the_reverse_alias() {
    let server = TestServer::start().await;
    server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    let fwd = forward(&server, &alias, "hello").await;
    let reverse = crate::reverse_alias_of(&fwd.header("From").expect("From"));
    let reply = client::send(
        server.smtp(),
        MAILBOX,
        &[&reverse],
        &message(MAILBOX, &reverse, "answer", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let sent = wait_for_mail(&server, |m| m.rcpts == ["bob@ext.test"]).await;
    wait_for_status(&server, delivery_id(&sent.mail_from), "delivered").await;
    let raw = fixture(
        "vacation.eml",
        &sent.mail_from,
        "bob@ext.test",
        &alias,
        &message_id_of(&sent),
    );
    // Not proven to come from Bob (ext.test has no SPF yet, nothing is signed): anyone who
    // saw the bounce address could have written it, so it reaches no one.
    report(&server, &sent.mail_from, &raw).await;
    settled(&server).await;
    assert!(
        !server.sink.for_rcpt(MAILBOX).iter().any(|m| m
            .header("Subject")
            .is_some_and(|s| s.starts_with("Automatic reply"))),
        "an unauthenticated automatic reply was passed on"
    );
    server.dns.txt("ext.test", "v=spf1 ip4:127.0.0.0/8 -all");
    report_from(&server, "bob@ext.test", &sent.mail_from, &raw).await;
    let got = wait_for_mail(&server, |m| {
        m.rcpts == [MAILBOX]
            && m.header("Subject")
                .is_some_and(|s| s.starts_with("Automatic reply"))
    })
    .await;
    let from = got.header("From").expect("From");
    assert!(
        from.contains(&reverse),
        "from the contact's reverse alias: {from}"
    );
    assert!(
        !got.text().contains(&sent.mail_from),
        "the bounce address is not shown"
    );
}

#[tokio::test]
async fn a_report_to_a_stale_bounce_address_changes_nothing() {
    let server = TestServer::start_with(&[("retention.bounce_address_days", "3")]).await;
    let key = server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    let fwd = forward(&server, &alias, "old").await;
    let id = delivery_id(&fwd.mail_from);
    {
        use postern_entity::delivery;
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        delivery::Entity::update_many()
            .col_expr(
                delivery::Column::CreatedAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::days(4)),
            )
            .filter(delivery::Column::Id.eq(id))
            .exec(server.running().ctx.db())
            .await
            .expect("age it");
    }
    let raw = fixture("postfix-hard.eml", &fwd.mail_from, MAILBOX, &alias, "x@y");
    report(&server, &fwd.mail_from, &raw).await;
    assert_eq!(status_of(&server, id).await, "delivered");
    let bounces = api(&server, &key, "/api/bounces").await;
    assert_eq!(bounces["bounces"], serde_json::json!([]));
}

#[tokio::test]
async fn a_bounce_of_our_own_notice_notifies_no_one() {
    let server = TestServer::start().await;
    let key = server.add_user(MAILBOX).await;
    server.add_mailbox(MAILBOX, "gone@work.test").await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &["gone@work.test"])
        .await;
    let fwd = forward(&server, &alias, "one").await;
    let raw = fixture(
        "postfix-hard.eml",
        &fwd.mail_from,
        "gone@work.test",
        &alias,
        "x@y",
    );
    report(&server, &fwd.mail_from, &raw).await;
    let notice = wait_for_mail(&server, |m| {
        m.rcpts == [MAILBOX] && m.header("Subject").is_some_and(|s| s.contains("refused"))
    })
    .await;
    let count = api(&server, &key, "/api/notifications?page=0").await["notifications"]
        .as_array()
        .map(Vec::len);
    // The notice itself bounces.
    wait_for_status(&server, delivery_id(&notice.mail_from), "delivered").await;
    let raw = fixture(
        "postfix-hard.eml",
        &notice.mail_from,
        MAILBOX,
        &alias,
        "x@y",
    );
    report(&server, &notice.mail_from, &raw).await;
    assert_eq!(
        status_of(&server, delivery_id(&notice.mail_from)).await,
        "bounced"
    );
    let after = api(&server, &key, "/api/notifications?page=0").await["notifications"]
        .as_array()
        .map(Vec::len);
    assert_eq!(count, after, "no notification about a notification");
}

#[tokio::test]
async fn the_links_in_a_notice_act_only_when_confirmed() {
    let server = TestServer::start().await;
    let key = server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    let fwd = forward(&server, &alias, "offer").await;
    let raw = fixture("arf-complaint.eml", &fwd.mail_from, MAILBOX, &alias, "x@y");
    report(&server, &fwd.mail_from, &raw).await;
    let notice = wait_for_mail(&server, |m| {
        m.rcpts == [MAILBOX]
            && m.header("Subject")
                .is_some_and(|s| s.contains("reported as spam"))
    })
    .await;
    let text = notice.text();
    let link = |label: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} link in:\n{text}"));
        let at = line.find("/act/").expect("a link");
        line[at..].trim().to_string()
    };
    let disable = link("Disable the alias");
    let block = link("Block this sender");
    // Opening the page (a mail scanner does) changes nothing.
    let page = postern_tests::http::http(server.http(), "GET", &disable, &[], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form method=post"), "{}", page.body);
    assert!(
        page.header("content-security-policy").is_some(),
        "the page has a CSP"
    );
    let aliases = api(&server, &key, "/api/v2/aliases?page_id=0").await;
    assert_eq!(aliases["aliases"][0]["enabled"], true);
    // Confirming does it.
    let done = postern_tests::http::http(server.http(), "POST", &disable, &[], None).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let aliases = api(&server, &key, "/api/v2/aliases?page_id=0").await;
    assert_eq!(aliases["aliases"][0]["enabled"], false);
    let done = postern_tests::http::http(server.http(), "POST", &block, &[], None).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let contacts = api(
        &server,
        &key,
        &format!(
            "/api/aliases/{}/contacts?page_id=0",
            aliases["aliases"][0]["id"]
        ),
    )
    .await;
    assert_eq!(contacts["contacts"][0]["block_forward"], true, "{contacts}");
    // A tampered link is refused.
    let forged = disable.replacen("/act/a", "/act/a1", 1);
    let r = postern_tests::http::http(server.http(), "POST", &forged, &[], None).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn notifications_page_mark_read_and_stay_private() {
    let server = TestServer::start_with(&[("notifications.emails_per_kind_per_day", "2")]).await;
    let key = server.add_user(MAILBOX).await;
    let other = server.add_user("nosy@real.test").await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    for n in 0..22 {
        let fwd = forward(&server, &alias, &format!("n{n}")).await;
        let raw = fixture("exchange-spam.eml", &fwd.mail_from, MAILBOX, &alias, "x@y");
        report(&server, &fwd.mail_from, &raw).await;
    }
    let first = api(&server, &key, "/api/notifications?page=0").await;
    assert_eq!(first["more"], true);
    assert_eq!(first["notifications"].as_array().map(Vec::len), Some(20));
    let second = api(&server, &key, "/api/notifications?page=1").await;
    assert_eq!(second["more"], false);
    assert_eq!(second["notifications"].as_array().map(Vec::len), Some(2));
    let n = &first["notifications"][0];
    assert_eq!(n["read"], false);
    assert!(
        n["created_at"]
            .as_str()
            .is_some_and(|s| s.ends_with("ago") || s == "just now")
    );
    // Only two emails a day of one kind; every one is in the app.
    let emailed = server
        .sink
        .for_rcpt(MAILBOX)
        .iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("refused a message"))
        })
        .count();
    assert_eq!(emailed, 2);
    let id = n["id"].as_i64().expect("id");
    let path = format!("/api/notifications/{id}/read");
    let r = call(&server, "POST", &path, Some(&other), None).await;
    assert_eq!(r.status, 403, "another user cannot touch it");
    let r = call(&server, "POST", &path, Some(&key), None).await;
    assert_eq!(r.json, serde_json::json!({"done": true}));
    let again = api(&server, &key, "/api/notifications?page=0").await;
    assert_eq!(again["notifications"][0]["read"], true);
    let theirs = api(&server, &other, "/api/notifications?page=0").await;
    assert_eq!(theirs["notifications"], serde_json::json!([]));
}

#[tokio::test]
async fn an_automatic_reply_not_from_the_mailbox_goes_nowhere() {
    let server = TestServer::start().await;
    server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    let fwd = forward(&server, &alias, "hello").await;
    // Someone who saw the bounce address writes to it as a responder: nothing reaches Bob.
    let raw = fixture(
        "vacation.eml",
        &fwd.mail_from,
        "mallory@evil.test",
        &alias,
        &message_id_of(&fwd),
    );
    report(&server, &fwd.mail_from, &raw).await;
    settled(&server).await;
    assert!(server.sink.for_rcpt("bob@ext.test").is_empty());
    let kinds = postern_tests::harness::activities(&server, &alias).await;
    assert_eq!(
        kinds,
        vec!["forward", "auto-reply"],
        "recorded, not passed on"
    );
}
