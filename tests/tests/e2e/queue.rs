use postern_tests::client;
use postern_tests::harness::WAIT;

use crate::{message, server_with_alias};

#[tokio::test]
async fn relay_down_queues_then_delivers_exactly_once() {
    let (mut server, alias) = server_with_alias().await;
    server.sink.stop().await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "queued", "x"),
    )
    .await;
    assert!(
        reply.starts_with("250"),
        "accepted while the relay is down: {reply}"
    );
    // The first attempt fails and is rescheduled, not lost.
    let flow = server.running().ctx.clone();
    wait_until(|| async {
        postern_tests::harness::deliveries(&server).await
            == vec![("me@real.test".to_string(), "queued".to_string())]
            && attempts(&flow).await >= 1
    })
    .await;
    server.sink.resume().await;
    let got = server.sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    wait_until(|| async {
        postern_tests::harness::deliveries(&server).await
            == vec![("me@real.test".to_string(), "delivered".to_string())]
    })
    .await;
    // Later queue passes send nothing more.
    assert_eq!(
        postern_domain::delivery::run_due(&server.running().ctx, 100)
            .await
            .expect("queue pass"),
        0
    );
    assert_eq!(server.sink.received().len(), 1);
}

#[tokio::test]
async fn restart_resumes_a_non_empty_queue() {
    let (mut server, alias) = server_with_alias().await;
    server.sink.stop().await;
    for n in 0..3 {
        let reply = client::send(
            server.smtp(),
            "bob@ext.test",
            &[&alias],
            &message("bob@ext.test", &alias, &format!("m{n}"), "x"),
        )
        .await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    server.stop().await;
    server.sink.resume().await;
    server.restart().await;
    let got = server.sink.wait_for(3, WAIT).await;
    let mut subjects: Vec<String> = got.iter().filter_map(|m| m.header("Subject")).collect();
    subjects.sort();
    assert_eq!(subjects, vec!["m0", "m1", "m2"]);
}

#[tokio::test]
async fn permanent_failure_is_recorded_and_the_owner_told() {
    let (server, _) = server_with_alias().await;
    server.add_mailbox("me@real.test", "gone@work.test").await;
    let alias = server
        .add_alias("me@real.test", Some("two@alias.test"), &["gone@work.test"])
        .await;
    server.sink.refuse("gone@work.test");
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "lost", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].rcpts,
        vec!["me@real.test"],
        "the notice goes to the default mailbox"
    );
    assert!(got[0].text().contains("gone@work.test"));
    let deliveries = postern_tests::harness::deliveries(&server).await;
    assert_eq!(
        deliveries[0],
        ("gone@work.test".to_string(), "failed".to_string())
    );
    let kinds = postern_tests::harness::activities(&server, &alias).await;
    assert_eq!(kinds, vec!["forward", "bounce"]);
}

#[tokio::test]
async fn a_bounce_to_a_verp_address_is_recorded_and_a_forged_one_refused() {
    let (server, alias) = server_with_alias().await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "first", "x"),
    )
    .await;
    assert!(reply.starts_with("250"));
    let got = server.sink.wait_for(1, WAIT).await;
    let verp = got[0].mail_from.clone();
    wait_until(|| async { postern_tests::harness::deliveries(&server).await[0].1 == "delivered" })
        .await;
    let dsn = format!(
        "From: MAILER-DAEMON@real.test\r\nTo: {verp}\r\nSubject: Undelivered Mail\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n"
    );
    let reply = client::send(server.smtp(), "", &[&verp], dsn.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(
        postern_tests::harness::deliveries(&server).await[0].1,
        "bounced"
    );
    assert_eq!(
        postern_tests::harness::activities(&server, &alias).await,
        vec!["forward", "bounce"]
    );

    let forged = verp.replacen("b.d", "b.d9", 1);
    let mut c = client::SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("MAIL FROM:<>").await.starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{forged}>")).await;
    assert!(r.starts_with("550 5.1.1"), "{r}");
}

