//! Forward: mail to an alias goes to the alias's mailboxes, `From:` rewritten to the
//! sender's reverse alias, signed for the reply domain, with a VERP envelope.

use std::collections::HashMap;
use std::sync::Arc;

use postern_entity::activity::ActivityKind;
use postern_entity::contact;
use postern_entity::delivery::{self, DeliveryKind};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{ContactRef, NewActivity, NewContact, Plan, Thread, cpu, domain_of, thread_ids};
use crate::accounts;
use crate::address::EmailAddress;
use crate::context::{Context, Route};
use crate::delivery::Source;
use crate::delivery::queue::NewDelivery;
use crate::message::ParsedMessage;
use crate::pipeline::decide::{Decision, Hold};
use crate::rewrite::{self, ForwardContext, Mailbox};
use crate::{DomainError, Result};

/// The sender as the forward shows it: the From header, else the envelope sender.
pub fn sender(message: &ParsedMessage, mail_from: &str, reply_domain: &str) -> Mailbox {
    message
        .inspection
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
            address: format!("noreply@{reply_domain}"),
        })
}

/// Everyone a forward names who gets a reverse alias, sender first, each once (lowercased),
/// at most `limits.contacts_per_message` of them: a message with 50,000 Cc addresses must
/// not create 50,000 contacts.
/// The sender gets one even on our own domains: the owner's answer must go back through the
/// reply flow, never straight from the mailbox. Others on our domains, and the alias, do not.
fn correspondents(
    ctx: &Context,
    route: &Route,
    message: &ParsedMessage,
    sender: &Mailbox,
) -> Vec<Mailbox> {
    let mut out = vec![Mailbox {
        name: sender.name.clone(),
        address: sender.address.to_lowercase(),
    }];
    let bound = ctx.settings().limits.contacts_per_message.max(1);
    for (_, mb) in &message.inspection.addresses {
        if out.len() >= bound {
            break;
        }
        let address = mb.address.to_lowercase();
        if address == route.alias.email
            || out.iter().any(|m| m.address == address)
            || accounts::is_our_domain(ctx.settings(), domain_of(&address))
        {
            continue;
        }
        out.push(Mailbox {
            name: mb.name.clone(),
            address,
        });
    }
    out
}

/// The alias's existing contacts among `people`, by address: from the cache, the rest from
/// the database (and then cached).
async fn existing_contacts(
    ctx: &Context,
    alias_id: i64,
    people: &[Mailbox],
) -> Result<HashMap<String, Arc<contact::Model>>> {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for m in people {
        match ctx.contacts().get(&(alias_id, m.address.clone())) {
            Some(c) => {
                found.insert(m.address.clone(), c);
            }
            None => missing.push(m.address.as_str()),
        }
    }
    for chunk in missing.chunks(500) {
        let rows = contact::Entity::find()
            .filter(contact::Column::AliasId.eq(alias_id))
            .filter(contact::Column::Email.is_in(chunk.iter().copied()))
            .all(ctx.db())
            .await?;
        for c in rows {
            let c = Arc::new(c);
            ctx.contacts()
                .insert((alias_id, c.email.clone()), Arc::clone(&c));
            found.insert(c.email.clone(), c);
        }
    }
    Ok(found)
}

/// What resolve needs to know to decide, and the plan to build the writes.
#[derive(Debug)]
pub struct Facts {
    pub sender: Mailbox,
    people: Vec<Mailbox>,
    existing: HashMap<String, Arc<contact::Model>>,
}

impl Facts {
    pub async fn gather(
        ctx: &Context,
        route: &Route,
        message: &ParsedMessage,
        mail_from: &str,
    ) -> Result<Self> {
        let sender = sender(message, mail_from, &ctx.settings().mail.reply_domain);
        let people = correspondents(ctx, route, message, &sender);
        let existing = existing_contacts(ctx, route.alias.id, &people).await?;
        Ok(Self {
            sender,
            people,
            existing,
        })
    }

