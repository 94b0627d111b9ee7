//! The three mail flows — forward, reply, bounce — and delivery attempts.
//!
//! `receive` turns one accepted SMTP transaction into queued deliveries inside a single
//! database transaction: either every resulting message is committed to the queue (and the
//! gateway may answer `250`), or nothing is (and it answers `451`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use postern_config::Settings;
use postern_entity::{activity, alias, contact, delivery, mailbox, message_id, user};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};
use tokio::sync::Notify;

use crate::accounts;
use crate::address::EmailAddress;
use crate::dkim::{self, Signers};
use crate::notice;
use crate::outbound::{Outbound, SendError};
use crate::queue::{self, Kind, NewDelivery, Retry};
use crate::resolve::{Recipient, resolve_rcpt};
use crate::rewrite::{self, ForwardContext, Mailbox, ReplyContext, RewriteError};
use crate::secrets::{self, HmacKey};
use crate::verp::Verp;
use crate::{DomainError, Result};

/// The RCPT-time decision, mapped to an SMTP reply by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptDecision {
    Accept,
    Unknown,
    RelayDenied,
    /// A reverse alias written to by someone who is not its owner.
    NotOwner,
    TemporaryFailure,
}

/// The DATA-time decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Everything is committed to the queue (or recorded, for blocks and bounces).
    Accepted {
        queue_id: String,
        deliveries: Vec<i64>,
    },
    TemporaryFailure,
    /// The message cannot be processed as it is (no headers at all, say).
    Malformed(String),
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    Retrying(String),
    Failed(String),
    /// Not due, already done, or claimed by someone else.
    Skipped,
}

#[derive(Clone)]
pub struct Mailflow {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    settings: Arc<Settings>,
    signers: Signers,
    verp_key: HmacKey,
    outbound: Outbound,
    wake: Notify,
}

/// Everything produced while handling one transaction, applied after commit.
#[derive(Default)]
struct Work {
    deliveries: Vec<i64>,
}

