//! The worker's jobs: each called as one step, the schedule, the lease that lets one worker
//! run a job at a time, and the command line around them.

use postern::cli::{Command, WorkerCommand};
use postern_tests::client;
use postern_tests::harness::{TestServer, wait_until};
use postern_tests::http::call;
use postern_worker::{Job, lease};

use crate::{message, server_with_alias};

#[tokio::test]
async fn every_job_is_scheduled() {
    let server = TestServer::start().await;
    let schedule = postern_worker::schedule(&server.running().ctx)
        .await
        .expect("schedule");
    let now = chrono::Utc::now();
    for job in Job::ALL {
        let at = schedule
            .next
            .iter()
            .find(|(j, _)| *j == job)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("{} is not scheduled", job.name()));
        assert!(
            at > now - chrono::Duration::seconds(1) && at <= now + chrono::Duration::days(1),
            "{} runs next at {at}",
            job.name()
        );
        assert_eq!(Job::parse(job.name()).expect("parses"), job);
    }
    assert_eq!(schedule.next.len(), Job::ALL.len());
}

#[tokio::test]
async fn jobs_run_by_hand_and_report_what_they_did() {
    let server = TestServer::start().await;
    let out = server
        .cli(Command::Worker {
            action: Some(WorkerCommand::Run {
                job: "retention".into(),
            }),
        })
        .await
        .expect("runs");
    assert!(out.starts_with("retention: pruned "), "{out}");
    let err = server
        .cli(Command::Worker {
            action: Some(WorkerCommand::Run {
                job: "nonsense".into(),
            }),
        })
        .await
        .expect_err("unknown job");
    assert!(
        err.contains("the jobs are: queue, purge, retention"),
        "{err}"
    );
    let status = server
        .cli(Command::Worker {
            action: Some(WorkerCommand::Status),
        })
        .await
        .expect("status");
    assert!(status.starts_with("queue: 0 queued"), "{status}");
    assert!(status.contains("retention: last run 20"), "{status}");
}

#[tokio::test]
async fn one_worker_at_a_time_runs_a_job() {
    let server = TestServer::start().await;
    let ctx = &server.running().ctx;
    let db = ctx.db();
    // Another worker holds the lease: this one neither runs the job nor steals it.
    assert!(
        lease::acquire(db, "retention", "other-worker", 60_000)
            .await
            .expect("lease")
    );
    assert!(
        !lease::acquire(db, "retention", "third-worker", 60_000)
            .await
            .expect("lease")
    );
    assert!(
        !lease::acquire(db, "retention", "other-worker", 60_000)
            .await
            .expect("lease"),
        "not even its holder runs it twice at once"
    );
    assert_eq!(Job::Retention.run_leased(ctx).await.expect("runs"), None);
    let err = server
        .cli(Command::Worker {
            action: Some(WorkerCommand::Run {
                job: "retention".into(),
            }),
        })
        .await
        .expect_err("held elsewhere");
    assert!(err.contains("running in another worker"), "{err}");
    // Once it is given back, the next one takes it.
    lease::release(db, "retention", "other-worker", "done")
        .await
        .expect("release");
    let ran = Job::Retention.run_leased(ctx).await.expect("runs");
    assert!(ran.is_some_and(|r| r.starts_with("pruned")));
    // A lease whose holder died runs out (this one already has).
    assert!(
        lease::acquire(db, "queue", "crashed-worker", -1)
            .await
            .expect("lease")
    );
    assert!(
        lease::acquire(db, "queue", "alive-worker", 60_000)
            .await
            .expect("lease")
    );
}