/// Attempts made and finished: a delivery still claimed is mid-attempt, and its outcome would
/// overwrite whatever a test does to the row next.
async fn attempts(flow: &postern_domain::Context) -> i32 {
    use postern_entity::delivery;
    use sea_orm::EntityTrait;
    delivery::Entity::find()
        .all(flow.db())
        .await
        .expect("deliveries")
        .iter()
        .filter(|d| d.claimed_by.is_none())
        .map(|d| d.attempts)
        .sum()
}

/// Polls a database condition until it holds (see the harness's `wait_until`).
async fn wait_until<F, Fut>(condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    postern_tests::harness::wait_until("condition", condition).await;
}

/// Sends one message while the relay refuses connections; returns once it was attempted.
async fn send_while_the_relay_is_down(
    server: &mut postern_tests::harness::TestServer,
    alias: &str,
    subject: &str,
) {
    server.sink.stop().await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[alias],
        &message("bob@ext.test", alias, subject, "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    wait_until(|| async { attempts(&server.running().ctx).await >= 1 }).await;
}

/// Makes the only delivery look claimed by `instance`, its lease ten minutes from now.
async fn claim_as(server: &postern_tests::harness::TestServer, instance: &str) {
    use postern_entity::delivery;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let lease = postern_domain::now_ms() + 10 * 60 * 1000;
    delivery::Entity::update_many()
        .col_expr(delivery::Column::ClaimedBy, Expr::value(instance))
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(lease))
        .filter(delivery::Column::Status.eq(delivery::DeliveryStatus::Queued))
        .exec(server.running().ctx.db())
        .await
        .expect("claim");
}

#[tokio::test]
async fn a_restarted_instance_resumes_its_own_claims_at_once() {
    let (mut server, alias) = server_with_alias().await;
    send_while_the_relay_is_down(&mut server, &alias, "claimed").await;
    let instance = server.running().ctx.instance().to_string();
    // As if the process died mid-send: its claim would keep others away for the lease.
    claim_as(&server, &instance).await;
    server.stop().await;
    server.sink.resume().await;
    server.restart().await;
    assert_eq!(server.running().ctx.instance(), instance);
    let got = server.sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("Subject").as_deref(), Some("claimed"));
}

#[tokio::test]
async fn what_the_sent_journal_noted_before_a_crash_is_not_sent_again() {
    let (mut server, alias) = server_with_alias().await;
    send_while_the_relay_is_down(&mut server, &alias, "sent").await;
    let instance = server.running().ctx.instance().to_string();
    // As if the relay had said 250 and the process died before the status commit: the claim
    // is still ours, and the journal has the line.
    claim_as(&server, &instance).await;
    let id = postern_tests::harness::delivery_ids(&server).await[0];
    drop(server.running().ctx.sent_journal().record(id));
    server.stop().await;
    server.sink.resume().await;
    server.restart().await;
    assert_eq!(
        postern_tests::harness::deliveries(&server).await,
        vec![("me@real.test".to_string(), "delivered".to_string())]
    );
    postern_tests::harness::settled(&server).await;
    assert!(server.sink.received().is_empty(), "sent twice");
}

#[tokio::test]
async fn another_instances_live_claim_is_left_alone() {
    let (mut server, alias) = server_with_alias().await;
    send_while_the_relay_is_down(&mut server, &alias, "theirs").await;
    claim_as(&server, "another-instance").await;
    server.sink.resume().await;
    let ctx = &server.running().ctx;
    assert_eq!(
        postern_domain::delivery::run_due(ctx, 100)
            .await
            .expect("pass"),
        0,
        "a claim under a live lease is not taken"
    );
    assert!(server.sink.received().is_empty());
}

