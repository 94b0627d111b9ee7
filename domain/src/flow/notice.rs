//! The one place that tells users things: account emails, why a reply was not sent, why a
//! delivery failed or came back, a disabled mailbox, a held message. Each (but account mail)
//! is an in-app notification (`GET /api/notifications`) and, a few a day per kind at most,
//! an email from `notifications.sender@reply_domain`, stored and queued like any message and
//! DKIM-signed for the reply domain at delivery, with one-click action links.

use std::sync::Arc;

use data_encoding::BASE32_NOPAD;
use postern_entity::delivery::{self, DeliveryKind};
use postern_entity::notification;
use rand::RngCore;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use crate::Result;
use crate::action::Action;
use crate::context::Context;
use crate::delivery::{Source, queue};

/// Why Postern writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Sign-up codes, password resets, mailbox confirmations: asked for, never limited here
    /// (the API limits the requests), and not kept as notifications.
    Account,
    /// A forward or a reply could not be delivered, or came back.
    DeliveryFailed,
    /// A recipient reported a message as spam.
    Complaint,
    /// Forwarding to a mailbox stopped after repeated hard bounces.
    MailboxDisabled,
    /// A message through a reverse alias was not sent.
    ReplyRefused,
    /// Someone who is not the owner tried to send through a reverse alias.
    SpoofAttempt,
    /// A message is held in the quarantine.
    Quarantined,
    /// Mail for the owner that came back to a bounce address: a contact's automatic reply.
    AutoReply,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::DeliveryFailed => "delivery-failed",
            Self::Complaint => "complaint",
            Self::MailboxDisabled => "mailbox-disabled",
            Self::ReplyRefused => "reply-refused",
            Self::SpoofAttempt => "spoof-attempt",
            Self::Quarantined => "quarantined",
            Self::AutoReply => "auto-reply",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    pub user_id: Option<i64>,
    pub alias_id: Option<i64>,
    /// Where the email goes (each address once).
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    /// One-click links added to the email.
    pub actions: Vec<Action>,
}

/// Stores the notice as an in-app notification (all but account mail) and, within the
/// user's daily allowance for its kind, queues it by email, inside the caller's transaction.
/// Returns the email deliveries.
pub async fn store(
    ctx: &Context,
    db: &impl ConnectionTrait,
    notice: &Notice,
) -> Result<Vec<delivery::Model>> {
    let settings = ctx.settings();
    let mut text = notice.text.clone();
    if let (Some(user_id), false) = (notice.user_id, notice.kind == NoticeKind::Account) {
        let since = chrono::Utc::now() - chrono::Duration::days(1);
        let sent_today = notification::Entity::find()
            .filter(notification::Column::UserId.eq(user_id))
            .filter(notification::Column::Kind.eq(notice.kind.as_str()))
            .filter(notification::Column::Emailed.eq(true))
            .filter(notification::Column::CreatedAt.gt(since))
            .count(db)
            .await?;
        let email = sent_today < u64::from(settings.notifications.emails_per_kind_per_day);
        notification::Entity::insert(notification::ActiveModel {
            user_id: Set(user_id),
            kind: Set(notice.kind.as_str().to_string()),
            title: Set(notice.subject.chars().take(200).collect()),
            message: Set(notice.text.chars().take(10_000).collect()),
            alias_id: Set(notice.alias_id),
            read: Set(false),
            emailed: Set(email),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        })
        .exec_without_returning(db)
        .await?;
        if !email {
            tracing::info!(
                user_id,
                kind = notice.kind.as_str(),
                "notice kept in the app only: daily email limit"
            );
            return Ok(Vec::new());
        }
        if !notice.actions.is_empty() {
            text.push('\n');
            let now = chrono::Utc::now();
            for action in &notice.actions {
                text.push_str(&format!(
                    "\n{}: {}/act/{}",
                    action.label(),
                    settings.http.public_url,
                    action.token(ctx.action_key(), now)
                ));
            }
        }
    }
    let reply_domain = &settings.mail.reply_domain;
    let from = format!("{}@{reply_domain}", settings.notifications.sender);
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for to in &notice.to {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(to)) {
            continue;
        }
        seen.push(to.clone());
        let raw = build(&from, reply_domain, to, &notice.subject, &text);
        let message_id = queue::store_message(db, None, None, None, raw).await?;
        out.extend(
            queue::enqueue(
                db,
                &settings.queue,
                ctx.instance(),
                message_id,
                &[queue::NewDelivery {
                    kind: DeliveryKind::Notice,
                    rcpt: to.clone(),
                    user_id: notice.user_id,
                    alias_id: notice.alias_id,
                    contact_id: None,
                }],
            )
            .await?,
        );
    }
    Ok(out)
}

