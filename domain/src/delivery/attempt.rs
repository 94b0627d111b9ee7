//! One attempt of one delivery: render what is sent from the stored message (pure CPU work,
//! on the blocking pool, outside any transaction), send it, and record the outcome through
//! the group-commit writer.

use std::sync::Arc;

use postern_entity::delivery::{self, DeliveryKind};

use crate::context::Context;
use crate::delivery::queue::{self, Retry};
use crate::flow;
use crate::message::ParsedMessage;
use crate::outbound::SendError;
use crate::verp::Verp;
use crate::{DomainError, Result};

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    Retrying(String),
    Failed(String),
}

/// A stored message in memory: what a first attempt renders from without reading it back.
#[derive(Debug)]
pub struct Source {
    pub message: ParsedMessage,
    /// The envelope sender it arrived with.
    pub mail_from: String,
    /// Its token: the Message-ID of what is rendered from it, where one is needed.
    pub token: String,
    /// The client that delivered it (address, HELO name); `None` for our own notices.
    pub client: Option<(std::net::IpAddr, String)>,
    /// What receiving it learnt about its correspondents, per alias: a first attempt renders
    /// with it instead of asking the database again.
    pub facts: std::sync::Mutex<std::collections::HashMap<i64, Arc<flow::forward::Facts>>>,
}

impl Source {
    async fn load(ctx: &Context, message_id: i64) -> Result<Self> {
        let stored = queue::load_message(ctx.db(), message_id).await?;
        Ok(Self {
            message: ParsedMessage::parse(stored.raw)?,
            mail_from: stored.mail_from.unwrap_or_default(),
            token: stored.token.unwrap_or_else(|| format!("m{message_id}")),
            client: stored
                .client_ip
                .and_then(|ip| ip.parse().ok())
                .map(|ip| (ip, stored.helo.unwrap_or_default())),
            facts: Default::default(),
        })
    }

    /// The facts receiving it gathered for `alias_id`, if it was received by this process.
    pub fn facts(&self, alias_id: i64) -> Option<Arc<flow::forward::Facts>> {
        let facts = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        facts.get(&alias_id).cloned()
    }

    pub(crate) fn keep_facts(&self, alias_id: i64, facts: Arc<flow::forward::Facts>) {
        let mut kept = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        kept.insert(alias_id, facts);
    }
}

/// Starts the attempts of freshly committed (and already claimed) deliveries, off the caller.
pub fn spawn(ctx: &Context, deliveries: Vec<delivery::Model>, source: Option<Arc<Source>>) {
    for d in deliveries {
        let ctx = ctx.clone();
        let source = source.clone();
        tokio::spawn(async move {
            let id = d.id;
            tokio::select! {
                result = attempt(&ctx, d, source) => if let Err(e) = result {
                    tracing::warn!(delivery = id, error = %e, "delivery attempt not recorded; it resumes after its lease");
                },
                () = ctx.stopping() => return,
            }
            // A slot is free again: the queue runner may take the next due delivery.
            ctx.wake().notify_one();
        });
    }
}

/// Claims due deliveries, as many as there are free delivery slots (at most `limit`), and
/// starts their attempts; returns how many. A slow recipient never holds up the others.
pub async fn run_due(ctx: &Context, limit: u64) -> Result<usize> {
    let free = u64::try_from(ctx.delivery_slots().available_permits()).unwrap_or(0);
    let limit = limit.min(free);
    if limit == 0 {
        return Ok(0);
    }
    let instance = ctx.instance().to_string();
    let claimed = ctx
        .writer()
        .write(move |txn| {
            let instance = instance.clone();
            Box::pin(async move { queue::claim_due(txn, &instance, limit).await })
        })
        .await?;
    let n = claimed.len();
    spawn(ctx, claimed, None);
    Ok(n)
}

