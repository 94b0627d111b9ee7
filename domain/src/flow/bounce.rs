//! Bounce: a report comes back to a delivery's VERP address, or a delivery fails for good.
//! Either way the delivery is marked, the alias's activity records it, and the owner is told
//! when it was their reply that did not arrive (or, for a failure, any delivery of theirs).

use postern_entity::activity::ActivityKind;
use postern_entity::delivery::{self, DeliveryKind, DeliveryStatus};
use postern_entity::{alias, user};
use sea_orm::{ConnectionTrait, EntityTrait};

use super::notice::{self, Notice, NoticeKind};
use super::{ContactRef, NewActivity, record};
use crate::Result;
use crate::accounts;
use crate::context::Context;
use crate::delivery::queue;
use crate::message::ParsedMessage;
use crate::verp::Verp;

/// Mail to the VERP address of one of our deliveries, inside the receiving transaction.
/// Returns the deliveries of the notices it queued.
pub async fn received(
    ctx: &Context,
    db: &impl ConnectionTrait,
    verp: &Verp,
    message: &ParsedMessage,
) -> Result<Vec<delivery::Model>> {
    let Some(d) = queue::find(db, verp.delivery_id).await? else {
        return Ok(Vec::new());
    };
    let Some(alias) = alias_of(db, &d).await? else {
        return Ok(Vec::new());
    };
    if !message.failure_report {
        // Delay warnings and auto-replies to the envelope sender are not bounces.
        let detail = format!("non-bounce mail to the bounce address of {}", d.rcpt);
        record(
            db,
            &activity(&alias, &d, ActivityKind::AutoReply, detail),
            None,
        )
        .await?;
        return Ok(Vec::new());
    }
    let detail = summary(message.raw());
    if d.status != DeliveryStatus::Bounced {
        queue::mark_bounced(db, d.id, &detail).await?;
    }
    let a = activity(
        &alias,
        &d,
        ActivityKind::Bounce,
        format!("{}: {detail}", d.rcpt),
    );
    record(db, &a, d.contact_id).await?;
    if d.kind != DeliveryKind::Reply {
        return Ok(Vec::new());
    }
    let Some(to) = owner_mailbox(db, alias.user_id).await? else {
        return Ok(Vec::new());
    };
    let text = format!(
        "Your message sent from {} to {} was returned by the recipient's server:\n\n{detail}",
        alias.email, d.rcpt
    );
    notice::store(ctx, db, &undelivered(&alias, to, text)).await
}

/// A delivery failed for good (refused, or out of time): inside the transaction that marks
/// it failed, record it and tell the owner. Never about a notice: that could loop.
pub async fn delivery_failed(
    ctx: &Context,
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    error: &str,
) -> Result<Vec<delivery::Model>> {
    if !queue::is_owner_mail(d.kind) {
        return Ok(Vec::new());
    }
    let (Some(user_id), Some(alias)) = (d.user_id, alias_of(db, d).await?) else {
        return Ok(Vec::new());
    };
    let a = activity(
        &alias,
        d,
        ActivityKind::Bounce,
        format!("{}: {error}", d.rcpt),
    );
    record(db, &a, d.contact_id).await?;
    let Some(to) = owner_mailbox(db, user_id).await? else {
        return Ok(Vec::new());
    };
    let text = match d.kind {
        DeliveryKind::Forward => format!(
            "A message sent to your alias {} could not be delivered to your mailbox {}.\n\n\
             The mailbox's server said:\n{error}",
            alias.email, d.rcpt
        ),
        _ => format!(
            "Your message sent from {} to {} could not be delivered.\n\n\
             The recipient's server said:\n{error}",
            alias.email, d.rcpt
        ),
    };
    notice::store(ctx, db, &undelivered(&alias, to, text)).await
}

fn activity(
    alias: &alias::Model,
    d: &delivery::Model,
    kind: ActivityKind,
    detail: String,
) -> NewActivity {
    NewActivity {
        user_id: alias.user_id,
        alias_id: alias.id,
        contact: d.contact_id.map_or(ContactRef::None, ContactRef::Id),
        kind,
        detail: Some(detail),
    }
}

fn undelivered(alias: &alias::Model, to: String, text: String) -> Notice {
    Notice {
        kind: NoticeKind::DeliveryFailed,
        user_id: Some(alias.user_id),
        alias_id: Some(alias.id),
        to,
        subject: "Undelivered message".into(),
        text,
    }
}

async fn alias_of(db: &impl ConnectionTrait, d: &delivery::Model) -> Result<Option<alias::Model>> {
    match d.alias_id {
        Some(id) => Ok(alias::Entity::find_by_id(id).one(db).await?),
        None => Ok(None),
    }
}

/// The user's default mailbox (or their first).
async fn owner_mailbox(db: &impl ConnectionTrait, user_id: i64) -> Result<Option<String>> {
    let Some(user) = user::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    let mailboxes = accounts::user_mailboxes(db, user_id).await?;
    Ok(mailboxes
        .iter()
        .find(|m| Some(m.id) == user.default_mailbox_id)
        .or_else(|| mailboxes.first())
        .map(|m| m.email.clone()))
}

/// The `Status:`/`Diagnostic-Code:` lines of a DSN, or its subject: enough for the owner.
fn summary(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(64 * 1024)]);
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("status:")
                || l.starts_with("diagnostic-code:")
                || l.starts_with("action:")
        })
        .take(6)
        .collect();
    if lines.is_empty() {
        lines = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("subject:"))
            .take(1)
            .collect();
    }
    let summary = lines.join("; ");
    if summary.is_empty() {
        "no details".to_string()
    } else {
        summary.chars().take(500).collect()
    }
}