#[tokio::test]
async fn retention_prunes_old_activity_and_the_counters_survive() {
    let (server, alias) = server_with_alias().await;
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
    let ctx = &server.running().ctx;
    let db = ctx.db();
    let alias_row = postern_domain::accounts::find_alias(db, &alias)
        .await
        .expect("query")
        .expect("alias");
    let before = postern_domain::listing::alias_stats(db, &[alias_row.id])
        .await
        .expect("stats")[&alias_row.id]
        .forwards;
    assert_eq!(before, 3);
    {
        use postern_entity::activity;
        use sea_orm::EntityTrait;
        use sea_orm::sea_query::Expr;
        activity::Entity::update_many()
            .col_expr(
                activity::Column::CreatedAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::days(31)),
            )
            .exec(db)
            .await
            .expect("age");
    }
    let done = postern_domain::retention::prune(ctx).await.expect("prune");
    assert_eq!(done.activities, 3, "{done:?}");
    assert!(
        postern_tests::harness::activities(&server, &alias)
            .await
            .is_empty()
    );
    let after = postern_domain::listing::alias_stats(db, &[alias_row.id])
        .await
        .expect("stats")[&alias_row.id]
        .forwards;
    assert_eq!(after, 3, "the counter survives pruning");
    let user = postern_domain::listing::user_stats(db, alias_row.user_id)
        .await
        .expect("user stats");
    assert_eq!(user.forwards, 3);
    // A second pass finds nothing more to prune.
    let again = postern_domain::retention::prune(ctx).await.expect("prune");
    assert_eq!(again.activities, 0);
    // The health endpoint tells the queue's state.
    let health = call(&server, "GET", "/health", None, None).await;
    assert_eq!(health.json["status"], "ok");
    let queue = &health.json["queue"];
    assert!(
        queue["queued"].as_u64().is_some_and(|n| n <= 3)
            && queue["due"].is_u64()
            && queue["oldest_age_seconds"].is_i64(),
        "{}",
        health.json
    );
}

