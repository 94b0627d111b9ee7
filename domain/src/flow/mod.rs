//! The mail flows, each a path through the pipeline's stages: [`forward`], [`reply`],
//! [`bounce`] (with [`autoreply`]) and [`notice`]. A flow turns decisions into a [`Plan`] of writes (committed by
//! the group-commit writer) and renders what each of its deliveries sends.

pub mod autoreply;
pub mod bounce;
pub mod forward;
pub mod notice;
pub mod reply;

use std::collections::HashMap;

use postern_entity::activity::{self, ActivityKind};
use postern_entity::delivery::{self, DeliveryKind};
use postern_entity::{contact, message_id};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::Result;
use crate::context::Context;
use crate::delivery::Source;
use crate::delivery::queue::{self, NewDelivery};
use crate::verp::Verp;

/// A contact to create if the alias does not have it yet.
#[derive(Debug, Clone)]
pub struct NewContact {
    pub user_id: i64,
    pub alias_id: i64,
    pub email: String,
    pub name: Option<String>,
    pub reply_email: String,
}

/// Who an activity is about.
#[derive(Debug, Clone)]
pub enum ContactRef {
    None,
    Id(i64),
    /// A contact of the activity's alias, perhaps created in the same commit.
    Email(String),
}

#[derive(Debug, Clone)]
pub struct NewActivity {
    pub user_id: i64,
    pub alias_id: i64,
    pub contact: ContactRef,
    pub kind: ActivityKind,
    pub detail: Option<String>,
}

/// The Message-ID we give a reply, and the one the mailbox gave it.
#[derive(Debug, Clone)]
pub struct NewMessageId {
    pub alias_id: i64,
    pub ours: String,
    pub original: String,
}

/// Everything one received message writes, committed at once.
#[derive(Debug, Default)]
pub struct Plan {
    /// Deliveries of the received message (stored once when there are any).
    pub deliveries: Vec<NewDelivery>,
    pub contacts: Vec<NewContact>,
    pub activities: Vec<NewActivity>,
    pub message_ids: Vec<NewMessageId>,
    pub notices: Vec<notice::Notice>,
    /// Mail to a bounce address, and whether its `From:` authenticates (SPF pass or aligned
    /// DKIM for its domain, and no failing DMARC reject or quarantine policy).
    pub bounces: Vec<(Verp, bool)>,
    /// `(to, rcpt)`: mail to postmaster@/abuse@ passed on to `to`.
    pub postmaster: Vec<(String, String)>,
    /// Held instead of forwarded (the received message is stored for them too).
    pub quarantined: Vec<NewQuarantine>,
    /// `(alias, sender)`: forwards whose sender's contact is created in this commit; their
    /// deliveries get its id (a bounce or an automatic reply later needs it).
    pub new_senders: Vec<(i64, String)>,
}

/// A message held for an alias.
#[derive(Debug, Clone)]
pub struct NewQuarantine {
    pub user_id: i64,
    pub alias_id: i64,
    pub sender: String,
    pub subject: Option<String>,
    pub reason: String,
}

/// The deliveries a commit queued (all claimed by this instance for their first attempt).
#[derive(Debug, Default)]
pub struct Committed {
    /// Rendered from the received message.
    pub received: Vec<delivery::Model>,
    /// Notices and the like, each with a stored message of its own.
    pub other: Vec<delivery::Model>,
}

