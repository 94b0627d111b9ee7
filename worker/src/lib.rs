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

/// Drops the stored messages whose deliveries are all finished.
pub async fn housekeeping(ctx: &Context) {
    match queue::purge_finished_messages(ctx.db()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "purged delivered messages"),
        Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
    }
}
