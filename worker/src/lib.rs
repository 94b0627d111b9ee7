//! Background work: the delivery queue runner and scheduled housekeeping.
//!
//! Each job is one step (`run_due`, `housekeeping`) that tests call directly; this crate only
//! decides when the steps run.

use std::future::Future;
use std::time::Duration;

use postern_domain::mailflow::Mailflow;
use postern_domain::queue;
use tokio_cron_scheduler::{Job, JobScheduler};

/// How many due deliveries one pass of the queue runner attempts.
const BATCH: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// Runs the queue and the scheduled jobs until `shutdown` completes.
pub async fn run(flow: Mailflow, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let mut scheduler = JobScheduler::new().await?;
    let housekeeping_flow = flow.clone();
    scheduler
        .add(Job::new_async("0 */10 * * * *", move |_, _| {
            let flow = housekeeping_flow.clone();
            Box::pin(async move {
                housekeeping(&flow).await;
            })
        })?)
        .await?;
    scheduler.start().await?;

    tokio::pin!(shutdown);
    let poll = flow.settings().queue.poll_interval;
    loop {
        let attempted = match flow.run_due(BATCH).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "queue pass failed");
                0
            }
        };
        if attempted as u64 >= BATCH {
            continue; // more may be due right now
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = flow.wake().notified() => {}
            _ = tokio::time::sleep(poll.min(Duration::from_secs(60))) => {}
        }
    }
    scheduler.shutdown().await?;
    Ok(())
}

/// Drops the bodies of messages whose deliveries are all finished.
pub async fn housekeeping(flow: &Mailflow) {
    match queue::purge_finished_bodies(flow.db()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "purged delivered message bodies"),
        Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
    }
}
