//! Who a recipient is, decided once at RCPT time and again after DATA.

use postern_config::Settings;
use postern_entity::{alias, contact};
use sea_orm::ConnectionTrait;

use crate::Result;
use crate::accounts;
use crate::address::EmailAddress;
use crate::secrets::HmacKey;
use crate::verp::Verp;

/// What an envelope recipient resolves to.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// An alias: forward to its mailboxes (or record a block when disabled).
    Alias(alias::Model),
    /// A reverse alias: the owner replying to a contact.
    ReverseAlias {
        contact: contact::Model,
        alias: alias::Model,
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

pub async fn resolve_rcpt(
    db: &impl ConnectionTrait,
    settings: &Settings,
    verp_key: &HmacKey,
    rcpt: &str,
) -> Result<Recipient> {
    let Ok(address) = EmailAddress::parse(rcpt) else {
        if rcpt.eq_ignore_ascii_case("postmaster") {
            return Ok(postmaster(settings));
        }
        return Ok(Recipient::Foreign);
    };
    if !accounts::is_our_domain(settings, address.domain()) {
        return Ok(Recipient::Foreign);
    }
    if address.domain() == settings.mail.reply_domain && Verp::looks_like(address.local()) {
        return Ok(match Verp::verify(verp_key, address.local()) {
            Some(verp) => Recipient::Bounce(verp),
            None => Recipient::Unknown,
        });
    }
    if let Some(alias) = accounts::find_alias(db, address.as_str()).await? {
        return Ok(Recipient::Alias(alias));
    }
    if let Some(contact) = accounts::find_contact_by_reverse_alias(db, address.as_str()).await?
        && let Some(alias) = alias_by_id(db, contact.alias_id).await?
    {
        return Ok(Recipient::ReverseAlias { contact, alias });
    }
    if matches!(address.local(), "postmaster" | "abuse") {
        return Ok(postmaster(settings));
    }
    Ok(Recipient::Unknown)
}

fn postmaster(settings: &Settings) -> Recipient {
    match &settings.mail.postmaster {
        Some(to) => Recipient::Postmaster(to.clone()),
        None => Recipient::Unknown,
    }
}

async fn alias_by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<alias::Model>> {
    use sea_orm::EntityTrait;
    Ok(alias::Entity::find_by_id(id).one(db).await?)
}