#[tokio::test]
async fn a_deleted_alias_waits_in_the_trash_then_is_purged_and_its_address_stays_taken() {
    let server = TestServer::start().await;
    let key = server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("gone@alias.test"), &[])
        .await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "before", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let forward = server.sink.wait_for(1, postern_tests::harness::WAIT).await;
    let reverse = crate::reverse_alias_of(&forward[0].header("From").expect("From"));
    let ctx = &server.running().ctx;
    let id = postern_domain::accounts::find_alias(ctx.db(), &alias)
        .await
        .expect("query")
        .expect("alias")
        .id;
    let r = call(
        &server,
        "DELETE",
        &format!("/api/aliases/{id}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(r.json, serde_json::json!({"deleted": true}), "{}", r.body);
    // In the trash: listed nowhere, its mail blocked, nothing goes out from it.
    let list = call(
        &server,
        "GET",
        "/api/v2/aliases?page_id=0",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(list.json["aliases"], serde_json::json!([]));
    let one = call(
        &server,
        "GET",
        &format!("/api/aliases/{id}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(one.status, 403);
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "after", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(
        postern_tests::harness::activities(&server, &alias).await,
        vec!["forward", "block"]
    );
    let mut c = client::SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("MAIL FROM:<me@real.test>").await.starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{reverse}>")).await;
    assert!(r.starts_with("550 5.1.1"), "{r}");
    // Past retention.trash_days the retention job purges it; the address stays taken.
    {
        use postern_entity::alias as alias_entity;
        use sea_orm::EntityTrait;
        use sea_orm::sea_query::Expr;
        alias_entity::Entity::update_many()
            .col_expr(
                alias_entity::Column::DeletedAt,
                Expr::value(Some(chrono::Utc::now() - chrono::Duration::days(31))),
            )
            .exec(ctx.db())
            .await
            .expect("age");
    }
    let done = postern_domain::retention::prune(ctx).await.expect("prune");
    assert_eq!(done.trashed_aliases, 1, "{done:?}");
    assert!(
        postern_domain::accounts::find_alias(ctx.db(), &alias)
            .await
            .expect("query")
            .is_none()
    );
    let mut c = client::SmtpClient::ready(server.smtp()).await;
    assert!(c.cmd("MAIL FROM:<bob@ext.test>").await.starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{alias}>")).await;
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let again = server
        .cli(Command::Alias(postern::cli::AliasCommand::Add {
            user_email: "me@real.test".into(),
            address: Some(alias.clone()),
            mailboxes: vec![],
        }))
        .await;
    assert!(
        again.is_err(),
        "the address is never given out again: {again:?}"
    );
}

#[tokio::test]
async fn the_queue_job_sends_what_is_due_and_gives_up_what_is_too_old() {
    use postern_entity::delivery;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    // The service's own queue loop must not take the delivery from under the job: retries and
    // polls are an hour apart here.
    let mut server = TestServer::start_with(&[
        ("queue.poll_interval", "3600"),
        ("queue.retry_initial", "3600"),
        ("queue.max_retry_interval", "3600"),
    ])
    .await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    server.sink.stop().await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "late", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let ctx = server.running().ctx.clone();
    // A first attempt made and finished (no longer claimed), so nothing overwrites what follows.
    let attempted = || async {
        delivery::Entity::find()
            .all(ctx.db())
            .await
            .expect("deliveries")
            .iter()
            .any(|d| d.attempts >= 1 && d.claimed_by.is_none())
    };
    wait_until("a first attempt, finished", attempted).await;
    // Its lifetime is over (made so), and it is due: the job's pass gives it up and tells the
    // owner, in the same commit.
    delivery::Entity::update_many()
        .col_expr(delivery::Column::ExpiresAt, Expr::value(0i64))
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(0i64))
        .col_expr(
            delivery::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        )
        .filter(delivery::Column::Status.eq(delivery::DeliveryStatus::Queued))
        .exec(ctx.db())
        .await
        .expect("expire");
    let done = Job::Queue.run_once(&ctx).await.expect("queue job");
    assert!(done.starts_with("started 1 due deliveries"), "{done}");
    wait_until("failed, with the owner's notice queued", || async {
        let rows = postern_tests::harness::deliveries(&server).await;
        rows.len() == 2 && rows[0].1 == "failed" && rows[1].0 == "me@real.test"
    })
    .await;
    // Once the relay is back, the next pass sends the notice.
    server.sink.resume().await;
    wait_until("the notice sent by a queue pass", || async {
        if !server.sink.received().is_empty() {
            return true;
        }
        delivery::Entity::update_many()
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(0i64))
            .filter(delivery::Column::Status.eq(delivery::DeliveryStatus::Queued))
            .filter(delivery::Column::ClaimedBy.is_null())
            .exec(ctx.db())
            .await
            .expect("due now");
        Job::Queue.run_once(&ctx).await.expect("queue job");
        false
    })
    .await;
    let notice = &server.sink.received()[0];
    assert_eq!(
        notice.header("Subject").as_deref(),
        Some("A message could not be delivered to me@real.test")
    );
}

#[tokio::test]
async fn retention_drops_sent_messages_and_keeps_those_still_queued() {
    let (mut server, alias) = server_with_alias().await;
    for n in 0..3 {
        let subject = format!("sent {n}");
        let r = client::send(
            server.smtp(),
            "bob@ext.test",
            &[&alias],
            &message("bob@ext.test", &alias, &subject, "hello"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    server.sink.wait_for(3, postern_tests::harness::WAIT).await;
    postern_tests::harness::settled(&server).await;
    // The relay goes away: the next message stays queued, its body needed.
    server.sink.stop().await;
    let r = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "waiting", "still to send"),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");

    let done = postern_domain::retention::prune(&server.running().ctx)
        .await
        .expect("retention");
    assert_eq!(done.messages, 3, "{done:?}");
    let stored = {
        use sea_orm::{EntityTrait, PaginatorTrait};
        postern_entity::message::Entity::find()
            .count(server.running().ctx.db())
            .await
            .expect("count")
    };
    assert_eq!(stored, 1, "only the queued message is kept");

    server.sink.resume().await;
    let got = server.sink.wait_for(4, postern_tests::harness::WAIT).await;
    assert!(got[3].text().contains("still to send"), "{}", got[3].text());

    // The minute's purge job deletes it once it is sent; the next pass finds nothing.
    postern_tests::harness::settled(&server).await;
    let ctx = &server.running().ctx;
    let out = Job::Purge.run_once(ctx).await.expect("purge");
    assert_eq!(out, "deleted 1 delivered messages");
    let out = Job::Purge.run_once(ctx).await.expect("purge");
    assert_eq!(out, "deleted 0 delivered messages");
}
