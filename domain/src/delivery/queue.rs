//! The delivery queue: one row per (message, recipient).
//!
//! A delivery is attempted by the instance that claims it. A claim names the instance and
//! lasts [`LEASE`] (renewed while a long send runs); a restarted instance releases its own
//! claims at once, and anyone else's expire with their lease. Fresh deliveries are inserted
//! already claimed by the instance that received them, which attempts them right after the
//! commit. On PostgreSQL, claims skip rows another worker has locked.

use std::time::Duration;

use postern_config::QueueSettings;
use postern_entity::delivery::{self, DeliveryKind, DeliveryStatus};
use postern_entity::{message, message_part};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::{DomainError, Result, now_ms};

/// Messages larger than this are stored in pieces of this size.
const PART_BYTES: usize = 1024 * 1024;

/// How long a claim keeps others away; renewed every [`RENEW_EVERY`] while a send runs.
pub const LEASE: Duration = Duration::from_secs(60);
pub const RENEW_EVERY: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub kind: DeliveryKind,
    pub rcpt: String,
    pub user_id: Option<i64>,
    pub alias_id: Option<i64>,
    pub contact_id: Option<i64>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Stores a message once; deliveries refer to it by the returned id.
pub async fn store_message(
    db: &impl ConnectionTrait,
    mail_from: Option<&str>,
    token: Option<&str>,
    client: Option<&(std::net::IpAddr, String)>,
    raw: Vec<u8>,
) -> Result<i64> {
    // Each layer under an insert (statement builder, driver, database) copies a value: a
    // large message goes in pieces, so only one piece is copied at a time.
    let parts = if raw.len() > PART_BYTES {
        raw.len().div_ceil(PART_BYTES)
    } else {
        0
    };
    let (inline, pieces) = if parts == 0 {
        (raw, Vec::new())
    } else {
        (Vec::new(), raw)
    };
    // `insert` would read the row back, body and all; only the id is needed.
    let row = message::ActiveModel {
        mail_from: Set(mail_from.map(str::to_string)),
        token: Set(token.map(str::to_string)),
        raw: Set(inline),
        created_at: Set(chrono::Utc::now()),
        parts: Set(i32::try_from(parts).unwrap_or(i32::MAX)),
        client_ip: Set(client.map(|(ip, _)| ip.to_string())),
        helo: Set(client.map(|(_, helo)| helo.clone())),
        ..Default::default()
    };
    let id = message::Entity::insert(row).exec(db).await?.last_insert_id;
    for (seq, piece) in pieces.chunks(PART_BYTES).enumerate() {
        let part = message_part::ActiveModel {
            message_id: Set(id),
            seq: Set(i32::try_from(seq).unwrap_or(i32::MAX)),
            bytes: Set(piece.to_vec()),
            ..Default::default()
        };
        message_part::Entity::insert(part)
            .exec_without_returning(db)
            .await?;
    }
    Ok(id)
}

/// Queues one delivery per recipient of stored message `message_id`, claimed by `instance`
/// for its first attempt right after the commit.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    settings: &QueueSettings,
    instance: &str,
    message_id: i64,
    deliveries: &[NewDelivery],
) -> Result<Vec<delivery::Model>> {
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let expires_at = now_ms.saturating_add(millis(settings.lifetime));
    let mut rows = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let row = delivery::ActiveModel {
            message_id: Set(message_id),
            user_id: Set(d.user_id),
            alias_id: Set(d.alias_id),
            contact_id: Set(d.contact_id),
            kind: Set(d.kind),
            rcpt: Set(d.rcpt.clone()),
            status: Set(DeliveryStatus::Queued),
            attempts: Set(1),
            next_attempt_at: Set(now_ms + millis(LEASE)),
            expires_at: Set(expires_at),
            last_error: Set(None),
            claimed_by: Set(Some(instance.to_string())),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
        rows.push(row);
    }
    Ok(rows)
}

