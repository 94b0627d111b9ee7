//! The quarantine: messages held instead of forwarded, listed, released or deleted by their
//! owner. A held message stays stored until it is released (then forwarded like any other,
//! marked) or deleted.

use postern_entity::delivery::{self, DeliveryKind};
use postern_entity::quarantine;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::context::Context;
use crate::delivery::queue::{self, NewDelivery};
use crate::flow::NewQuarantine;
use crate::{DomainError, Result};

/// Holds stored message `message_id` for the alias in `q` (inside the receiving commit).
pub async fn hold(db: &impl ConnectionTrait, message_id: i64, q: &NewQuarantine) -> Result<()> {
    quarantine::ActiveModel {
        user_id: Set(q.user_id),
        alias_id: Set(q.alias_id),
        message_id: Set(message_id),
        sender: Set(q.sender.clone()),
        subject: Set(q.subject.as_ref().map(|s| s.chars().take(500).collect())),
        reason: Set(q.reason.clone()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// A page (20, newest first) of the user's held messages.
pub async fn list(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: u64,
) -> Result<Vec<quarantine::Model>> {
    Ok(quarantine::Entity::find()
        .filter(quarantine::Column::UserId.eq(user_id))
        .order_by_desc(quarantine::Column::Id)
        .offset(page.saturating_mul(20))
        .limit(20)
        .all(db)
        .await?)
}

async fn owned(db: &impl ConnectionTrait, user_id: i64, id: i64) -> Result<quarantine::Model> {
    quarantine::Entity::find_by_id(id)
        .filter(quarantine::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or_else(|| DomainError::NotFound("quarantined message".into()))
}

/// Forwards a held message to its alias's mailboxes now (it carries the warning of a
/// message that failed its sender's DMARC check) and takes it out of the quarantine.
pub async fn release(ctx: &Context, user_id: i64, id: i64) -> Result<()> {
    let held = owned(ctx.db(), user_id, id).await?;
    let route = crate::pipeline::resolve::route_by_id(ctx, held.alias_id)
        .await?
        .ok_or_else(|| DomainError::NotFound("the alias of this message".into()))?;
    if route.forwards_to().next().is_none() {
        return Err(DomainError::Invalid(
            "the alias has no verified, enabled mailbox to release the message to".into(),
        ));
    }
    let deliveries: Vec<NewDelivery> = route
        .forwards_to()
        .map(|m| NewDelivery {
            kind: DeliveryKind::Forward,
            rcpt: m.email.clone(),
            user_id: Some(user_id),
            alias_id: Some(held.alias_id),
            contact_id: None,
        })
        .collect();
    let (c, message_id, held_id) = (ctx.clone(), held.message_id, held.id);
    let queued: Vec<delivery::Model> = ctx
        .writer()
        .write(move |txn| {
            let (c, deliveries) = (c.clone(), deliveries.clone());
            Box::pin(async move {
                let rows = queue::enqueue(
                    txn,
                    &c.settings().queue,
                    c.instance(),
                    message_id,
                    &deliveries,
                )
                .await?;
                quarantine::Entity::delete_by_id(held_id).exec(txn).await?;
                Ok(rows)
            })
        })
        .await?;
    crate::delivery::spawn(ctx, queued, None);
    Ok(())
}

/// Deletes a held message for good (its stored bytes go with the next housekeeping).
pub async fn delete(db: &impl ConnectionTrait, user_id: i64, id: i64) -> Result<()> {
    let held = owned(db, user_id, id).await?;
    quarantine::Entity::delete_by_id(held.id).exec(db).await?;
    Ok(())
}