impl Mailflow {
    /// Prepares keys and secrets (creating them on first start) and returns the service.
    pub async fn start(
        db: DatabaseConnection,
        settings: Arc<Settings>,
        outbound: Outbound,
    ) -> Result<Self> {
        let domains = signing_domains(&settings);
        for domain in &domains {
            dkim::ensure_keys(&db, domain)
                .await
                .map_err(|e| DomainError::Invalid(format!("DKIM keys for {domain}: {e}")))?;
        }
        let signers = Signers::load(&db, &domains).await?;
        let verp_key = secrets::load_or_create(&db, "verp").await?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                settings,
                signers,
                verp_key,
                outbound,
                wake: Notify::new(),
            }),
        })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Woken whenever new deliveries are queued; the worker waits on it.
    pub fn wake(&self) -> &Notify {
        &self.inner.wake
    }

    pub async fn check_rcpt(&self, mail_from: &str, rcpt: &str) -> RcptDecision {
        let inner = &*self.inner;
        match resolve_rcpt(&inner.db, &inner.settings, &inner.verp_key, rcpt).await {
            Ok(Recipient::Alias(_) | Recipient::Bounce(_) | Recipient::Postmaster(_)) => {
                RcptDecision::Accept
            }
            Ok(Recipient::ReverseAlias { alias, .. }) => {
                match authorised_sender(&inner.db, &alias, mail_from).await {
                    Ok(Some(_)) => RcptDecision::Accept,
                    Ok(None) => RcptDecision::NotOwner,
                    Err(_) => RcptDecision::TemporaryFailure,
                }
            }
            Ok(Recipient::Unknown) => RcptDecision::Unknown,
            Ok(Recipient::Foreign) => RcptDecision::RelayDenied,
            Err(e) => {
                tracing::warn!(error = %e, "recipient lookup failed");
                RcptDecision::TemporaryFailure
            }
        }
    }

    /// Handles one message for its accepted recipients.
    pub async fn receive(&self, mail_from: &str, rcpts: &[String], raw: &[u8]) -> Receipt {
        match self.receive_inner(mail_from, rcpts, raw).await {
            Ok(work) => {
                let queue_id = match work.deliveries.first() {
                    Some(first) => format!("D{first}"),
                    None => "none".to_string(),
                };
                if !work.deliveries.is_empty() {
                    self.deliver_soon(work.deliveries.clone());
                }
                Receipt::Accepted {
                    queue_id,
                    deliveries: work.deliveries,
                }
            }
            Err(DomainError::Invalid(why)) => Receipt::Malformed(why),
            Err(e) => {
                tracing::error!(error = %e, "message not accepted");
                Receipt::TemporaryFailure
            }
        }
    }

    async fn receive_inner(&self, mail_from: &str, rcpts: &[String], raw: &[u8]) -> Result<Work> {
        let inner = &*self.inner;
        let normalized = normalize_line_endings(raw);
        let raw: &[u8] = &normalized;
        let txn = crate::db::begin_write(&inner.db).await?;
        let mut work = Work::default();
        let mut replies: BTreeMap<i64, (alias::Model, Vec<contact::Model>)> = BTreeMap::new();
        // Two spellings of one address (`a@d`, `A@d.`) are one recipient.
        let mut forwarded = std::collections::HashSet::new();
        for rcpt in rcpts {
            match resolve_rcpt(&txn, &inner.settings, &inner.verp_key, rcpt).await? {
                Recipient::Alias(alias) => {
                    if forwarded.insert(alias.id) {
                        self.forward(&txn, &alias, mail_from, raw, &mut work)
                            .await?;
                    }
                }
                Recipient::ReverseAlias { contact, alias } => {
                    let entry = replies
                        .entry(alias.id)
                        .or_insert_with(|| (alias, Vec::new()));
                    if !entry.1.iter().any(|c| c.id == contact.id) {
                        entry.1.push(contact);
                    }
                }
                Recipient::Bounce(verp) => self.bounce(&txn, verp, raw, &mut work).await?,
                Recipient::Postmaster(to) => {
                    // Passed on as it came, marked, unsigned: we do not vouch for its content.
                    let mut body = format!("X-Postern-Postmaster: {rcpt}\r\n").into_bytes();
                    body.extend_from_slice(raw);
                    let delivery = NewDelivery {
                        kind: Kind::Notice,
                        rcpt: to,
                        user_id: None,
                        alias_id: None,
                        contact_id: None,
                    };
                    let ids =
                        queue::enqueue(&txn, &inner.settings.queue, body, &[delivery]).await?;
                    work.deliveries.extend(ids);
                }
                Recipient::Unknown | Recipient::Foreign => {
                    tracing::warn!(rcpt, "recipient vanished between RCPT and DATA");
                }
            }
        }
        for (_, (alias, contacts)) in replies {
            self.reply(&txn, &alias, &contacts, mail_from, raw, &mut work)
                .await?;
        }
        txn.commit().await?;
        if !work.deliveries.is_empty() {
            inner.wake.notify_one();
        }
        Ok(work)
    }

    async fn forward(
        &self,
        db: &impl ConnectionTrait,
        alias: &alias::Model,
        mail_from: &str,
        raw: &[u8],
        work: &mut Work,
    ) -> Result<()> {
        let settings = &*self.inner.settings;
        let mailboxes: Vec<mailbox::Model> = accounts::alias_mailboxes(db, alias.id)
            .await?
            .into_iter()
            .filter(|m| m.verified)
            .collect();
        let sender = mail_from.to_lowercase();
        if mailboxes.iter().any(|m| m.email == sender) {
            // The owner wrote to their own alias: sending it back would loop.
            record(
                db,
                alias,
                None,
                "loop",
                Some(format!("from own mailbox {sender}")),
            )
            .await?;
            return Ok(());
        }
        let inspection = rewrite::inspect(raw);
        let original_from = inspection
            .from
            .clone()
            .or_else(|| {
                EmailAddress::parse(mail_from).ok().map(|a| Mailbox {
                    name: None,
                    address: a.into_string(),
                })
            })
            .unwrap_or_else(|| Mailbox {
                name: Some("Unknown sender".into()),
                address: format!("noreply@{}", settings.mail.reply_domain),
            });
        // Even a sender on our own domains gets a reverse alias: the owner's answer must go
        // back through the reply flow, never straight from the mailbox.
        let mut reverse_aliases = HashMap::new();
        let sender_contact = accounts::get_or_create_contact(
            db,
            settings,
            alias,
            &original_from.address,
            original_from.name.as_deref(),
        )
        .await?;
        reverse_aliases.insert(
            original_from.address.to_lowercase(),
            sender_contact.reply_email.clone(),
        );
        let sender_contact = Some(sender_contact);
        if !alias.enabled {
            record(
                db,
                alias,
                sender_contact.as_ref(),
                "block",
                Some("alias disabled".into()),
            )
            .await?;
            return Ok(());
        }
        if sender_contact.as_ref().is_some_and(|c| c.blocked) {
            record(
                db,
                alias,
                sender_contact.as_ref(),
                "block",
                Some("contact blocked".into()),
            )
            .await?;
            return Ok(());
        }
        for (_, mb) in &inspection.addresses {
            let address = mb.address.to_lowercase();
            if address == alias.email
                || reverse_aliases.contains_key(&address)
                || accounts::is_our_domain(settings, domain_of(&address))
            {
                continue;
            }
            let c =
                accounts::get_or_create_contact(db, settings, alias, &address, mb.name.as_deref())
                    .await?;
            reverse_aliases.insert(address, c.reply_email);
        }
        let restore_ids = self
            .lookup_ids(
                db,
                alias.id,
                &inspection.in_reply_to,
                &inspection.references,
                true,
            )
            .await?;
        let ctx = ForwardContext {
            alias: &alias.email,
            envelope_from: mail_from,
            original_from: Some(&original_from),
            reverse_aliases: &reverse_aliases,
            restore_ids: &restore_ids,
            sender_format: self.sender_format(db, alias.user_id).await?,
        };
        let mut rewritten = rewrite::rewrite_forward(raw, &ctx).map_err(malformed)?;
        if inspection.message_id.is_none() {
            // Receivers distrust mail without one; ours carries nothing about the alias.
            let id = notice::new_message_id(&settings.mail.reply_domain);
            rewritten.splice(0..0, format!("Message-ID: <{id}>\r\n").into_bytes());
        }
        let signed = self
            .inner
            .signers
            .sign(&settings.mail.reply_domain, &rewritten)?;
        if mailboxes.is_empty() {
            record(
                db,
                alias,
                sender_contact.as_ref(),
                "block",
                Some("alias has no verified mailbox".into()),
            )
            .await?;
            return Ok(());
        }
        let deliveries: Vec<NewDelivery> = mailboxes
            .iter()
            .map(|m| NewDelivery {
                kind: Kind::Forward,
                rcpt: m.email.clone(),
                user_id: Some(alias.user_id),
                alias_id: Some(alias.id),
                contact_id: sender_contact.as_ref().map(|c| c.id),
            })
            .collect();
        let ids = queue::enqueue(db, &settings.queue, signed, &deliveries).await?;
        work.deliveries.extend(ids);
        record(
            db,
            alias,
            sender_contact.as_ref(),
            "forward",
            inspection.subject.clone(),
        )
        .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn reply(
        &self,
        db: &impl ConnectionTrait,
        alias: &alias::Model,
        envelope_contacts: &[contact::Model],
        mail_from: &str,
        raw: &[u8],
        work: &mut Work,
    ) -> Result<()> {
        let settings = &*self.inner.settings;
        let Some(sender) = authorised_sender(db, alias, mail_from).await? else {
            record(
                db,
                alias,
                None,
                "refused",
                Some(format!("reply from unauthorised {mail_from}")),
            )
            .await?;
            return Ok(());
        };
        // Every To/Cc recipient must be one of this alias's reverse aliases (or the alias).
        let mut contacts_by_reverse: HashMap<String, Mailbox> = HashMap::new();
        let mut unknown = Vec::new();
        for address in rewrite::reply_recipients(raw) {
            if address == alias.email || contacts_by_reverse.contains_key(&address) {
                continue;
            }
            match accounts::find_contact_by_reverse_alias(db, &address).await? {
                Some(c) if c.alias_id == alias.id => {
                    contacts_by_reverse.insert(
                        address,
                        Mailbox {
                            name: c.name.clone(),
                            address: c.email.clone(),
                        },
                    );
                }
                _ => unknown.push(address),
            }
        }
        for c in envelope_contacts {
            contacts_by_reverse
                .entry(c.reply_email.clone())
                .or_insert_with(|| Mailbox {
                    name: c.name.clone(),
                    address: c.email.clone(),
                });
        }
        if !unknown.is_empty() {
            return self
                .refuse_reply(db, alias, &sender, raw, &unknown, work)
                .await;
        }
        let inspection = rewrite::inspect(raw);
        let alias_domain = domain_of(&alias.email).to_string();
        let new_id = notice::new_message_id(&alias_domain);
        if let Some(original) = &inspection.message_id {
            message_id::ActiveModel {
                alias_id: Set(alias.id),
                our_id: Set(new_id.clone()),
                original_id: Set(original.chars().take(250).collect()),
                created_at: Set(chrono::Utc::now()),
                ..Default::default()
            }
            .insert(db)
            .await?;
        }
        let map_ids = self
            .lookup_ids(
                db,
                alias.id,
                &inspection.in_reply_to,
                &inspection.references,
                false,
            )
            .await?;
        let ctx = ReplyContext {
            alias: &alias.email,
            mailbox: &sender.email,
            alias_name: alias.name.as_deref(),
            contacts: &contacts_by_reverse,
            new_message_id: &new_id,
            map_ids: &map_ids,
        };
        let rewritten = match rewrite::rewrite_reply(raw, &ctx) {
            Ok(r) => r,
            Err(RewriteError::UnknownRecipient(address)) => {
                return self
                    .refuse_reply(db, alias, &sender, raw, &[address], work)
                    .await;
            }
            Err(e) => return Err(malformed(e)),
        };
        // Quoted text and signatures can carry the mailbox address too: it becomes the alias.
        let rewritten =
            replace_ignore_ascii_case(&rewritten, sender.email.as_bytes(), alias.email.as_bytes());
        let signed = self.inner.signers.sign(&alias_domain, &rewritten)?;
        let deliveries: Vec<NewDelivery> = envelope_contacts
            .iter()
            .map(|c| NewDelivery {
                kind: Kind::Reply,
                rcpt: c.email.clone(),
                user_id: Some(alias.user_id),
                alias_id: Some(alias.id),
                contact_id: Some(c.id),
            })
            .collect();
        let ids = queue::enqueue(db, &settings.queue, signed, &deliveries).await?;
        work.deliveries.extend(ids);
        for c in envelope_contacts {
            record(db, alias, Some(c), "reply", inspection.subject.clone()).await?;
        }
        Ok(())
    }

    async fn refuse_reply(
        &self,
        db: &impl ConnectionTrait,
        alias: &alias::Model,
        sender: &mailbox::Model,
        raw: &[u8],
        unknown: &[String],
        work: &mut Work,
    ) -> Result<()> {
        let subject = rewrite::inspect(raw).subject.unwrap_or_default();
        let list = unknown.join(", ");
        let text = format!(
            "Your message \"{subject}\" sent from {alias} was NOT sent to anyone.\n\n\
             These recipients are not reverse aliases of {alias}: {list}\n\n\
             To keep your real address private, a message sent through an alias may only go to \
             the reverse aliases of that alias's contacts. Write to each contact through the \
             address shown in the From field of the mail you received from them.",
            alias = alias.email
        );
        record(
            db,
            alias,
            None,
            "refused",
            Some(format!("reply to non-reverse-alias {list}")),
        )
        .await?;
        self.notify(
            db,
            alias.user_id,
            Some(alias.id),
            &sender.email,
            "Your message was not sent",
            &text,
            work,
        )
        .await
    }

    /// A DSN (or anything) sent to a VERP address of one of our deliveries.
    async fn bounce(
        &self,
        db: &impl ConnectionTrait,
        verp: Verp,
        raw: &[u8],
        work: &mut Work,
    ) -> Result<()> {
        let Some(d) = queue::find(db, verp.delivery_id).await? else {
            return Ok(());
        };
        if !is_failure_report(raw) {
            // Delay warnings and auto-replies to the envelope sender are not bounces.
            if let Some(alias) = self.alias_of(db, &d).await? {
                let detail = format!("non-bounce mail to the bounce address of {}", d.rcpt);
                record(db, &alias, None, "auto-reply", Some(detail)).await?;
            }
            return Ok(());
        }
        let detail = bounce_summary(raw);
        if d.status != queue::BOUNCED {
            queue::mark_bounced(db, &d, &detail).await?;
        }
        let Some(alias) = self.alias_of(db, &d).await? else {
            return Ok(());
        };
        let contact = match d.contact_id {
            Some(id) => contact::Entity::find_by_id(id).one(db).await?,
            None => None,
        };
        record(
            db,
            &alias,
            contact.as_ref(),
            "bounce",
            Some(format!("{}: {detail}", d.rcpt)),
        )
        .await?;
        if Kind::parse(&d.kind) == Kind::Reply {
            let text = format!(
                "Your message sent from {} to {} was returned by the recipient's server:\n\n{detail}",
                alias.email, d.rcpt
            );
            if let Some(to) = self.owner_mailbox(db, alias.user_id).await? {
                self.notify(
                    db,
                    alias.user_id,
                    Some(alias.id),
                    &to,
                    "Undelivered message",
                    &text,
                    work,
                )
                .await?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        db: &impl ConnectionTrait,
        user_id: i64,
        alias_id: Option<i64>,
        to: &str,
        subject: &str,
        text: &str,
        work: &mut Work,
    ) -> Result<()> {
        let reply_domain = &self.inner.settings.mail.reply_domain;
        let body = notice::build(reply_domain, to, subject, text);
        let signed = self.inner.signers.sign(reply_domain, &body)?;
        let ids = queue::enqueue(
            db,
            &self.inner.settings.queue,
            signed,
            &[NewDelivery {
                kind: Kind::Notice,
                rcpt: to.to_string(),
                user_id: Some(user_id),
                alias_id,
                contact_id: None,
            }],
        )
        .await?;
        work.deliveries.extend(ids);
        Ok(())
    }

    /// Queues a message from Postern to one of its users (account emails, notices).
    pub async fn send_notice(
        &self,
        user_id: i64,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Result<()> {
        let txn = crate::db::begin_write(&self.inner.db).await?;
        let mut work = Work::default();
        self.notify(&txn, user_id, None, to, subject, text, &mut work)
            .await?;
        txn.commit().await?;
        self.inner.wake.notify_one();
        self.deliver_soon(work.deliveries);
        Ok(())
    }

    /// Message-ID translation between what mailboxes use and what contacts see.
    /// `ours_to_original`: ids we minted → the mailbox's originals (for forwards);
    /// otherwise originals → ours (for replies).
    async fn lookup_ids(
        &self,
        db: &impl ConnectionTrait,
        alias_id: i64,
        in_reply_to: &[String],
        references: &[String],
        ours_to_original: bool,
    ) -> Result<HashMap<String, String>> {
        let ids: Vec<String> = in_reply_to
            .iter()
            .chain(references)
            .take(100)
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let column = if ours_to_original {
            message_id::Column::OurId
        } else {
            message_id::Column::OriginalId
        };
        let rows = message_id::Entity::find()
            .filter(message_id::Column::AliasId.eq(alias_id))
            .filter(column.is_in(ids))
            .all(db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                if ours_to_original {
                    (r.our_id, r.original_id)
                } else {
                    (r.original_id, r.our_id)
                }
            })
            .collect())
    }

    async fn sender_format(
        &self,
        db: &impl ConnectionTrait,
        user_id: i64,
    ) -> Result<rewrite::SenderFormat> {
        Ok(user::Entity::find_by_id(user_id)
            .one(db)
            .await?
            .and_then(|u| rewrite::SenderFormat::parse(&u.sender_format))
            .unwrap_or_default())
    }

    async fn alias_of(
        &self,
        db: &impl ConnectionTrait,
        d: &delivery::Model,
    ) -> Result<Option<alias::Model>> {
        match d.alias_id {
            Some(id) => Ok(alias::Entity::find_by_id(id).one(db).await?),
            None => Ok(None),
        }
    }

    async fn owner_mailbox(
        &self,
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
            .or_else(|| mailboxes.first())
            .map(|m| m.email.clone()))
    }

    /// Starts the first attempt of fresh deliveries right away, off the SMTP session.
    pub fn deliver_soon(&self, ids: Vec<i64>) {
        let flow = self.clone();
        tokio::spawn(async move {
            flow.deliver_all(ids).await;
        });
    }

    /// Attempts several deliveries concurrently.
    pub async fn deliver_all(&self, ids: Vec<i64>) -> usize {
        futures::stream::iter(ids)
            .map(|id| {
                let flow = self.clone();
                async move { flow.deliver(id).await }
            })
            .buffer_unordered(16)
            .filter(|r| futures::future::ready(!matches!(r, Ok(Attempt::Skipped))))
            .count()
            .await
    }

    /// Attempts every due delivery (up to `limit`); returns how many were attempted.
    pub async fn run_due(&self, limit: u64) -> Result<usize> {
        let ids = queue::due(&self.inner.db, limit).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self.deliver_all(ids).await)
    }

    /// One attempt of one delivery.
    pub async fn deliver(&self, id: i64) -> Result<Attempt> {
        let inner = &*self.inner;
        let Some(d) = queue::claim(&inner.db, id).await? else {
            return Ok(Attempt::Skipped);
        };
        let body = queue::body(&inner.db, d.message_id).await?;
        let mail_from = Verp::address(&inner.verp_key, d.id, &inner.settings.mail.reply_domain);
        let sent = inner.outbound.send(&mail_from, &d.rcpt, &body).await;
        match sent {
            Ok(()) => {
                queue::mark_delivered(&inner.db, &d).await?;
                Ok(Attempt::Delivered)
            }
            Err(SendError::Permanent(e)) => {
                self.fail(&d, &e).await?;
                Ok(Attempt::Failed(e))
            }
            Err(SendError::Temporary(e)) => {
                match queue::retry_later(&inner.db, &inner.settings.queue, &d, &e).await? {
                    Retry::At(_) => Ok(Attempt::Retrying(e)),
                    Retry::GaveUp => {
                        let e = format!("gave up after {} attempts: {e}", d.attempts);
                        self.fail(&d, &e).await?;
                        Ok(Attempt::Failed(e))
                    }
                }
            }
        }
    }

    /// Marks a delivery failed and, in the same transaction, tells its owner: a failure is
    /// never recorded without the notice being queued.
    async fn fail(&self, d: &delivery::Model, error: &str) -> Result<()> {
        let txn = crate::db::begin_write(&self.inner.db).await?;
        queue::mark_failed(&txn, d, error).await?;
        let mut work = Work::default();
        let kind = Kind::parse(&d.kind);
        // Never notify about a notice: that could loop.
        if kind != Kind::Notice
            && let (Some(user_id), Some(alias)) = (d.user_id, self.alias_of(&txn, d).await?)
            && let Some(to) = self.owner_mailbox(&txn, user_id).await?
        {
            let text = match kind {
                Kind::Forward => format!(
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
            let contact = match d.contact_id {
                Some(id) => contact::Entity::find_by_id(id).one(&txn).await?,
                None => None,
            };
            let detail = format!("{}: {error}", d.rcpt);
            record(&txn, &alias, contact.as_ref(), "bounce", Some(detail)).await?;
            self.notify(
                &txn,
                user_id,
                Some(alias.id),
                &to,
                "Undelivered message",
                &text,
                &mut work,
            )
            .await?;
        }
        txn.commit().await?;
        self.deliver_soon(work.deliveries);
        Ok(())
    }
}

/// The mailbox of `alias` that `mail_from` is, if any.
///
/// This is the one place where reply senders are authenticated. Today: the envelope sender
/// must be one of the alias's mailboxes. SPF/DKIM/DMARC alignment comes here next.
pub async fn authorised_sender(
    db: &impl ConnectionTrait,
    alias: &alias::Model,
    mail_from: &str,
) -> Result<Option<mailbox::Model>> {
    let sender = mail_from.to_lowercase();
    if sender.is_empty() {
        return Ok(None);
    }
    Ok(accounts::alias_mailboxes(db, alias.id)
        .await?
        .into_iter()
        .find(|m| m.verified && m.email == sender))
}

async fn record(
    db: &impl ConnectionTrait,
    alias: &alias::Model,
    contact: Option<&contact::Model>,
    kind: &str,
    detail: Option<String>,
) -> Result<()> {
    activity::ActiveModel {
        user_id: Set(alias.user_id),
        alias_id: Set(alias.id),
        contact_id: Set(contact.map(|c| c.id)),
        kind: Set(kind.to_string()),
        detail: Set(detail.map(|d| d.chars().take(500).collect())),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

fn malformed(e: RewriteError) -> DomainError {
    DomainError::Invalid(e.to_string())
}

fn domain_of(address: &str) -> &str {
    address.rsplit('@').next().unwrap_or_default()
}

fn signing_domains(settings: &Settings) -> Vec<String> {
    let mut domains = settings.mail.alias_domains.clone();
    if !domains.contains(&settings.mail.reply_domain) {
        domains.push(settings.mail.reply_domain.clone());
    }
    domains
}

/// The `Status:`/`Diagnostic-Code:` lines of a DSN, or its subject: enough for the owner.
fn bounce_summary(raw: &[u8]) -> String {
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

/// Bare LF and bare CR become CRLF. We pass messages on to other servers, and a lone `\n.\r\n`
/// in what we send could end the message early at a lenient receiver (SMTP smuggling).
pub fn normalize_line_endings(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let clean = raw.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && raw[i - 1] == b'\r',
        b'\r' => raw.get(i + 1) == Some(&b'\n'),
        _ => true,
    });
    if clean {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A delivery status notification that reports a failure (RFC 3464 `Action: failed`).
fn is_failure_report(raw: &[u8]) -> bool {
    let head = &raw[..raw.len().min(256 * 1024)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.contains("multipart/report")
        && text.contains("delivery-status")
        && text
            .lines()
            .any(|l| l.trim().starts_with("action:") && l.contains("failed"))
}

/// Replaces every ASCII-case-insensitive occurrence of `needle`.
pub fn replace_ignore_ascii_case(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack.len() - i >= needle.len()
            && haystack[i..i + needle.len()].eq_ignore_ascii_case(needle)
        {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_line_endings;

    #[test]
    fn mailbox_address_is_replaced_whatever_its_case() {
        let out = super::replace_ignore_ascii_case(
            b"Me@Real.test wrote: <me@real.test>",
            b"me@real.test",
            b"shop@alias.test",
        );
        assert_eq!(out, b"shop@alias.test wrote: <shop@alias.test>");
    }

    #[test]
    fn only_failure_reports_are_bounces() {
        let dsn = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nAction: failed\r\n";
        let delayed = b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nAction: delayed\r\n";
        assert!(super::is_failure_report(dsn));
        assert!(!super::is_failure_report(delayed));
        assert!(!super::is_failure_report(
            b"Subject: Out of office\r\n\r\nback monday\r\n"
        ));
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(&*normalize_line_endings(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(
            &*normalize_line_endings(b"a\nb\r.\r\n\n"),
            b"a\r\nb\r\n.\r\n\r\n"
        );
        assert_eq!(&*normalize_line_endings(b"\n.\r\n"), b"\r\n.\r\n");
    }
}
