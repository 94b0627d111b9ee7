//! Background work: the delivery queue runner and scheduled housekeeping.
//!
//! Each job is one step (`run_due`, `housekeeping`) that tests call directly; this crate only
//! decides when the steps run.

use std::future::Future;
use std::time::Duration;

use postern_domain::Context;
use postern_domain::delivery::{self, queue};
use tokio_cron_scheduler::{Job, JobScheduler};

/// How many due deliveries one pass of the queue runner claims at most.
const BATCH: u64 = 200;
/// The longest pause between passes while there is a backlog.
const BUSY_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// Runs the queue and the scheduled jobs until `shutdown` completes.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let mut scheduler = JobScheduler::new().await?;
    let housekeeping_ctx = ctx.clone();
    scheduler
        .add(Job::new_async("0 */10 * * * *", move |_, _| {
            let ctx = housekeeping_ctx.clone();
            Box::pin(async move {
                housekeeping(&ctx).await;
            })
        })?)
        .await?;
    scheduler.start().await?;

    tokio::pin!(shutdown);
    let poll = ctx.settings().queue.poll_interval;
    loop {
        let claimed = match delivery::run_due(&ctx, BATCH).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "queue pass failed");
                0
            }
        };
        // While there is a backlog, take more as attempts end; otherwise poll.
        let busy = claimed > 0 || ctx.free_delivery_slots() == 0;
        let pause = if busy {
            BUSY_POLL
        } else {
            poll.min(Duration::from_secs(60))
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ctx.wake().notified(), if busy => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    scheduler.shutdown().await?;
    Ok(())
}

/// What one housekeeping pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Housekept {
    pub messages: u64,
    pub unverified_mailboxes: u64,
    pub unactivated_accounts: u64,
    pub auth_attempts: u64,
}

/// Drops the stored messages whose deliveries are all finished, unverified mailboxes and
/// never-activated accounts past `accounts.unverified_days`, and counted sign-in attempts
/// older than a day.
pub async fn housekeeping(ctx: &Context) -> Housekept {
    let db = ctx.db();
    let mut done = Housekept::default();
    match queue::purge_finished_messages(db).await {
        Ok(n) => done.messages = n,
        Err(e) => tracing::warn!(error = %e, "housekeeping: purging messages failed"),
    }
    let lifetime = ctx.settings().accounts.unverified_lifetime;
    let purged = async {
        let txn = postern_domain::db::begin_write(db).await?;
        let counts = postern_domain::accounts::purge_unverified(&txn, lifetime).await?;
        txn.commit().await?;
        Ok::<_, postern_domain::DomainError>(counts)
    };
    match purged.await {
        Ok((mailboxes, accounts)) => {
            done.unverified_mailboxes = mailboxes;
            done.unactivated_accounts = accounts;
        }
        Err(e) => tracing::warn!(error = %e, "housekeeping: purging unverified failed"),
    }
    match postern_domain::auth::purge_attempts(db, chrono::Duration::days(1)).await {
        Ok(n) => done.auth_attempts = n,
        Err(e) => tracing::warn!(error = %e, "housekeeping: purging attempts failed"),
    }
    if done != Housekept::default() {
        tracing::info!(?done, "housekeeping");
    }
    done
}