impl Plan {
    /// Applies the plan inside the caller's transaction. `stored` is the message's bytes
    /// when they are handed over instead of copied (large messages, which are then not kept
    /// in memory for the first attempt).
    pub async fn apply(
        &self,
        ctx: &Context,
        db: &impl ConnectionTrait,
        source: &Source,
        stored: Option<Vec<u8>>,
    ) -> Result<Committed> {
        let mut out = Committed::default();
        let queue_settings = &ctx.settings().queue;
        insert_contacts(db, &self.contacts).await?;
        let mut deliveries = self.deliveries.clone();
        for (alias_id, sender) in &self.new_senders {
            let Some(contact_id) = find_contact_id(db, *alias_id, sender).await? else {
                continue;
            };
            for d in deliveries
                .iter_mut()
                .filter(|d| d.alias_id == Some(*alias_id) && d.contact_id.is_none())
            {
                d.contact_id = Some(contact_id);
            }
        }
        if !deliveries.is_empty() || !self.quarantined.is_empty() {
            let raw = match stored {
                Some(raw) => raw,
                None => source.message.raw().to_vec(),
            };
            let id = queue::store_message(
                db,
                Some(&source.mail_from),
                Some(&source.token),
                source.client.as_ref(),
                raw,
            )
            .await?;
            out.received =
                queue::enqueue(db, queue_settings, ctx.instance(), id, &deliveries).await?;
            for q in &self.quarantined {
                crate::quarantine::hold(db, id, q).await?;
            }
        }
        for (to, rcpt) in &self.postmaster {
            // Passed on as it came, marked, unsigned: we do not vouch for its content.
            let mut raw = format!("X-Postern-Postmaster: {rcpt}\r\n").into_bytes();
            raw.extend_from_slice(source.message.raw());
            let id = queue::store_message(db, Some(&source.mail_from), None, None, raw).await?;
            let delivery = NewDelivery {
                kind: DeliveryKind::Postmaster,
                rcpt: to.clone(),
                user_id: None,
                alias_id: None,
                contact_id: None,
            };
            out.other
                .extend(queue::enqueue(db, queue_settings, ctx.instance(), id, &[delivery]).await?);
        }
        for a in &self.activities {
            let contact_id = match &a.contact {
                ContactRef::None => None,
                ContactRef::Id(id) => Some(*id),
                ContactRef::Email(email) => find_contact_id(db, a.alias_id, email).await?,
            };
            record(db, a, contact_id).await?;
        }
        for m in &self.message_ids {
            message_id::Entity::insert(message_id::ActiveModel {
                alias_id: Set(m.alias_id),
                our_id: Set(m.ours.clone()),
                original_id: Set(m.original.chars().take(250).collect()),
                created_at: Set(chrono::Utc::now()),
                ..Default::default()
            })
            .on_conflict(
                OnConflict::column(message_id::Column::OurId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        }
        for (verp, from_authenticated) in &self.bounces {
            out.other
                .extend(bounce::received(ctx, db, verp, source, *from_authenticated).await?);
        }
        for n in &self.notices {
            out.other.extend(notice::store(ctx, db, n).await?);
        }
        Ok(out)
    }
}

/// Creates the contacts that do not exist yet; an existing one keeps its reverse alias and
/// takes the display name it now uses.
async fn insert_contacts(db: &impl ConnectionTrait, contacts: &[NewContact]) -> Result<()> {
    for c in contacts {
        let mut on_conflict =
            OnConflict::columns([contact::Column::AliasId, contact::Column::Email]);
        if c.name.is_some() {
            on_conflict.update_column(contact::Column::Name);
        } else {
            on_conflict.do_nothing();
        }
        contact::Entity::insert(contact::ActiveModel {
            user_id: Set(c.user_id),
            alias_id: Set(c.alias_id),
            email: Set(c.email.clone()),
            name: Set(c.name.clone()),
            reply_email: Set(c.reply_email.clone()),
            blocked: Set(false),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        })
        .on_conflict(on_conflict.to_owned())
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

async fn find_contact_id(
    db: &impl ConnectionTrait,
    alias_id: i64,
    email: &str,
) -> Result<Option<i64>> {
    Ok(crate::accounts::find_contact(db, alias_id, email)
        .await?
        .map(|c| c.id))
}

/// Writes one activity row.
pub async fn record(
    db: &impl ConnectionTrait,
    a: &NewActivity,
    contact_id: Option<i64>,
) -> Result<()> {
    activity::Entity::insert(activity::ActiveModel {
        user_id: Set(a.user_id),
        alias_id: Set(a.alias_id),
        contact_id: Set(contact_id),
        kind: Set(a.kind),
        detail: Set(a.detail.as_ref().map(|d| d.chars().take(500).collect())),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Which way to translate Message-IDs between what mailboxes and what contacts see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    /// Ids we minted for replies → the mailbox's originals (a contact answers a reply).
    OursToOriginal,
    /// The mailbox's originals → ids we minted (the owner replies again in a thread).
    OriginalToOurs,
}

/// Message-ID translations for the ids a message refers to.
pub async fn thread_ids(
    db: &impl ConnectionTrait,
    alias_id: i64,
    in_reply_to: &[String],
    references: &[String],
    direction: Thread,
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
    let column = match direction {
        Thread::OursToOriginal => message_id::Column::OurId,
        Thread::OriginalToOurs => message_id::Column::OriginalId,
    };
    let rows = message_id::Entity::find()
        .filter(message_id::Column::AliasId.eq(alias_id))
        .filter(column.is_in(ids))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| match direction {
            Thread::OursToOriginal => (r.our_id, r.original_id),
            Thread::OriginalToOurs => (r.original_id, r.our_id),
        })
        .collect())
}

/// The alias a delivery belongs to; an error (permanent) when it has none any more.
pub(crate) async fn route_of(
    ctx: &Context,
    d: &delivery::Model,
) -> Result<std::sync::Arc<crate::context::Route>> {
    let alias_id = d
        .alias_id
        .ok_or_else(|| crate::DomainError::Invalid("a delivery without an alias".into()))?;
    crate::pipeline::resolve::route_by_id(ctx, alias_id)
        .await?
        .ok_or_else(|| crate::DomainError::Invalid("the alias no longer exists".into()))
}

pub(crate) fn domain_of(address: &str) -> &str {
    address.rsplit('@').next().unwrap_or_default()
}

/// Runs CPU work (rewriting, signing) on the blocking pool.
pub(crate) async fn cpu<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::DomainError::Unavailable(format!("blocking task: {e}")))?
}
