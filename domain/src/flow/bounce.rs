//! Bounce: a report comes back to a delivery's VERP address, or a delivery is refused for
//! good. Either way it is classified (hard, soft, complaint), recorded on the delivery, in
//! the bounces and in the alias's activity, and the owner is told. A mailbox that keeps
//! saying it is gone or full stops receiving forwards.
//!
//! What is mail to a bounce address and what is not:
//! - a VERP address whose MAC does not verify is refused at RCPT (`550 5.1.1`);
//! - one older than `retention.bounce_address_days` (or whose delivery was pruned) is
//!   accepted and changes nothing;
//! - an automatic reply (`Auto-Submitted`, a vacation notice) is not a bounce: it is routed
//!   to the person it is for (see [`super::autoreply`]).

use postern_entity::activity::ActivityKind;
use postern_entity::delivery::{self, DeliveryKind, DeliveryStatus};
use postern_entity::{alias, alias_mailbox, bounce, contact, mailbox, message, user};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
};

use super::notice::{self, Notice, NoticeKind};
use super::{ContactRef, NewActivity, record};
use crate::Result;
use crate::accounts;
use crate::action::Action;
use crate::context::Context;
use crate::delivery::Source;
use crate::delivery::queue;
use crate::dsn::{self, Class, ReportKind};
use crate::verp::Verp;

/// What a bounce says about one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub class: Class,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    /// The mailbox is gone or full (5.1.x, 5.2.x): counted toward disabling it.
    pub mailbox_gone: bool,
}

impl Finding {
    /// From the words of a refusal our own attempt received (`550 5.1.1 …`).
    pub fn from_refusal(error: &str) -> Self {
        let status = dsn::enhanced_code(error);
        let status = status.or_else(|| {
            error
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 3 && w.starts_with('5'))
                .map(|_| "5.0.0".to_string())
        });
        let rs = dsn::RecipientStatus {
            status: status.clone(),
            action: Some("failed".into()),
            ..Default::default()
        };
        Self {
            class: Class::Hard,
            mailbox_gone: rs.mailbox_gone(),
            status,
            diagnostic: Some(error.chars().take(1000).collect()),
            remote_mta: None,
        }
    }

    /// What the remote server said, made safe to quote: one line, printable, at most 300
    /// characters (it is the other side's text, in a message Postern signs).
    fn summary(&self) -> String {
        let said = match (&self.status, &self.diagnostic) {
            (Some(s), Some(d)) if d.contains(s.as_str()) => d.clone(),
            (Some(s), Some(d)) => format!("{s} {d}"),
            (Some(s), None) => s.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => return "no details given".into(),
        };
        let clean: String = said
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        format!("\"{}\"", clean.trim())
    }
}

/// Mail to the VERP address of one of our deliveries, inside the receiving transaction.
/// Returns the deliveries it queued (notices, a routed automatic reply).
pub async fn received(
    ctx: &Context,
    db: &impl ConnectionTrait,
    verp: &Verp,
    source: &Source,
    from_authenticated: bool,
) -> Result<Vec<delivery::Model>> {
    let message = &source.message;
    let Some(d) = queue::find(db, verp.delivery_id).await? else {
        tracing::info!(
            delivery = verp.delivery_id,
            "mail to a bounce address whose delivery is no longer kept: ignored"
        );
        return Ok(Vec::new());
    };
    let lifetime = chrono::Duration::from_std(ctx.settings().retention.bounce_address)
        .unwrap_or(chrono::Duration::days(12));
    if chrono::Utc::now() - d.created_at > lifetime {
        tracing::info!(delivery = d.id, "mail to a stale bounce address: ignored");
        return Ok(Vec::new());
    }
    let report = dsn::read(message.raw());
    let about = report.about(&d.rcpt).cloned().unwrap_or_default();
    // A report whose block for this recipient says it was delivered or relayed is no bounce.
    let delivered = about.status.as_deref().is_some_and(|s| s.starts_with('2'))
        || matches!(
            about.action.as_deref(),
            Some("delivered" | "relayed" | "expanded")
        );
    let class = match report.kind {
        ReportKind::Complaint => Class::Complaint,
        ReportKind::Delay => Class::Soft,
        _ => about.class(),
    };
    let finding = Finding {
        class,
        mailbox_gone: class == Class::Hard && about.mailbox_gone(),
        status: about.status,
        diagnostic: about.diagnostic,
        remote_mta: about.remote_mta,
    };
    match report.kind {
        ReportKind::Complaint => apply(ctx, db, &d, &finding, Some(message.raw())).await,
        ReportKind::Failure | ReportKind::Delay if !delivered => {
            let kept = (class == Class::Hard).then(|| message.raw());
            apply(ctx, db, &d, &finding, kept).await
        }
        ReportKind::Failure | ReportKind::Delay | ReportKind::Other => {
            tracing::info!(
                delivery = d.id,
                "mail to a bounce address that is no bounce: ignored"
            );
            Ok(Vec::new())
        }
        ReportKind::AutoReply => {
            let address = Verp::address(ctx.verp_key(), d.id, &ctx.settings().mail.reply_domain);
            super::autoreply::route(ctx, db, &d, source, &address, from_authenticated).await
        }
    }
}

