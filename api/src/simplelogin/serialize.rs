//! The JSON shapes of SimpleLogin's objects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use postern_domain::listing::AliasStats;
use postern_entity::{alias, contact, mailbox};
use serde_json::{Value, json};

/// `"2020-04-06 17:57:14+00:00"`.
pub fn date(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
}

/// `"Name | bob at ext.test" <reverse@reply>` or `"bob at ext.test" <reverse@reply>`.
pub fn reverse_alias(c: &contact::Model) -> String {
    let at = c.email.replace('@', " at ");
    match c
        .name
        .as_deref()
        .map(|n| n.replace('"', ""))
        .filter(|n| !n.trim().is_empty())
    {
        Some(name) => format!("\"{name} | {at}\" <{}>", c.reply_email),
        None => format!("\"{at}\" <{}>", c.reply_email),
    }
}

fn mailbox_ref(m: &mailbox::Model) -> Value {
    json!({ "id": m.id, "email": m.email })
}

/// The alias object (`serialize_alias_info_v2`).
pub fn alias(a: &alias::Model, stats: Option<&AliasStats>, mailboxes: &[mailbox::Model]) -> Value {
    let empty = AliasStats::default();
    let stats = stats.unwrap_or(&empty);
    let latest = stats.latest.as_ref().map(|(activity, contact)| {
        let action = match activity.kind.as_str() {
            "bounce" => "bounced",
            other => other,
        };
        json!({
            "timestamp": activity.created_at.timestamp(),
            "action": action,
            "contact": contact.as_ref().map(|c| json!({
                "email": c.email,
                "name": c.name,
                "reverse_alias": reverse_alias(c),
            })),
        })
    });
    json!({
        "id": a.id,
        "email": a.email,
        "creation_date": date(&a.created_at),
        "creation_timestamp": a.created_at.timestamp(),
        "enabled": a.enabled,
        "note": a.note,
        "name": a.name,
        "nb_forward": stats.forwards,
        "nb_block": stats.blocks,
        "nb_reply": stats.replies,
        "mailbox": mailboxes.first().map(mailbox_ref),
        "mailboxes": mailboxes.iter().map(mailbox_ref).collect::<Vec<_>>(),
        "support_pgp": false,
        "disable_pgp": false,
        "latest_activity": latest,
        "pinned": a.pinned,
    })
}

/// The mailbox object (`mailbox_to_dict`).
pub fn mailbox(m: &mailbox::Model, default_id: Option<i64>, nb_alias: i64) -> Value {
    json!({
        "id": m.id,
        "email": m.email,
        "verified": m.verified,
        "default": Some(m.id) == default_id,
        "creation_timestamp": m.created_at.timestamp(),
        "nb_alias": nb_alias,
    })
}

/// Alias objects for a page, with counters and mailboxes loaded in a few queries.
pub async fn aliases(
    db: &impl sea_orm::ConnectionTrait,
    aliases: &[alias::Model],
) -> Result<Vec<Value>, postern_domain::DomainError> {
    let ids: Vec<i64> = aliases.iter().map(|a| a.id).collect();
    let stats = postern_domain::listing::alias_stats(db, &ids).await?;
    let mut mailboxes: HashMap<i64, Vec<mailbox::Model>> =
        postern_domain::listing::alias_mailboxes(db, &ids).await?;
    Ok(aliases
        .iter()
        .map(|a| {
            alias(
                a,
                stats.get(&a.id),
                &mailboxes.remove(&a.id).unwrap_or_default(),
            )
        })
        .collect())
}

/// The contact object (`serialize_contact`).
pub fn contact(c: &contact::Model, last_reply: Option<&DateTime<Utc>>, existed: bool) -> Value {
    json!({
        "id": c.id,
        "contact": c.email,
        "creation_date": date(&c.created_at),
        "creation_timestamp": c.created_at.timestamp(),
        "last_email_sent_date": last_reply.map(date),
        "last_email_sent_timestamp": last_reply.map(|t| t.timestamp()),
        "reverse_alias": reverse_alias(c),
        "reverse_alias_address": c.reply_email,
        "existed": existed,
        "block_forward": c.blocked,
    })
}