/// Attempts delivery `d`, which this instance has claimed.
pub async fn attempt(
    ctx: &Context,
    d: delivery::Model,
    source: Option<Arc<Source>>,
) -> Result<Attempt> {
    let slot = Arc::clone(ctx.delivery_slots())
        .acquire_owned()
        .await
        .map_err(|_| DomainError::Unavailable("delivery slots closed".into()))?;
    // A large message is read back, rewritten and signed in several copies: at most as many
    // of those at once as there are cores, so ten concurrent 25 MiB messages do not hold
    // thirty copies at the same moment.
    let large = if source.is_none() && queue::is_large(ctx.db(), d.message_id).await? {
        Some(
            ctx.large_message_slots()
                .acquire()
                .await
                .map_err(|_| DomainError::Unavailable("large message slots closed".into()))?,
        )
    } else {
        None
    };
    let source = match source {
        Some(source) => source,
        None => match Source::load(ctx, d.message_id).await {
            Ok(source) => Arc::new(source),
            Err(DomainError::MalformedMessage(e)) => return fail(ctx, &d, &e).await,
            Err(e) => return retry(ctx, &d, &e.to_string()).await,
        },
    };
    let body = match render(ctx, &d, source).await {
        Ok(body) => body,
        Err(e) if e.is_transient() => return retry(ctx, &d, &e.to_string()).await,
        Err(e) => return fail(ctx, &d, &e.to_string()).await,
    };
    let mail_from = Verp::address(ctx.verp_key(), d.id, &ctx.settings().mail.reply_domain);
    match send_renewing(ctx, &d, &mail_from, &body).await {
        Ok(()) => {
            let id = d.id;
            // Noted at once, so a kill before the commit below does not send it again.
            let _noted = ctx.sent_journal().record(id);
            // The send is over: the next one need not wait for this status's commit.
            drop((large, slot, body));
            ctx.delivered().mark(id).await?;
            Ok(Attempt::Delivered)
        }
        Err(SendError::Permanent(e)) => fail(ctx, &d, &e).await,
        Err(SendError::Temporary(e)) => retry(ctx, &d, &e).await,
    }
}

/// What is sent for `d`: rendered from its stored message by its flow.
async fn render(ctx: &Context, d: &delivery::Model, source: Arc<Source>) -> Result<Vec<u8>> {
    match d.kind {
        DeliveryKind::Prepared | DeliveryKind::Postmaster => Ok(source.message.raw().to_vec()),
        DeliveryKind::Notice => flow::notice::render(ctx, source).await,
        DeliveryKind::Forward => flow::forward::render(ctx, d, source).await,
        DeliveryKind::Reply => flow::reply::render(ctx, d, source).await,
    }
}

/// Sends, renewing the claim's lease while the send runs.
async fn send_renewing(
    ctx: &Context,
    d: &delivery::Model,
    mail_from: &str,
    body: &[u8],
) -> Result<(), SendError> {
    let send = ctx.outbound().send(mail_from, &d.rcpt, body);
    tokio::pin!(send);
    let mut renew = tokio::time::interval_at(
        tokio::time::Instant::now() + queue::RENEW_EVERY,
        queue::RENEW_EVERY,
    );
    loop {
        tokio::select! {
            sent = &mut send => return sent,
            _ = renew.tick() => {
                let (id, instance) = (d.id, ctx.instance().to_string());
                let renewed = ctx
                    .writer()
                    .write(move |txn| {
                        let instance = instance.clone();
                        Box::pin(async move { queue::renew(txn, id, &instance).await })
                    })
                    .await;
                if let Err(e) = renewed {
                    tracing::warn!(delivery = d.id, error = %e, "lease not renewed");
                }
            }
        }
    }
}

async fn retry(ctx: &Context, d: &delivery::Model, error: &str) -> Result<Attempt> {
    let (settings, row, e) = (ctx.settings().queue.clone(), d.clone(), error.to_string());
    let retry = ctx
        .writer()
        .write(move |txn| {
            let (settings, row, e) = (settings.clone(), row.clone(), e.clone());
            Box::pin(async move { queue::retry_later(txn, &settings, &row, &e).await })
        })
        .await?;
    match retry {
        Retry::At(_) => Ok(Attempt::Retrying(error.to_string())),
        Retry::GaveUp => {
            let error = format!("gave up after {} attempts: {error}", d.attempts);
            fail(ctx, d, &error).await
        }
    }
}

/// Marks `d` failed and, in the same transaction, tells its owner: a failure is never
/// recorded without its notice.
async fn fail(ctx: &Context, d: &delivery::Model, error: &str) -> Result<Attempt> {
    let (c, row, e) = (ctx.clone(), d.clone(), error.to_string());
    let notices = ctx
        .writer()
        .write(move |txn| {
            let (c, row, e) = (c.clone(), row.clone(), e.clone());
            Box::pin(async move {
                queue::mark_failed(txn, row.id, &e).await?;
                flow::bounce::delivery_failed(&c, txn, &row, &e).await
            })
        })
        .await?;
    spawn(ctx, notices, None);
    Ok(Attempt::Failed(error.to_string()))
}