/// A delivery refused for good (or out of time), inside the transaction that marks it
/// failed.
pub async fn delivery_failed(
    ctx: &Context,
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    error: &str,
) -> Result<Vec<delivery::Model>> {
    apply(ctx, db, d, &Finding::from_refusal(error), None).await
}

/// Records a bounce of `d` and tells its owner; `report`: the report as received, kept for
/// the owner to inspect.
async fn apply(
    ctx: &Context,
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    finding: &Finding,
    report: Option<&[u8]>,
) -> Result<Vec<delivery::Model>> {
    let hard = finding.class != Class::Soft;
    // A delivery that already came back: recorded again, but neither counted nor told twice.
    let first = d.status != DeliveryStatus::Bounced;
    if hard && d.status == DeliveryStatus::Delivered {
        queue::mark_bounced(db, d.id, &finding.summary()).await?;
    }
    // Never about a notice, a postmaster copy: a bounce of our own mail tells no one (it
    // could go round in a loop).
    if !queue::is_owner_mail(d.kind) {
        return Ok(Vec::new());
    }
    let Some(alias) = alias_of(db, d).await? else {
        return Ok(Vec::new());
    };
    let forward = d.kind == DeliveryKind::Forward;
    let mailbox = if forward {
        accounts::user_mailboxes(db, alias.user_id)
            .await?
            .into_iter()
            .find(|m| m.email.eq_ignore_ascii_case(&d.rcpt))
    } else {
        None
    };
    let message_id = match report {
        Some(raw) => Some(queue::store_message(db, None, None, None, raw.to_vec()).await?),
        None => None,
    };
    let bounce_id = bounce::Entity::insert(bounce::ActiveModel {
        user_id: Set(alias.user_id),
        alias_id: Set(Some(alias.id)),
        delivery_id: Set(Some(d.id)),
        mailbox_id: Set(mailbox.as_ref().map(|m| m.id)),
        phase: Set(if forward { "forward" } else { "reply" }.into()),
        class: Set(finding.class.as_str().into()),
        rcpt: Set(d.rcpt.clone()),
        status: Set(finding.status.clone()),
        diagnostic: Set(finding.diagnostic.clone()),
        remote_mta: Set(finding.remote_mta.clone()),
        counts: Set(first && forward && finding.class == Class::Hard && finding.mailbox_gone),
        message_id: Set(message_id),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    })
    .exec(db)
    .await?
    .last_insert_id;
    let what = match (finding.class, forward) {
        (Class::Complaint, true) => format!("{} reported a forward as spam", d.rcpt),
        (Class::Complaint, false) => format!("{} reported a reply as spam", d.rcpt),
        (Class::Soft, _) => format!("{} delayed: {}", d.rcpt, finding.summary()),
        (Class::Hard, _) => format!("{}: {}", d.rcpt, finding.summary()),
    };
    record(
        db,
        &NewActivity {
            user_id: alias.user_id,
            alias_id: alias.id,
            contact: d.contact_id.map_or(ContactRef::None, ContactRef::Id),
            kind: ActivityKind::Bounce,
            detail: Some(what),
        },
        d.contact_id,
    )
    .await?;
    if !hard || !first {
        return Ok(Vec::new());
    }
    let default = default_mailbox(db, alias.user_id).await?;
    let contact = match d.contact_id {
        Some(id) => contact::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let mut actions = Vec::new();
    if message_id.is_some() {
        actions.push(Action::ViewBounce(bounce_id));
    }
    let kind = if finding.class == Class::Complaint {
        NoticeKind::Complaint
    } else {
        NoticeKind::DeliveryFailed
    };
    let told = |to: Vec<String>, subject: String, text: String, actions: Vec<Action>| Notice {
        kind,
        user_id: Some(alias.user_id),
        alias_id: Some(alias.id),
        to,
        subject,
        text,
        actions,
    };
    let mut notices = Vec::new();
    if forward {
        if let Some(c) = &contact {
            actions.push(Action::BlockContact(c.id));
        }
        actions.push(Action::DisableAlias(alias.id));
        let from = contact
            .as_ref()
            .map_or_else(|| "a sender".to_string(), |c| c.email.clone());
        let (subject, text) = if finding.class == Class::Complaint {
            (
                format!("A message to {} was reported as spam", alias.email),
                format!(
                    "Your mailbox {mailbox} reported a message forwarded from {from} to your alias \
                     {alias} as spam.\n\nIf you no longer want mail sent to {alias}, disable the \
                     alias; if only this sender is unwanted, block it.",
                    mailbox = d.rcpt,
                    alias = alias.email,
                ),
            )
        } else if !finding
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with('5'))
        {
            // Out of time rather than refused (the mailbox's server never took it).
            (
                format!("A message could not be delivered to {}", d.rcpt),
                format!(
                    "A message from {from} to your alias {alias} could not be delivered to your \
                     mailbox {mailbox} within the queue's lifetime.\n\nThe last attempt \
                     ended with:\n{said}",
                    alias = alias.email,
                    mailbox = d.rcpt,
                    said = finding.summary(),
                ),
            )
        } else {
            (
                format!("Your mailbox {} refused a message", d.rcpt),
                format!(
                    "A message from {from} to your alias {alias} could not be delivered to your \
                     mailbox {mailbox}.\n\nThe mailbox's server said:\n{said}\n\nIf this keeps \
                     happening, forwarding to {mailbox} is stopped until you enable it again.",
                    alias = alias.email,
                    mailbox = d.rcpt,
                    said = finding.summary(),
                ),
            )
        };
        // The refusing mailbox only while it is still theirs: the links act on the account.
        let to = [mailbox.as_ref().map(|m| m.email.clone()), default.clone()]
            .into_iter()
            .flatten()
            .collect();
        notices.push(told(to, subject, text, actions));
        if let Some(m) = mailbox.filter(|_| finding.mailbox_gone && finding.class == Class::Hard)
            && !m.disabled
            && over_threshold(ctx, db, m.id).await?
        {
            notices.push(disable_mailbox(db, &m, default.as_deref()).await?);
        }
    } else {
        // The sending mailbox (the envelope sender of the reply it wrote), else the default.
        let sender = sending_mailbox(db, d, alias.user_id).await?.or(default);
        let (subject, text) = if finding.class == Class::Complaint {
            (
                format!("{} reported your message as spam", d.rcpt),
                format!(
                    "{rcpt} reported the message you sent from your alias {alias} as spam.",
                    rcpt = d.rcpt,
                    alias = alias.email
                ),
            )
        } else {
            (
                "Undelivered message".to_string(),
                format!(
                    "Your message sent from {alias} to {rcpt} could not be delivered.\n\nThe \
                     recipient's server said:\n{said}",
                    alias = alias.email,
                    rcpt = d.rcpt,
                    said = finding.summary(),
                ),
            )
        };
        notices.push(told(sender.into_iter().collect(), subject, text, actions));
    }
    let mut out = Vec::new();
    for n in &notices {
        out.extend(notice::store(ctx, db, n).await?);
    }
    Ok(out)
}

