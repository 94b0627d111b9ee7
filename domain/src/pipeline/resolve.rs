//! Who an envelope recipient is: an alias, a reverse alias, a bounce address, postmaster.
//! Hits are cached (see [`crate::cache`]).

use std::sync::Arc;

use postern_entity::{alias, contact, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::Result;
use crate::accounts;
use crate::address::EmailAddress;
use crate::context::{Context, Route};
use crate::rewrite::SenderFormat;
use crate::verp::Verp;

/// What an envelope recipient resolves to.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// An alias: forward to its mailboxes (or record a block when disabled).
    Alias(Arc<Route>),
    /// A reverse alias: the owner writing to a contact.
    ReverseAlias {
        contact: Arc<contact::Model>,
        route: Arc<Route>,
    },
    /// A signed VERP address: a bounce for one of our deliveries.
    Bounce(Verp),
    /// `postmaster@`/`abuse@` one of our domains (or bare `postmaster`): to `mail.postmaster`.
    Postmaster(String),
    /// An address on our domains that does not exist.
    Unknown,
    /// Not our domain, or an address with routing tricks: we are not a relay.
    Foreign,
}

pub async fn resolve(ctx: &Context, rcpt: &str) -> Result<Recipient> {
    let settings = ctx.settings();
    let Ok(address) = EmailAddress::parse(rcpt) else {
        if rcpt.eq_ignore_ascii_case("postmaster") {
            return Ok(postmaster(ctx));
        }
        return Ok(Recipient::Foreign);
    };
    if !accounts::is_our_domain(settings, address.domain()) {
        return Ok(Recipient::Foreign);
    }
    if address.domain() == settings.mail.reply_domain && Verp::looks_like(address.local()) {
        return Ok(match Verp::verify(ctx.verp_key(), address.local()) {
            Some(verp) => Recipient::Bounce(verp),
            None => Recipient::Unknown,
        });
    }
    // Role addresses reach the operator even if an alias took the name before it was
    // reserved: abuse reports and DMARC reports must not go to a user.
    if matches!(address.local(), "postmaster" | "abuse")
        && let Recipient::Postmaster(to) = postmaster(ctx)
    {
        return Ok(Recipient::Postmaster(to));
    }
    if let Some(route) = route_by_address(ctx, address.as_str()).await? {
        return Ok(Recipient::Alias(route));
    }
    if let Some(contact) = contact_by_reverse_alias(ctx, address.as_str()).await?
        && let Some(route) = route_by_id(ctx, contact.alias_id).await?
    {
        // Nothing goes out from an alias in the trash.
        if route.alias.deleted_at.is_some() {
            return Ok(Recipient::Unknown);
        }
        return Ok(Recipient::ReverseAlias { contact, route });
    }
    if matches!(address.local(), "postmaster" | "abuse") {
        return Ok(postmaster(ctx));
    }
    Ok(Recipient::Unknown)
}

fn postmaster(ctx: &Context) -> Recipient {
    match &ctx.settings().mail.postmaster {
        Some(to) => Recipient::Postmaster(to.clone()),
        None => Recipient::Unknown,
    }
}

/// The alias at `address` with its mailboxes and owner's settings.
pub async fn route_by_address(ctx: &Context, address: &str) -> Result<Option<Arc<Route>>> {
    let key = address.to_lowercase();
    if let Some(route) = ctx.routes_by_address().get(&key) {
        return Ok(Some(route));
    }
    let Some(alias) = accounts::find_alias(ctx.db(), &key).await? else {
        return Ok(None);
    };
    let route = load_route(ctx, alias).await?;
    ctx.routes_by_address().insert(key, Arc::clone(&route));
    Ok(Some(route))
}

/// The alias with id `id`, as [`route_by_address`].
pub async fn route_by_id(ctx: &Context, id: i64) -> Result<Option<Arc<Route>>> {
    if let Some(route) = ctx.routes_by_id().get(&id) {
        return Ok(Some(route));
    }
    let Some(alias) = alias::Entity::find_by_id(id).one(ctx.db()).await? else {
        return Ok(None);
    };
    Ok(Some(load_route(ctx, alias).await?))
}

async fn load_route(ctx: &Context, alias: alias::Model) -> Result<Arc<Route>> {
    let db = ctx.db();
    let mailboxes: Vec<postern_entity::mailbox::Model> = accounts::alias_mailboxes(db, alias.id)
        .await?
        .into_iter()
        .filter(|m| m.verified)
        .collect();
    let authorized = accounts::authorized_addresses(db, mailboxes.iter().map(|m| m.id)).await?;
    let owner = user::Entity::find_by_id(alias.user_id).one(db).await?;
    let sender_format = owner
        .as_ref()
        .and_then(|u| SenderFormat::parse(&u.sender_format))
        .unwrap_or_default();
    let refuse_blocked = owner
        .as_ref()
        .is_some_and(|u| u.block_behaviour == "return_5xx");
    let hold_quarantined = owner.as_ref().is_some_and(|u| u.dmarc_quarantine == "hold");
    let spam_threshold = owner.and_then(|u| u.spam_threshold);
    let id = alias.id;
    let route = Arc::new(Route {
        alias,
        mailboxes,
        authorized,
        sender_format,
        refuse_blocked,
        hold_quarantined,
        spam_threshold,
    });
    ctx.routes_by_id().insert(id, Arc::clone(&route));
    Ok(route)
}

/// Whether `address` is one of our reverse aliases, or an alias of user `user_id`: a
/// forward from it would go round in a loop.
pub async fn is_our_own(ctx: &Context, address: &str, user_id: i64) -> Result<bool> {
    if !accounts::is_our_domain(ctx.settings(), crate::flow::domain_of(address)) {
        return Ok(false);
    }
    if contact_by_reverse_alias(ctx, address).await?.is_some() {
        return Ok(true);
    }
    Ok(route_by_address(ctx, address)
        .await?
        .is_some_and(|r| r.alias.user_id == user_id))
}

async fn contact_by_reverse_alias(
    ctx: &Context,
    address: &str,
) -> Result<Option<Arc<contact::Model>>> {
    let key = address.to_lowercase();
    if let Some(contact) = ctx.reverse_aliases().get(&key) {
        return Ok(Some(contact));
    }
    let Some(contact) = contact::Entity::find()
        .filter(contact::Column::ReplyEmail.eq(key.as_str()))
        .one(ctx.db())
        .await?
    else {
        return Ok(None);
    };
    let contact = Arc::new(contact);
    ctx.reverse_aliases().insert(key, Arc::clone(&contact));
    Ok(Some(contact))
}
