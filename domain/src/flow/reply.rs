//! Reply: the owner writes to a reverse alias; the contact receives it from the alias, with
//! nothing that could reveal the mailbox, signed for the alias's domain.

use std::collections::HashMap;
use std::sync::Arc;

use postern_entity::activity::ActivityKind;
use postern_entity::contact;
use postern_entity::delivery::{self, DeliveryKind};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::notice::{Notice, NoticeKind};
use super::{ContactRef, NewActivity, NewMessageId, Plan, Thread, cpu, domain_of, thread_ids};
use crate::accounts;
use crate::context::Context;
use crate::delivery::Source;
use crate::delivery::queue::NewDelivery;
use crate::message::ParsedMessage;
use crate::pipeline::decide::{Decision, RefuseReason};
use crate::pipeline::resolve::{self, Recipient};
use crate::rewrite::{self, Mailbox, ReplyContext, RewriteError};
use crate::scrub::Scrubber;
use crate::{DomainError, Result};

/// The reverse aliases among a reply's To/Cc addresses, with their contacts.
pub async fn known_reverse_aliases(
    ctx: &Context,
    message: &ParsedMessage,
) -> Result<HashMap<String, Arc<contact::Model>>> {
    let mut known = HashMap::new();
    for address in message.recipients.iter().take(1000) {
        if let Recipient::ReverseAlias { contact, .. } = resolve::resolve(ctx, address).await? {
            known.insert(address.clone(), contact);
        }
    }
    Ok(known)
}

/// The writes of a reply decision (sent or refused).
pub fn plan(
    decision: &Decision,
    message: &ParsedMessage,
    source_token: &str,
    mail_from: &str,
    plan: &mut Plan,
) {
    match decision {
        Decision::Reply {
            route, contacts, ..
        } => {
            let alias = &route.alias;
            if let Some(original) = &message.inspection.message_id {
                plan.message_ids.push(NewMessageId {
                    alias_id: alias.id,
                    ours: format!("{source_token}@{}", domain_of(&alias.email)),
                    original: original.clone(),
                });
            }
            for c in contacts {
                plan.deliveries.push(NewDelivery {
                    kind: DeliveryKind::Reply,
                    rcpt: c.email.clone(),
                    user_id: Some(alias.user_id),
                    alias_id: Some(alias.id),
                    contact_id: Some(c.id),
                });
                plan.activities.push(NewActivity {
                    user_id: alias.user_id,
                    alias_id: alias.id,
                    contact: ContactRef::Id(c.id),
                    kind: ActivityKind::Reply,
                    detail: message.subject().map(str::to_string),
                });
            }
        }
        Decision::RefuseReply {
            route,
            mailbox,
            reason,
        } => {
            let alias = &route.alias;
            let detail = match reason {
                RefuseReason::Unauthorised => format!("reply from unauthorised {mail_from}"),
                RefuseReason::Unauthenticated => {
                    format!("reply from {mail_from} that does not authenticate for its domain")
                }
                RefuseReason::UnknownRecipients(list) => {
                    format!("reply to non-reverse-alias {}", list.join(", "))
                }
            };
            plan.activities.push(NewActivity {
                user_id: alias.user_id,
                alias_id: alias.id,
                contact: ContactRef::None,
                kind: ActivityKind::Refused,
                detail: Some(detail),
            });
            if let (Some(mailbox), RefuseReason::UnknownRecipients(list)) = (mailbox, reason) {
                let subject = message.subject().unwrap_or_default();
                let text = format!(
                    "Your message \"{subject}\" sent from {alias} was NOT sent to anyone.\n\n\
                     These recipients are not reverse aliases of {alias}: {list}\n\n\
                     To keep your real address private, a message sent through an alias may only go to \
                     the reverse aliases of that alias's contacts. Write to each contact through the \
                     address shown in the From field of the mail you received from them.",
                    alias = alias.email,
                    list = list.join(", "),
                );
                plan.notices.push(Notice {
                    kind: NoticeKind::ReplyRefused,
                    user_id: Some(alias.user_id),
                    alias_id: Some(alias.id),
                    to: vec![mailbox.email.clone()],
                    subject: "Your message was not sent".into(),
                    text,
                    actions: Vec::new(),
                });
            }
            // A forger learns nothing (the SMTP answer is 250); the owner is told, a few
            // times an hour at most, at a mailbox of the alias.
            if matches!(
                reason,
                RefuseReason::Unauthorised | RefuseReason::Unauthenticated
            ) && let Some(to) = route.mailboxes.first()
            {
                let subject = message.subject().unwrap_or_default();
                let why = match reason {
                    RefuseReason::Unauthorised => {
                        format!("{mail_from} is not one of the alias's mailboxes")
                    }
                    _ => format!(
                        "the message claimed to come from {mail_from} but did not prove it \
                         (no SPF pass and no DKIM signature of its domain)"
                    ),
                };
                plan.notices.push(Notice {
                    kind: NoticeKind::SpoofAttempt,
                    user_id: Some(alias.user_id),
                    alias_id: Some(alias.id),
                    to: vec![to.email.clone()],
                    actions: vec![crate::action::Action::DisableAlias(alias.id)],
                    subject: "Someone tried to send through your alias".into(),
                    text: format!(
                        "A message \"{subject}\" tried to go out from your alias {alias} through \
                         one of its reverse aliases, and was NOT sent: {why}.\n\n\
                         If it was you, send from the mailbox itself, through its own mail \
                         server, so the message is authenticated.",
                        alias = alias.email
                    ),
                });
            }
        }
        _ => {}
    }
}