/// More than `bounces.per_day` counted bounces in 24 hours, or more than `per_week` in 7 days
/// with more than one in the last 24 hours.
async fn over_threshold(ctx: &Context, db: &impl ConnectionTrait, mailbox_id: i64) -> Result<bool> {
    let now = chrono::Utc::now();
    let count = |since: chrono::DateTime<chrono::Utc>| {
        bounce::Entity::find()
            .filter(bounce::Column::MailboxId.eq(mailbox_id))
            .filter(bounce::Column::Counts.eq(true))
            .filter(bounce::Column::CreatedAt.gt(since))
            .count(db)
    };
    let day = count(now - chrono::Duration::days(1)).await?;
    let week = count(now - chrono::Duration::days(7)).await?;
    let limits = &ctx.settings().bounces;
    Ok(day > u64::from(limits.per_day) || (week > u64::from(limits.per_week) && day > 1))
}

/// Stops forwarding to `m`; an alias left with no mailbox to forward to is disabled.
async fn disable_mailbox(
    db: &impl ConnectionTrait,
    m: &mailbox::Model,
    default: Option<&str>,
) -> Result<Notice> {
    mailbox::Entity::update_many()
        .col_expr(mailbox::Column::Disabled, Expr::value(true))
        .filter(mailbox::Column::Id.eq(m.id))
        .exec(db)
        .await?;
    let alias_ids: Vec<i64> = alias_mailbox::Entity::find()
        .select_only()
        .column(alias_mailbox::Column::AliasId)
        .filter(alias_mailbox::Column::MailboxId.eq(m.id))
        .into_tuple()
        .all(db)
        .await?;
    let mut disabled = Vec::new();
    for alias_id in alias_ids {
        let others = accounts::alias_mailboxes(db, alias_id)
            .await?
            .into_iter()
            .any(|o| o.id != m.id && o.verified && !o.disabled);
        if others {
            continue;
        }
        if let Some(a) = alias::Entity::find_by_id(alias_id).one(db).await?
            && a.enabled
        {
            alias::Entity::update_many()
                .col_expr(alias::Column::Enabled, Expr::value(false))
                .filter(alias::Column::Id.eq(alias_id))
                .exec(db)
                .await?;
            disabled.push(a.email);
        }
    }
    crate::cache::invalidate();
    let mut text = format!(
        "Your mailbox {mailbox} refused too many messages lately, saying it does not exist or \
         is full, so Postern stopped forwarding mail to it.\n\nOnce the mailbox works again, \
         enable it again (PUT /api/mailboxes/{id} with {{\"disabled\": false}}).",
        mailbox = m.email,
        id = m.id
    );
    if !disabled.is_empty() {
        text.push_str(&format!(
            "\n\nThese aliases had no other mailbox and are disabled: {}",
            disabled.join(", ")
        ));
    }
    Ok(Notice {
        kind: NoticeKind::MailboxDisabled,
        user_id: Some(m.user_id),
        alias_id: None,
        to: [Some(m.email.clone()), default.map(str::to_string)]
            .into_iter()
            .flatten()
            .collect(),
        subject: format!("Forwarding to {} is stopped", m.email),
        text,
        actions: Vec::new(),
    })
}

