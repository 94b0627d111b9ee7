//! Automatic replies that come back to a bounce address (RFC 3834 responders answer the
//! envelope sender, which is our VERP address): they are mail for a person, not bounces.
//!
//! - A contact's vacation notice, answering the owner's reply, is forwarded to the owner like
//!   any mail from that contact (From rewritten to the contact's reverse alias).
//! - The owner's mailbox answering a forward goes to the contact through the reply flow, with
//!   all of its rewriting and scrubbing: it must not reveal the mailbox either.
//!
//! Only a reply from the address the delivery went to is passed on, and only when it
//! authenticates for that address's domain (SPF pass or aligned DKIM, no failing DMARC
//! reject or quarantine): the bounce address is visible to whoever received the delivery,
//! so it is no credential by itself. At most [`PER_DAY`] a day per alias and contact,
//! counted in the database, so two responders cannot keep each other busy.

use postern_entity::activity::ActivityKind;
use postern_entity::contact;
use postern_entity::delivery::{self, DeliveryKind};
use sea_orm::{ConnectionTrait, EntityTrait};

use super::{ContactRef, NewActivity, record};
use crate::Result;
use crate::context::Context;
use crate::delivery::Source;
use crate::delivery::queue::{self, NewDelivery};

const PER_DAY: u64 = 3;

/// Routes mail that came to the bounce address of `d` and is not a report.
pub async fn route(
    ctx: &Context,
    db: &impl ConnectionTrait,
    d: &delivery::Model,
    source: &Source,
    verp_address: &str,
    from_authenticated: bool,
) -> Result<Vec<delivery::Model>> {
    let (Some(alias_id), Some(contact_id)) = (d.alias_id, d.contact_id) else {
        return Ok(Vec::new());
    };
    let Some(route) = crate::pipeline::resolve::route_by_id(ctx, alias_id).await? else {
        return Ok(Vec::new());
    };
    let Some(contact) = contact::Entity::find_by_id(contact_id).one(db).await? else {
        return Ok(Vec::new());
    };
    let alias = &route.alias;
    let mut activity = NewActivity {
        user_id: alias.user_id,
        alias_id: alias.id,
        contact: ContactRef::Id(contact.id),
        kind: ActivityKind::AutoReply,
        detail: None,
    };
    let genuine = from_authenticated && from_is(source, &d.rcpt) && alias.deleted_at.is_none();
    let within = genuine && routed_today(db, alias.id, contact.id).await? < PER_DAY;
    let (deliveries, rewritten_to, mail_from, detail) = match d.kind {
        DeliveryKind::Reply if within && alias.enabled && !contact.blocked => (
            route
                .forwards_to()
                .map(|m| NewDelivery {
                    kind: DeliveryKind::Forward,
                    rcpt: m.email.clone(),
                    user_id: Some(alias.user_id),
                    alias_id: Some(alias.id),
                    contact_id: Some(contact.id),
                })
                .collect::<Vec<_>>(),
            alias.email.clone(),
            source.mail_from.clone(),
            format!("{ROUTED} from {}, forwarded", contact.email),
        ),
        DeliveryKind::Forward if within => (
            vec![NewDelivery {
                kind: DeliveryKind::Reply,
                rcpt: contact.email.clone(),
                user_id: Some(alias.user_id),
                alias_id: Some(alias.id),
                contact_id: Some(contact.id),
            }],
            contact.reply_email.clone(),
            // The reply flow scrubs the mailbox the reply came from.
            d.rcpt.clone(),
            format!("{ROUTED} of your mailbox, sent to {}", contact.email),
        ),
        _ => {
            activity.detail = Some(format!(
                "not passed on: an automatic reply to the bounce address of {}",
                d.rcpt
            ));
            record(db, &activity, Some(contact.id)).await?;
            return Ok(Vec::new());
        }
    };
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let raw = replace_in_headers(source.message.raw(), verp_address, &rewritten_to);
    let message_id = queue::store_message(
        db,
        Some(&mail_from),
        Some(&source.token),
        source.client.as_ref(),
        raw,
    )
    .await?;
    activity.detail = Some(detail);
    record(db, &activity, Some(contact.id)).await?;
    queue::enqueue(
        db,
        &ctx.settings().queue,
        ctx.instance(),
        message_id,
        &deliveries,
    )
    .await
}

/// How a routed automatic reply's activity starts (what [`routed_today`] counts).
const ROUTED: &str = "automatic reply";

/// Automatic replies passed on between this alias and contact in the last day.
async fn routed_today(db: &impl ConnectionTrait, alias_id: i64, contact_id: i64) -> Result<u64> {
    use postern_entity::activity;
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    Ok(activity::Entity::find()
        .filter(activity::Column::AliasId.eq(alias_id))
        .filter(activity::Column::ContactId.eq(contact_id))
        .filter(activity::Column::Kind.eq(ActivityKind::AutoReply))
        .filter(activity::Column::Detail.starts_with(ROUTED))
        .filter(activity::Column::CreatedAt.gt(chrono::Utc::now() - chrono::Duration::days(1)))
        .count(db)
        .await?)
}

/// Whether the message's `From:` is `address`.
fn from_is(source: &Source, address: &str) -> bool {
    source
        .message
        .inspection
        .from
        .as_ref()
        .is_some_and(|m| m.address.eq_ignore_ascii_case(address))
}

/// `raw` with every spelling of `from` (ASCII case ignored) in its header section replaced
/// by `to`: the bounce address a responder wrote to becomes the address the person sees.
pub fn replace_in_headers(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 2);
    let (head, body) = raw.split_at(end);
    let needle = from.as_bytes();
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut i = 0;
    while i < head.len() {
        if !needle.is_empty()
            && head.len() - i >= needle.len()
            && head[i..i + needle.len()].eq_ignore_ascii_case(needle)
        {
            out.extend_from_slice(to.as_bytes());
            i += needle.len();
        } else {
            out.push(head[i]);
            i += 1;
        }
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_header_section_changes() {
        let raw = b"To: <B.D1.X@reply.test>\r\nCc: b.d1.x@reply.test\r\n\r\nb.d1.x@reply.test\r\n";
        let out = super::replace_in_headers(raw, "b.d1.x@reply.test", "alias@a.test");
        assert_eq!(
            out,
            b"To: <alias@a.test>\r\nCc: alias@a.test\r\n\r\nb.d1.x@reply.test\r\n".to_vec()
        );
    }
}