    pub fn sender_blocked(&self) -> bool {
        self.existing
            .get(&self.sender.address.to_lowercase())
            .is_some_and(|c| c.blocked)
    }

    /// Address → reverse alias for everyone named: the stored one, or the one a new contact
    /// gets (derived, so every process computes the same one without a write lock).
    fn reverse_aliases(&self, ctx: &Context, alias_id: i64) -> HashMap<String, String> {
        self.people
            .iter()
            .map(|m| {
                let reverse = match self.existing.get(&m.address) {
                    Some(c) => c.reply_email.clone(),
                    None => derived(ctx, alias_id, &m.address),
                };
                (m.address.clone(), reverse)
            })
            .collect()
    }

    fn new_contact(&self, ctx: &Context, route: &Route, m: &Mailbox) -> Option<NewContact> {
        let existing = self.existing.get(&m.address);
        if existing.is_some_and(|c| m.name.is_none() || c.name == m.name) {
            return None;
        }
        Some(NewContact {
            user_id: route.alias.user_id,
            alias_id: route.alias.id,
            email: m.address.clone(),
            name: m.name.as_ref().map(|n| n.chars().take(256).collect()),
            reply_email: derived(ctx, route.alias.id, &m.address),
        })
    }
}

fn derived(ctx: &Context, alias_id: i64, address: &str) -> String {
    accounts::reverse_alias_address(
        ctx.reverse_alias_key(),
        alias_id,
        address,
        &ctx.settings().mail.reply_domain,
    )
}

/// The writes of a forward decision (forward, block or loop).
pub fn plan(
    ctx: &Context,
    decision: &Decision,
    facts: &Facts,
    message: &ParsedMessage,
    mail_from: &str,
    plan: &mut Plan,
) {
    let (route, kind, detail) = match decision {
        Decision::Forward(route) => (
            route,
            ActivityKind::Forward,
            message.subject().map(str::to_string),
        ),
        Decision::Block(route, reason) => (
            route,
            ActivityKind::Block,
            Some(reason.as_str().to_string()),
        ),
        Decision::Quarantine(route, _) => (
            route,
            ActivityKind::Quarantined,
            message.subject().map(str::to_string),
        ),
        Decision::Loop(route) => {
            plan.activities.push(NewActivity {
                user_id: route.alias.user_id,
                alias_id: route.alias.id,
                contact: ContactRef::None,
                kind: ActivityKind::Loop,
                detail: Some(format!("from own mailbox {}", mail_from.to_lowercase())),
            });
            return;
        }
        _ => return,
    };
    let forward = matches!(decision, Decision::Forward(_));
    // The sender's contact always (so the owner can block it); the others only when the
    // forward carries their reverse aliases.
    let take = if forward { facts.people.len() } else { 1 };
    for m in facts.people.iter().take(take) {
        if let Some(c) = facts.new_contact(ctx, route, m) {
            plan.contacts.push(c);
        }
    }
    let sender = facts.sender.address.to_lowercase();
    let contact = match facts.existing.get(&sender) {
        Some(c) => ContactRef::Id(c.id),
        None => {
            if forward {
                plan.new_senders.push((route.alias.id, sender.clone()));
            }
            ContactRef::Email(sender)
        }
    };
    if let Decision::Quarantine(route, hold) = decision {
        let (reason, why) = match hold {
            Hold::Dmarc => (
                "the sender's domain asks for quarantine, and the message fails its DMARC check"
                    .to_string(),
                "fails the DMARC check its sender's domain asks for: it may be forged".to_string(),
            ),
            Hold::Spam { score, threshold } => (
                format!(
                    "the spam filter scored it {}, above your threshold of {}",
                    tenths(*score),
                    tenths(*threshold)
                ),
                format!(
                    "was scored {} by the spam filter, above your threshold of {}",
                    tenths(*score),
                    tenths(*threshold)
                ),
            ),
        };
        plan.quarantined.push(super::NewQuarantine {
            user_id: route.alias.user_id,
            alias_id: route.alias.id,
            sender: facts.sender.address.to_lowercase(),
            subject: message.subject().map(str::to_string),
            reason,
        });
        plan.notices.push(super::notice::Notice {
            kind: super::notice::NoticeKind::Quarantined,
            user_id: Some(route.alias.user_id),
            alias_id: Some(route.alias.id),
            to: route
                .forwards_to()
                .take(1)
                .map(|m| m.email.clone())
                .collect(),
            subject: format!("{} has a new mail in quarantine", route.alias.email),
            text: format!(
                "A message from {sender} to your alias {alias} (\"{subject}\") {why}. It is \
                 held in your quarantine, where you can release it or delete it \
                 (GET /api/quarantine).",
                sender = facts.sender.address.to_lowercase(),
                alias = route.alias.email,
                subject = message.subject().unwrap_or_default(),
            ),
            actions: Vec::new(),
        });
    }
    if forward {
        plan.deliveries
            .extend(route.forwards_to().map(|m| NewDelivery {
                kind: DeliveryKind::Forward,
                rcpt: m.email.clone(),
                user_id: Some(route.alias.user_id),
                alias_id: Some(route.alias.id),
                contact_id: match &contact {
                    ContactRef::Id(id) => Some(*id),
                    _ => None,
                },
            }));
    }
    plan.activities.push(NewActivity {
        user_id: route.alias.user_id,
        alias_id: route.alias.id,
        contact,
        kind,
        detail,
    });
}

