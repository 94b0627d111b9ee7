//! Background work: the delivery queue runner and the scheduled jobs.
//!
//! Each job is one step, [`Job::run_once`], returning what it did: tests and
//! `postern worker run JOB` call it directly, and the scheduler ([`schedule`]) only decides
//! when it runs. Where several workers share a database, a lease row lets one of them run a
//! given job at a time ([`lease`]). The mail logic the jobs call lives in the domain crate.

pub mod lease;

use std::future::Future;
use std::time::Duration;

use postern_domain::Context;
use postern_domain::delivery::{self, queue};
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};

/// How many due deliveries one pass of the queue runner claims at most.
const BATCH: u64 = 200;
/// The longest pause between passes while there is a backlog.
const BUSY_POLL: Duration = Duration::from_secs(1);
/// How long a job's lease lasts: longer than any run takes (a crashed holder's runs out).
const LEASE_MS: i64 = 30 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("{0}")]
    Domain(#[from] postern_domain::DomainError),
    #[error("no job named `{0}`; the jobs are: {1}")]
    UnknownJob(String, String),
}

/// The scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Due deliveries (the runner loop does this continuously; the schedule is a backstop),
    /// and expiry of those past the queue lifetime, with the owner's notice.
    Queue,
    /// Deletes the bodies of delivered mail, every minute: mail is kept only while it may
    /// still be sent.
    Purge,
    /// Prunes activity (counters kept), quarantined and refused messages, delivered bodies,
    /// expired sessions and tokens, VERP records past their lifetime, unverified accounts.
    Retention,
    /// DKIM rotation: new keys when the active ones are `dkim.rotation_days` old, activated
    /// once their records are in DNS, old ones removed after the overlap.
    Dkim,
    /// Checks the DNS records of every domain we serve (`postern domain check`).
    Dns,
}

impl Job {
    pub const ALL: [Job; 5] = [Job::Queue, Job::Purge, Job::Retention, Job::Dkim, Job::Dns];

    pub fn name(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Purge => "purge",
            Self::Retention => "retention",
            Self::Dkim => "dkim",
            Self::Dns => "dns",
        }
    }

    /// When it runs (cron, with seconds).
    pub fn schedule(self) -> &'static str {
        match self {
            Self::Queue => "30 * * * * *",
            Self::Purge => "15 * * * * *",
            Self::Retention => "0 */10 * * * *",
            Self::Dkim => "0 5 * * * *",
            Self::Dns => "0 30 3 * * *",
        }
    }

    pub fn parse(name: &str) -> Result<Self, WorkerError> {
        Self::ALL
            .into_iter()
            .find(|j| j.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|j| j.name()).collect();
                WorkerError::UnknownJob(name.to_string(), names.join(", "))
            })
    }

    /// Runs the job once, here and now; returns what it did.
    pub async fn run_once(self, ctx: &Context) -> Result<String, WorkerError> {
        Ok(match self {
            Self::Queue => {
                let claimed = delivery::run_due(ctx, BATCH).await?;
                let health = queue::health(ctx.db()).await?;
                format!(
                    "started {claimed} due deliveries; {} queued, oldest {} s",
                    health.queued, health.oldest_age_seconds
                )
            }
            Self::Purge => {
                let purged = postern_domain::retention::purge_delivered(ctx).await?;
                format!("deleted {purged} delivered messages")
            }
            Self::Retention => postern_domain::retention::prune(ctx).await?.to_string(),
            Self::Dkim => postern_domain::dkim::rotation_job(ctx).await?.to_string(),
            Self::Dns => postern_domain::dnscheck::check_all(ctx).await?,
        })
    }

    /// Runs the job if no other worker is running it; `None` when another one holds it.
    pub async fn run_leased(self, ctx: &Context) -> Result<Option<String>, WorkerError> {
        let db = ctx.db();
        if !lease::acquire(db, self.name(), ctx.instance(), LEASE_MS).await? {
            return Ok(None);
        }
        let result = self.run_once(ctx).await;
        let summary = match &result {
            Ok(done) => done.clone(),
            Err(e) => format!("failed: {e}"),
        };
        lease::release(db, self.name(), ctx.instance(), &summary).await?;
        result.map(Some)
    }
}

/// The scheduler with every job registered (not started yet), and when each runs next.
pub struct Schedule {
    pub scheduler: JobScheduler,
    pub next: Vec<(Job, chrono::DateTime<chrono::Utc>)>,
}

/// Registers every job with the scheduler.
pub async fn schedule(ctx: &Context) -> Result<Schedule, WorkerError> {
    let mut scheduler = JobScheduler::new().await?;
    let mut next = Vec::new();
    for job in Job::ALL {
        let ctx = ctx.clone();
        let id = scheduler
            .add(CronJob::new_async(job.schedule(), move |_, _| {
                let ctx = ctx.clone();
                Box::pin(async move {
                    match job.run_leased(&ctx).await {
                        Ok(Some(done)) => tracing::info!(job = job.name(), %done, "job ran"),
                        Ok(None) => tracing::debug!(job = job.name(), "job runs elsewhere"),
                        Err(e) => tracing::warn!(job = job.name(), error = %e, "job failed"),
                    }
                })
            })?)
            .await?;
        if let Some(at) = scheduler.next_tick_for_job(id).await? {
            next.push((job, at));
        }
    }
    Ok(Schedule { scheduler, next })
}

/// Runs the queue and the scheduled jobs until `shutdown` completes.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    lease::release_own(ctx.db(), ctx.instance()).await?;
    let mut scheduler = schedule(&ctx).await?.scheduler;
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

/// The queue and every job's last run, for `postern worker status`.
pub async fn status(ctx: &Context) -> Result<String, WorkerError> {
    let health = queue::health(ctx.db()).await?;
    let mut out = format!(
        "queue: {} queued ({} due now), oldest {} s\n",
        health.queued, health.due, health.oldest_age_seconds
    );
    let leases = lease::all(ctx.db()).await?;
    for job in Job::ALL {
        match leases.iter().find(|l| l.name == job.name()) {
            Some(l) => out.push_str(&format!(
                "{}: last run {} — {}\n",
                job.name(),
                l.last_run_at
                    .map_or_else(|| "never".to_string(), |t| t.to_rfc3339()),
                l.last_result.as_deref().unwrap_or("running")
            )),
            None => out.push_str(&format!("{}: never run\n", job.name())),
        }
    }
    Ok(out)
}