/// What a reply delivery sends: the owner's message, from the alias, scrubbed, signed.
pub async fn render(ctx: &Context, d: &delivery::Model, source: Arc<Source>) -> Result<Vec<u8>> {
    let route = super::route_of(ctx, d).await?;
    let alias_id = route.alias.id;
    let message = &source.message;
    let mut contacts: HashMap<String, Mailbox> = HashMap::new();
    let mut wanted: Vec<&str> = message
        .recipients
        .iter()
        .map(String::as_str)
        .take(1000)
        .collect();
    let own = match d.contact_id {
        Some(id) => contact::Entity::find_by_id(id).one(ctx.db()).await?,
        None => None,
    };
    if let Some(c) = &own {
        wanted.retain(|a| *a != c.reply_email);
        contacts.insert(c.reply_email.clone(), mailbox_of(c));
    }
    for chunk in wanted.chunks(500) {
        let rows = contact::Entity::find()
            .filter(contact::Column::AliasId.eq(alias_id))
            .filter(contact::Column::ReplyEmail.is_in(chunk.iter().copied()))
            .all(ctx.db())
            .await?;
        contacts.extend(rows.iter().map(|c| (c.reply_email.clone(), mailbox_of(c))));
    }
    let map_ids = thread_ids(
        ctx.db(),
        alias_id,
        &message.inspection.in_reply_to,
        &message.inspection.references,
        Thread::OriginalToOurs,
    )
    .await?;
    // Everything that would name the owner: every mailbox of theirs and the account address.
    let mut owner_addresses: Vec<String> = accounts::user_mailboxes(ctx.db(), route.alias.user_id)
        .await?
        .into_iter()
        .map(|m| m.email)
        .collect();
    owner_addresses.extend(
        accounts::find_user_by_id(ctx.db(), route.alias.user_id)
            .await?
            .map(|u| u.email),
    );
    let ctx = ctx.clone();
    cpu(move || {
        let alias = &route.alias;
        let alias_domain = domain_of(&alias.email);
        let mailbox = source.mail_from.to_lowercase();
        let new_message_id = format!("{}@{alias_domain}", source.token);
        let rewrite_ctx = ReplyContext {
            alias: &alias.email,
            mailbox: &mailbox,
            alias_name: alias.name.as_deref(),
            contacts: &contacts,
            new_message_id: &new_message_id,
            map_ids: &map_ids,
        };
        let rewritten = match rewrite::rewrite_reply(source.message.raw(), &rewrite_ctx) {
            Ok(r) => r,
            Err(RewriteError::UnknownRecipient(address)) => {
                return Err(DomainError::Invalid(format!(
                    "{address} is not a reverse alias of {}",
                    alias.email
                )));
            }
            Err(e) => return Err(DomainError::MalformedMessage(e.to_string())),
        };
        // Quoted text, signatures, encoded parts and attached messages can carry the owner's
        // addresses too: each becomes the alias.
        owner_addresses.push(mailbox.clone());
        let scrubber = Scrubber::new(owner_addresses.iter().map(String::as_str), &alias.email);
        let rewritten = scrubber.message(&rewritten);
        ctx.signers().sign(alias_domain, rewritten)
    })
    .await
}

fn mailbox_of(c: &contact::Model) -> Mailbox {
    Mailbox {
        name: c.name.clone(),
        address: c.email.clone(),
    }
}
