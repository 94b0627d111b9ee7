//! The delivery queue: one row per (message, recipient), claimed by compare-and-set so that
//! any number of workers (and the gateway's immediate first attempt) never send one delivery
//! twice at the same time.

use std::time::Duration;

use postern_config::QueueSettings;
use postern_entity::{delivery, outbound_message};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::{DomainError, Result, now_ms};

pub const QUEUED: &str = "queued";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
pub const BOUNCED: &str = "bounced";

/// How long a claimed delivery stays reserved for the claimant (longer than any SMTP session).
pub const LEASE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Forward,
    Reply,
    /// A message from Postern itself to an owner (failure notices and the like).
    Notice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Forward => "forward",
            Kind::Reply => "reply",
            Kind::Notice => "notice",
        }
    }

    pub fn parse(s: &str) -> Kind {
        match s {
            "forward" => Kind::Forward,
            "reply" => Kind::Reply,
            _ => Kind::Notice,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub kind: Kind,
    pub rcpt: String,
    pub user_id: Option<i64>,
    pub alias_id: Option<i64>,
    pub contact_id: Option<i64>,
}

/// Stores `body` once and one delivery per recipient; returns the delivery ids.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    settings: &QueueSettings,
    body: Vec<u8>,
    deliveries: &[NewDelivery],
) -> Result<Vec<i64>> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let now = chrono::Utc::now();
    let message = outbound_message::ActiveModel {
        body: Set(body),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let now_ms = now.timestamp_millis();
    let expires_at = now_ms + i64::try_from(settings.lifetime.as_millis()).unwrap_or(i64::MAX / 2);
    let mut ids = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let row = delivery::ActiveModel {
            message_id: Set(message.id),
            user_id: Set(d.user_id),
            alias_id: Set(d.alias_id),
            contact_id: Set(d.contact_id),
            kind: Set(d.kind.as_str().to_string()),
            rcpt: Set(d.rcpt.clone()),
            status: Set(QUEUED.to_string()),
            attempts: Set(0),
            next_attempt_at: Set(now_ms),
            expires_at: Set(expires_at),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
        ids.push(row.id);
    }
    Ok(ids)
}

/// Ids of deliveries whose next attempt is due, oldest first.
pub async fn due(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<i64>> {
    Ok(delivery::Entity::find()
        .select_only()
        .column(delivery::Column::Id)
        .filter(delivery::Column::Status.eq(QUEUED))
        .filter(delivery::Column::NextAttemptAt.lte(now_ms()))
        .order_by_asc(delivery::Column::NextAttemptAt)
        .limit(limit)
        .into_tuple::<i64>()
        .all(db)
        .await?)
}

/// Reserves a due delivery for one attempt. `None` when it is not due or someone else has it.
pub async fn claim(db: &impl ConnectionTrait, id: i64) -> Result<Option<delivery::Model>> {
    let now = now_ms();
    let lease_until = now + i64::try_from(LEASE.as_millis()).unwrap_or(0);
    let result = delivery::Entity::update_many()
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(lease_until))
        .col_expr(
            delivery::Column::Attempts,
            Expr::col(delivery::Column::Attempts).add(1),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(delivery::Column::Id.eq(id))
        .filter(delivery::Column::Status.eq(QUEUED))
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok(None);
    }
    Ok(delivery::Entity::find_by_id(id).one(db).await?)
}

pub async fn body(db: &impl ConnectionTrait, message_id: i64) -> Result<Vec<u8>> {
    outbound_message::Entity::find_by_id(message_id)
        .one(db)
        .await?
        .map(|m| m.body)
        .ok_or_else(|| DomainError::NotFound(format!("queued message {message_id}")))
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> Result<Option<delivery::Model>> {
    Ok(delivery::Entity::find_by_id(id).one(db).await?)
}

async fn set_status(
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    status: &str,
    error: Option<String>,
) -> Result<()> {
    let mut active: delivery::ActiveModel = d.clone().into();
    active.status = Set(status.to_string());
    if error.is_some() {
        active.last_error = Set(error.map(|e| e.chars().take(1000).collect()));
    }
    active.updated_at = Set(chrono::Utc::now());
    active.update(db).await?;
    Ok(())
}

pub async fn mark_delivered(db: &impl ConnectionTrait, d: &delivery::Model) -> Result<()> {
    set_status(db, d, DELIVERED, None).await
}

pub async fn mark_failed(
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    error: &str,
) -> Result<()> {
    set_status(db, d, FAILED, Some(error.to_string())).await
}

pub async fn mark_bounced(
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    detail: &str,
) -> Result<()> {
    set_status(db, d, BOUNCED, Some(detail.to_string())).await
}

/// What became of a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    At(i64),
    /// The queue lifetime is over: the delivery is now failed.
    GaveUp,
}

/// Schedules the next attempt with exponential backoff, or gives up once the lifetime is over.
pub async fn retry_later(
    db: &impl ConnectionTrait,
    settings: &QueueSettings,
    d: &delivery::Model,
    error: &str,
) -> Result<Retry> {
    let delay = backoff(settings, d.attempts);
    let next = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
    if next > d.expires_at {
        // The caller fails it together with telling the owner.
        return Ok(Retry::GaveUp);
    }
    let mut active: delivery::ActiveModel = d.clone().into();
    active.next_attempt_at = Set(next);
    active.last_error = Set(Some(error.chars().take(1000).collect()));
    active.updated_at = Set(chrono::Utc::now());
    active.update(db).await?;
    Ok(Retry::At(next))
}

/// `initial × 2^(attempts-1)`, capped.
pub fn backoff(settings: &QueueSettings, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    settings
        .retry_initial
        .saturating_mul(2u32.saturating_pow(exp))
        .min(settings.max_retry_interval)
}

/// Drops message bodies that no queued delivery needs any more; returns how many.
pub async fn purge_finished_bodies(db: &impl ConnectionTrait) -> Result<u64> {
    use sea_orm::sea_query::Query;
    let still_needed = Query::select()
        .column(delivery::Column::MessageId)
        .from(delivery::Entity)
        .and_where(Expr::col(delivery::Column::Status).eq(QUEUED))
        .to_owned();
    let result = outbound_message::Entity::delete_many()
        .filter(outbound_message::Column::Id.not_in_subquery(still_needed))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = QueueSettings {
            retry_initial: Duration::from_secs(60),
            max_retry_interval: Duration::from_secs(3600),
            lifetime: Duration::from_secs(86400),
            poll_interval: Duration::from_secs(1),
        };
        let delays: Vec<u64> = (1..=9).map(|a| backoff(&s, a).as_secs()).collect();
        assert_eq!(delays, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(&s, i32::MAX).as_secs(), 3600);
    }
}
