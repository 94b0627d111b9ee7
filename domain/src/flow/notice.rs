//! The one place that writes mail from Postern itself to its users: account emails, why a
//! reply was not sent, why a delivery failed. Stored and queued like any message, DKIM-signed
//! for the reply domain at delivery, and rate-limited per user and kind.

use std::sync::Arc;

use data_encoding::BASE32_NOPAD;
use postern_entity::delivery::{self, DeliveryKind};
use rand::RngCore;
use sea_orm::ConnectionTrait;

use crate::Result;
use crate::context::Context;
use crate::delivery::{Source, queue};

/// Why Postern writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Sign-up codes, password resets, mailbox confirmations: asked for, never limited here
    /// (the API limits the requests).
    Account,
    /// A forward or a reply could not be delivered.
    DeliveryFailed,
    /// A message sent through a reverse alias was not sent.
    ReplyRefused,
    /// Someone who is not the owner tried to send through a reverse alias.
    SpoofAttempt,
}

impl NoticeKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::DeliveryFailed => "delivery-failed",
            Self::ReplyRefused => "reply-refused",
            Self::SpoofAttempt => "spoof-attempt",
        }
    }

    /// At most this many per user and hour.
    fn per_hour(self) -> Option<usize> {
        match self {
            Self::Account => None,
            Self::DeliveryFailed | Self::ReplyRefused => Some(10),
            Self::SpoofAttempt => Some(3),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    pub user_id: Option<i64>,
    pub alias_id: Option<i64>,
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Stores and queues `notice` inside the caller's transaction; returns its delivery (none
/// when the user has had too many of this kind lately).
pub async fn store(
    ctx: &Context,
    db: &impl ConnectionTrait,
    notice: &Notice,
) -> Result<Vec<delivery::Model>> {
    if let (Some(limit), Some(user_id)) = (notice.kind.per_hour(), notice.user_id)
        && !ctx.allow_notice(user_id, notice.kind.as_str(), limit)
    {
        tracing::info!(
            user_id,
            kind = notice.kind.as_str(),
            "notice not sent: rate limit"
        );
        return Ok(Vec::new());
    }
    let reply_domain = &ctx.settings().mail.reply_domain;
    let raw = build(reply_domain, &notice.to, &notice.subject, &notice.text);
    let message_id = queue::store_message(db, None, None, None, raw).await?;
    queue::enqueue(
        db,
        &ctx.settings().queue,
        ctx.instance(),
        message_id,
        &[queue::NewDelivery {
            kind: DeliveryKind::Notice,
            rcpt: notice.to.clone(),
            user_id: notice.user_id,
            alias_id: notice.alias_id,
            contact_id: None,
        }],
    )
    .await
}

/// Stores, commits and starts sending `notice`.
pub async fn send(ctx: &Context, notice: Notice) -> Result<()> {
    let c = ctx.clone();
    let deliveries = ctx
        .writer()
        .write(move |txn| Box::pin(async move { store(&c, txn, &notice).await }))
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

/// A plain-text notice from `noreply@reply_domain` to `to`.
pub fn build(reply_domain: &str, to: &str, subject: &str, text: &str) -> Vec<u8> {
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
        "From: \"Postern\" <noreply@{reply_domain}>\r\n\
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

#[cfg(test)]
mod tests {
    #[test]
    fn notice_is_well_formed() {
        let raw = super::build(
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