/// What a forward delivery sends: the received message rewritten for the owner, ARC-sealed
/// and DKIM-signed.
pub async fn render(ctx: &Context, d: &delivery::Model, source: Arc<Source>) -> Result<Vec<u8>> {
    let route = super::route_of(ctx, d).await?;
    let alias_id = route.alias.id;
    let message = &source.message;
    let facts = match source.facts(alias_id) {
        Some(facts) => facts,
        None => Arc::new(Facts::gather(ctx, &route, message, &source.mail_from).await?),
    };
    let reverse_aliases = facts.reverse_aliases(ctx, alias_id);
    let restore_ids = thread_ids(
        ctx.db(),
        alias_id,
        &message.inspection.in_reply_to,
        &message.inspection.references,
        Thread::OursToOriginal,
    )
    .await?;
    let ctx = ctx.clone();
    cpu(move || {
        let reply_domain = &ctx.settings().mail.reply_domain;
        let rewrite_ctx = ForwardContext {
            alias: &route.alias.email,
            envelope_from: &source.mail_from,
            original_from: Some(&facts.sender),
            reverse_aliases: &reverse_aliases,
            restore_ids: &restore_ids,
            sender_format: route.sender_format,
            warning: crate::pipeline::authenticate::quarantined(
                source.message.raw(),
                &ctx.settings().mail.hostname,
            ),
        };
        let mut rewritten = rewrite::rewrite_forward(source.message.raw(), &rewrite_ctx)
            .map_err(|e| DomainError::MalformedMessage(e.to_string()))?;
        if source.message.inspection.message_id.is_none() {
            // Receivers distrust mail without one; ours carries nothing about the alias.
            let id = format!("Message-ID: <{}@{reply_domain}>\r\n", source.token);
            rewritten.splice(0..0, id.into_bytes());
        }
        let sealed = if ctx.settings().dkim.arc_seal {
            crate::pipeline::authenticate::seal(
                &ctx,
                source.message.raw(),
                reply_domain,
                rewritten,
            )?
        } else {
            rewritten
        };
        ctx.signers().sign(reply_domain, sealed)
    })
    .await
}

/// A score in tenths of a point, as people write it: `7.5`, `-0.3`.
fn tenths(t: i32) -> String {
    format!("{:.1}", f64::from(t) / 10.0)
}