/// Claims up to `limit` due deliveries (queued, and not under someone's live lease) for
/// `instance`, oldest first.
pub async fn claim_due(
    db: &impl ConnectionTrait,
    instance: &str,
    limit: u64,
) -> Result<Vec<delivery::Model>> {
    let now = now_ms();
    let mut due = Query::select();
    due.column(delivery::Column::Id)
        .from(delivery::Entity)
        .and_where(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .and_where(delivery::Column::NextAttemptAt.lte(now))
        .order_by(delivery::Column::NextAttemptAt, sea_orm::Order::Asc)
        .limit(limit);
    if crate::db::is_postgres(db) {
        due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    Ok(delivery::Entity::update_many()
        .col_expr(delivery::Column::ClaimedBy, Expr::value(instance))
        .col_expr(
            delivery::Column::NextAttemptAt,
            Expr::value(now + millis(LEASE)),
        )
        .col_expr(
            delivery::Column::Attempts,
            Expr::col(delivery::Column::Attempts).add(1),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(delivery::Column::Id.in_subquery(due.to_owned()))
        .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .exec_with_returning(db)
        .await?)
}

/// Extends `instance`'s claim on delivery `id` by a lease; false when it is no longer ours.
pub async fn renew(db: &impl ConnectionTrait, id: i64, instance: &str) -> Result<bool> {
    let result = delivery::Entity::update_many()
        .col_expr(
            delivery::Column::NextAttemptAt,
            Expr::value(now_ms() + millis(LEASE)),
        )
        .filter(delivery::Column::Id.eq(id))
        .filter(delivery::Column::ClaimedBy.eq(instance))
        .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Makes every delivery `instance` had claimed due now: it was attempting them when it
/// stopped, and nobody else is. Returns how many.
pub async fn release_claims(db: &impl ConnectionTrait, instance: &str) -> Result<u64> {
    let result = delivery::Entity::update_many()
        .col_expr(
            delivery::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(now_ms()))
        .filter(delivery::Column::ClaimedBy.eq(instance))
        .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Whether stored message `id` is large (kept in pieces: over [`PART_BYTES`]).
pub async fn is_large(db: &impl ConnectionTrait, id: i64) -> Result<bool> {
    let parts: Option<i32> = message::Entity::find_by_id(id)
        .select_only()
        .column(message::Column::Parts)
        .into_tuple()
        .one(db)
        .await?;
    Ok(parts.is_some_and(|p| p > 0))
}

/// A stored message with its bytes, put back together when it was stored in pieces.
pub async fn load_message(db: &impl ConnectionTrait, id: i64) -> Result<message::Model> {
    let mut stored = message::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("stored message {id}")))?;
    if stored.parts > 0 {
        let mut raw = Vec::with_capacity(usize::try_from(stored.parts).unwrap_or(0) * PART_BYTES);
        for seq in 0..stored.parts {
            let part = message_part::Entity::find()
                .filter(message_part::Column::MessageId.eq(id))
                .filter(message_part::Column::Seq.eq(seq))
                .one(db)
                .await?
                .ok_or_else(|| DomainError::NotFound(format!("piece {seq} of message {id}")))?;
            raw.extend_from_slice(&part.bytes);
        }
        stored.raw = raw;
    }
    Ok(stored)
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> Result<Option<delivery::Model>> {
    Ok(delivery::Entity::find_by_id(id).one(db).await?)
}

/// Sets the final status of a delivery this instance attempted.
async fn finish(
    db: &impl ConnectionTrait,
    id: i64,
    status: DeliveryStatus,
    error: Option<&str>,
) -> Result<()> {
    let mut update = delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, Expr::value(status))
        .col_expr(
            delivery::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(chrono::Utc::now()));
    if let Some(error) = error {
        update = update.col_expr(
            delivery::Column::LastError,
            Expr::value(error.chars().take(1000).collect::<String>()),
        );
    }
    update.filter(delivery::Column::Id.eq(id)).exec(db).await?;
    Ok(())
}

/// Marks every delivery in `ids` delivered, in one statement; with `claimed_by`, only those
/// still queued under that claim. Returns how many it changed.
pub async fn mark_delivered_many(
    db: &impl ConnectionTrait,
    ids: &[i64],
    claimed_by: Option<&str>,
) -> Result<u64> {
    let mut update = delivery::Entity::update_many()
        .col_expr(
            delivery::Column::Status,
            Expr::value(DeliveryStatus::Delivered),
        )
        .col_expr(
            delivery::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(delivery::Column::Id.is_in(ids.iter().copied()));
    if let Some(instance) = claimed_by {
        update = update
            .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
            .filter(delivery::Column::ClaimedBy.eq(instance));
    }
    Ok(update.exec(db).await?.rows_affected)
}

pub async fn mark_failed(db: &impl ConnectionTrait, id: i64, error: &str) -> Result<()> {
    finish(db, id, DeliveryStatus::Failed, Some(error)).await
}

pub async fn mark_bounced(db: &impl ConnectionTrait, id: i64, detail: &str) -> Result<()> {
    finish(db, id, DeliveryStatus::Bounced, Some(detail)).await
}

/// What became of a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    At(i64),
    /// The queue lifetime is over: the caller fails it.
    GaveUp,
}

/// Schedules the next attempt with exponential backoff and releases the claim, or gives up
/// once the lifetime is over.
pub async fn retry_later(
    db: &impl ConnectionTrait,
    settings: &QueueSettings,
    d: &delivery::Model,
    error: &str,
) -> Result<Retry> {
    let next = now_ms().saturating_add(millis(backoff(settings, d.attempts)));
    if next > d.expires_at {
        return Ok(Retry::GaveUp);
    }
    delivery::Entity::update_many()
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(next))
        .col_expr(
            delivery::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery::Column::LastError,
            Expr::value(error.chars().take(1000).collect::<String>()),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(delivery::Column::Id.eq(d.id))
        .exec(db)
        .await?;
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

/// Drops up to `limit` stored messages (oldest first) that no queued delivery needs any more
/// and no quarantine entry or kept bounce holds, with their pieces; returns how many.
pub async fn purge_finished_messages(db: &impl ConnectionTrait, limit: u64) -> Result<u64> {
    let still_needed = Query::select()
        .column(delivery::Column::MessageId)
        .from(delivery::Entity)
        .and_where(Expr::col(delivery::Column::Status).eq(DeliveryStatus::Queued))
        .to_owned();
    let held = Query::select()
        .column(postern_entity::quarantine::Column::MessageId)
        .from(postern_entity::quarantine::Entity)
        .to_owned();
    let refused = Query::select()
        .column(postern_entity::bounce::Column::MessageId)
        .from(postern_entity::bounce::Entity)
        .and_where(Expr::col(postern_entity::bounce::Column::MessageId).is_not_null())
        .to_owned();
    let ids: Vec<i64> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .filter(message::Column::Id.not_in_subquery(still_needed))
        .filter(message::Column::Id.not_in_subquery(held))
        .filter(message::Column::Id.not_in_subquery(refused))
        .order_by_asc(message::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    message_part::Entity::delete_many()
        .filter(message_part::Column::MessageId.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    let result = message::Entity::delete_many()
        .filter(message::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The queue at a glance: how many deliveries wait, and since when the oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueHealth {
    pub queued: u64,
    /// Seconds since the oldest waiting delivery was queued (0 when none waits).
    pub oldest_age_seconds: i64,
    /// Of those, how many are due now (not waiting for a retry time).
    pub due: u64,
}

pub async fn health(db: &impl ConnectionTrait) -> Result<QueueHealth> {
    use sea_orm::PaginatorTrait;
    let queued = delivery::Entity::find()
        .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .count(db)
        .await?;
    let due = delivery::Entity::find()
        .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .filter(delivery::Column::NextAttemptAt.lte(now_ms()))
        .count(db)
        .await?;
    let oldest: Option<chrono::DateTime<chrono::Utc>> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::CreatedAt)
        .filter(delivery::Column::Status.eq(DeliveryStatus::Queued))
        .order_by_asc(delivery::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(QueueHealth {
        queued,
        due,
        oldest_age_seconds: oldest.map_or(0, |t| {
            std::cmp::max((chrono::Utc::now() - t).num_seconds(), 0)
        }),
    })
}

/// Kinds whose failure is told to the alias's owner.
pub fn is_owner_mail(kind: DeliveryKind) -> bool {
    matches!(kind, DeliveryKind::Forward | DeliveryKind::Reply)
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