async fn alias_of(db: &impl ConnectionTrait, d: &delivery::Model) -> Result<Option<alias::Model>> {
    match d.alias_id {
        Some(id) => Ok(alias::Entity::find_by_id(id).one(db).await?),
        None => Ok(None),
    }
}

/// The user's default mailbox (or their first).
pub(crate) async fn default_mailbox(
    db: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Option<String>> {
    let Some(user) = user::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    let mailboxes = accounts::user_mailboxes(db, user_id).await?;
    Ok(mailboxes
        .iter()
        .find(|m| Some(m.id) == user.default_mailbox_id)
        .or_else(|| mailboxes.iter().find(|m| m.verified))
        .map(|m| m.email.clone()))
}

/// The mailbox a reply came from: the envelope sender of its stored message, when that is
/// one of the user's verified mailboxes.
async fn sending_mailbox(
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    user_id: i64,
) -> Result<Option<String>> {
    let Some(mail_from) = message::Entity::find_by_id(d.message_id)
        .select_only()
        .column(message::Column::MailFrom)
        .into_tuple::<Option<String>>()
        .one(db)
        .await?
        .flatten()
    else {
        return Ok(None);
    };
    Ok(accounts::user_mailboxes(db, user_id)
        .await?
        .into_iter()
        .find(|m| m.verified && m.email.eq_ignore_ascii_case(&mail_from))
        .map(|m| m.email))
}

/// Bounces per page of `GET /api/bounces`.
pub const PAGE: u64 = 20;

/// Page `page` of the user's bounces, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: u64,
) -> Result<Vec<bounce::Model>> {
    use sea_orm::QueryOrder;
    Ok(bounce::Entity::find()
        .filter(bounce::Column::UserId.eq(user_id))
        .order_by_desc(bounce::Column::Id)
        .offset(page.saturating_mul(PAGE))
        .limit(PAGE)
        .all(db)
        .await?)
}

/// The report kept for one of the user's bounces (with the refused original).
pub async fn refused_message(db: &impl ConnectionTrait, user_id: i64, id: i64) -> Result<Vec<u8>> {
    let b = bounce::Entity::find_by_id(id)
        .filter(bounce::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or_else(|| crate::DomainError::NotFound("bounce".into()))?;
    crate::action::refused_message(db, b.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_by_their_code() {
        let gone = Finding::from_refusal("550 5.1.1 <a@b>: Recipient address rejected");
        assert_eq!(gone.status.as_deref(), Some("5.1.1"));
        assert!(gone.mailbox_gone);
        let spam = Finding::from_refusal("550 5.7.1 Message rejected as spam");
        assert!(!spam.mailbox_gone);
        let bare = Finding::from_refusal("554 delivery error");
        assert_eq!(bare.status.as_deref(), Some("5.0.0"));
        assert!(!bare.mailbox_gone);
        let expired = Finding::from_refusal("gave up after 5 days");
        assert_eq!(expired.status, None);
        assert!(!expired.mailbox_gone);
    }
}