/// Stores, commits and starts sending `notice`.
pub async fn send(ctx: &Context, notice: Notice) -> Result<()> {
    let c = ctx.clone();
    let deliveries = ctx
        .writer()
        .write(move |txn| {
            let (c, notice) = (c.clone(), notice.clone());
            Box::pin(async move { store(&c, txn, &notice).await })
        })
        .await?;
    crate::delivery::spawn(ctx, deliveries, None);
    Ok(())
}

/// What is sent: the stored notice, signed.
pub async fn render(ctx: &Context, source: Arc<Source>) -> Result<Vec<u8>> {
    let ctx = ctx.clone();
    super::cpu(move || {
        ctx.signers().sign(
            &ctx.settings().mail.reply_domain,
            source.message.raw().to_vec(),
        )
    })
    .await
}

/// A fresh, unguessable Message-ID (without brackets) on `domain`.
pub fn new_message_id(domain: &str) -> String {
    format!("{}@{domain}", new_token())
}

/// 120 random bits, base32.
pub fn new_token() -> String {
    let mut bytes = [0u8; 15];
    rand::rng().fill_bytes(&mut bytes);
    BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
}

/// A plain-text notice from `from` (an address on `reply_domain`) to `to`.
pub fn build(from: &str, reply_domain: &str, to: &str, subject: &str, text: &str) -> Vec<u8> {
    let subject: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let subject = if subject.is_ascii() {
        subject
    } else {
        format!(
            "=?utf-8?b?{}?=",
            data_encoding::BASE64.encode(subject.as_bytes())
        )
    };
    let mut body = String::new();
    for line in text.lines() {
        // Dot-stuffing is the transport's job; keep lines CRLF-terminated and under 998 octets.
        let mut line = line.trim_end_matches('\r');
        while line.len() > 900 {
            let mut cut = 900;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            body.push_str(&line[..cut]);
            body.push_str("\r\n");
            line = &line[cut..];
        }
        body.push_str(line);
        body.push_str("\r\n");
    }
    format!(
        "From: \"Postern\" <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{mid}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {body}",
        date = chrono::Utc::now().to_rfc2822(),
        mid = new_message_id(reply_domain),
    )
    .into_bytes()
}

/// Notifications per page of `GET /api/notifications`.
pub const PAGE: u64 = 20;

/// Page `page` (from 0) of the user's notifications, newest first, and whether there are more.
pub async fn list(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: u64,
) -> Result<(Vec<notification::Model>, bool)> {
    use sea_orm::{QueryOrder, QuerySelect};
    let mut rows = notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .order_by_desc(notification::Column::Id)
        .offset(page.saturating_mul(PAGE))
        .limit(PAGE + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > PAGE;
    rows.truncate(PAGE as usize);
    Ok((rows, more))
}

/// Marks one of the user's notifications read; false when they have no such notification.
pub async fn mark_read(db: &impl ConnectionTrait, user_id: i64, id: i64) -> Result<bool> {
    use sea_orm::sea_query::Expr;
    let done = notification::Entity::update_many()
        .col_expr(notification::Column::Read, Expr::value(true))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn notice_is_well_formed() {
        let raw = super::build(
            "noreply@reply.test",
            "reply.test",
            "me@real.test",
            "Réponse non envoyée",
            "line one\nline two",
        );
        let text = String::from_utf8(raw).expect("ascii");
        assert!(text.contains("To: <me@real.test>\r\n"));
        assert!(text.contains("Subject: =?utf-8?b?"));
        assert!(text.contains("\r\n\r\n"));
        assert!(text.lines().all(|l| l.len() <= 998));
    }
}