/// Writes the secret `name` through the group-commit writer, failing after the insert when
/// `fail`; counts each run of the work in `runs`.
fn secret_write(
    writer: &postern_domain::pipeline::commit::Writer,
    name: &'static str,
    fail: bool,
    runs: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl std::future::Future<Output = postern_domain::Result<&'static str>> + use<> {
    use postern_entity::secret;
    use sea_orm::{EntityTrait, Set};
    let (writer, runs) = (writer.clone(), std::sync::Arc::clone(runs));
    async move {
        writer
            .write(move |txn| {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Box::pin(async move {
                    secret::Entity::insert(secret::ActiveModel {
                        name: Set(name.to_string()),
                        value: Set(vec![1]),
                    })
                    .exec_without_returning(txn)
                    .await?;
                    if fail {
                        return Err(postern_domain::DomainError::Invalid("bad data".into()));
                    }
                    Ok(name)
                })
            })
            .await
    }
}

/// Holds the writer inside a transaction until the returned sender fires, so that whatever
/// is submitted meanwhile is taken as one batch.
async fn hold_the_writer(
    writer: &postern_domain::pipeline::commit::Writer,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (started, is_started) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let writer = writer.clone();
    let held = tokio::spawn(async move {
        writer
            .write_once(move |_txn| {
                Box::pin(async move {
                    let _ = started.send(());
                    let _ = released.await;
                    Ok(())
                })
            })
            .await
            .expect("the holding work commits");
    });
    is_started.await.expect("the writer took the holding work");
    (release, held)
}

/// Polls each future once, in order: each hands its work to the writer on its first poll.
async fn submit_in_order<F: std::future::Future>(futures: &mut [std::pin::Pin<&mut F>]) {
    for f in futures.iter_mut() {
        std::future::poll_fn(|cx| {
            let _ = f.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
    }
}

#[tokio::test]
async fn group_commit_keeps_one_sessions_failure_to_itself() {
    use postern_entity::secret;
    use sea_orm::EntityTrait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (server, _) = server_with_alias().await;
    let writer = server.running().ctx.writer().clone();
    let runs: Vec<std::sync::Arc<AtomicUsize>> = (0..6).map(|_| Default::default()).collect();

    // One batch of repeatable work: run straight, then (after b fails) again, each piece in
    // a SAVEPOINT of its own.
    let (release, held) = hold_the_writer(&writer).await;
    let a = secret_write(&writer, "gc-a", false, &runs[0]);
    let b = secret_write(&writer, "gc-b", true, &runs[1]);
    let c = secret_write(&writer, "gc-c", false, &runs[2]);
    tokio::pin!(a, b, c);
    submit_in_order(&mut [a.as_mut(), b.as_mut(), c.as_mut()]).await;
    release.send(()).expect("writer waiting");
    held.await.expect("holding task");
    assert_eq!(a.await.expect("a committed"), "gc-a");
    assert!(b.await.is_err(), "the failing session is told");
    assert_eq!(c.await.expect("c committed"), "gc-c");
    assert_eq!(
        runs[0].load(Ordering::SeqCst),
        2,
        "the work before the failure ran again after the rollback"
    );

    // A batch with work that can run only once: each piece in a SAVEPOINT from the start.
    let (release, held) = hold_the_writer(&writer).await;
    let once_writer = writer.clone();
    let once = async move {
        once_writer
            .write_once(move |txn| {
                Box::pin(async move {
                    secret::Entity::insert(secret::ActiveModel {
                        name: sea_orm::Set("gc-once".to_string()),
                        value: sea_orm::Set(vec![2]),
                    })
                    .exec_without_returning(txn)
                    .await?;
                    Ok("gc-once")
                })
            })
            .await
    };
    let d = secret_write(&writer, "gc-d", false, &runs[3]);
    let e = secret_write(&writer, "gc-e", true, &runs[4]);
    tokio::pin!(once, d, e);
    submit_in_order(&mut [d.as_mut(), e.as_mut()]).await;
    std::future::poll_fn(|cx| {
        let _ = once.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    release.send(()).expect("writer waiting");
    held.await.expect("holding task");
    assert_eq!(d.await.expect("d committed"), "gc-d");
    assert!(e.await.is_err(), "the failing session is told");
    assert_eq!(once.await.expect("once committed"), "gc-once");
    assert_eq!(runs[3].load(Ordering::SeqCst), 1, "isolated from the start");

    // Alone in its transaction, a failure needs no rerun.
    assert!(secret_write(&writer, "gc-f", true, &runs[5]).await.is_err());
    assert_eq!(runs[5].load(Ordering::SeqCst), 1);

    let db = server.running().ctx.db();
    let kept = |name: &'static str| async move {
        secret::Entity::find_by_id(name.to_string())
            .one(db)
            .await
            .expect("query")
            .is_some()
    };
    for name in ["gc-a", "gc-c", "gc-d", "gc-once"] {
        assert!(kept(name).await, "{name} kept");
    }
    for name in ["gc-b", "gc-e", "gc-f"] {
        assert!(
            !kept(name).await,
            "a failed session's writes ({name}) are rolled back"
        );
    }
}

#[tokio::test]
async fn a_large_message_is_stored_in_pieces_and_sent_whole_on_retry() {
    let (mut server, alias) = crate::server_with_alias().await;
    server.sink.stop().await;
    // 3 MiB of varied lines: stored in pieces, not kept in memory for the first attempt.
    let body: String = (0..80_000)
        .map(|n| format!("line {n:06} {}\r\n", "xyzw".repeat(n % 17)))
        .collect();
    let raw = crate::message(
        "bob@ext.test",
        &alias,
        "large",
        body.trim_end_matches("\r\n"),
    );
    assert!(raw.len() > 2 * 1024 * 1024);
    let r = postern_tests::client::send(server.smtp(), "bob@ext.test", &[&alias], &raw).await;
    assert!(r.starts_with("250"), "{r}");
    let parts = {
        use sea_orm::{EntityTrait, PaginatorTrait};
        postern_entity::message_part::Entity::find()
            .count(server.running().ctx.db())
            .await
            .expect("count")
    };
    assert!(parts >= 3, "{parts} pieces");
    server.sink.resume().await;
    let got = server.sink.wait_for(1, postern_tests::harness::WAIT).await;
    assert_eq!(
        got[0].body(),
        format!("{}\r\n", body.trim_end_matches("\r\n")).as_bytes()
    );
}

/// The last error of the only delivery, once it has one.
async fn first_error(server: &postern_tests::harness::TestServer) -> String {
    use sea_orm::EntityTrait;
    let error = || async {
        postern_entity::delivery::Entity::find()
            .all(server.running().ctx.db())
            .await
            .expect("query deliveries")
            .first()
            .and_then(|d| d.last_error.clone())
    };
    postern_tests::harness::wait_until("a delivery error recorded", || async {
        error().await.is_some()
    })
    .await;
    error().await.unwrap_or_default()
}

#[tokio::test]
async fn the_relay_certificate_is_verified_unless_the_setting_says_otherwise() {
    let dir = tempfile::tempdir().expect("dir");
    let tls_sink = postern_tests::sink::Sink::start_tls(dir.path()).await;
    let relay = format!("smtp://127.0.0.1:{}?tls=required", tls_sink.addr.port());
    for (verify, delivered) in [("", false), ("&verify=no", true)] {
        let relay = format!("{relay}{verify}");
        let server =
            postern_tests::harness::TestServer::start_with(&[("outbound.relay", &relay)]).await;
        server.add_user("me@real.test").await;
        let alias = server
            .add_alias("me@real.test", Some("shop@alias.test"), &[])
            .await;
        let raw = crate::message("bob@ext.test", &alias, &format!("verify{verify}"), "x");
        let r = postern_tests::client::send(server.smtp(), "bob@ext.test", &[&alias], &raw).await;
        assert!(r.starts_with("250"), "{r}");
        if delivered {
            let got = tls_sink.wait_for(1, postern_tests::harness::WAIT).await;
            assert_eq!(got.len(), 1);
        } else {
            let error = first_error(&server).await;
            assert!(error.to_lowercase().contains("certificate"), "{error}");
            assert!(
                tls_sink.received().is_empty(),
                "nothing went to an unverified relay"
            );
            assert_eq!(
                postern_tests::harness::deliveries(&server).await[0].1,
                "queued",
                "a certificate failure is retried, not bounced"
            );
        }
    }
}
