//! The stages in order, for one SMTP transaction.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::context::Context;
use crate::delivery::{self, Source};
use crate::envelope::Envelope;
use crate::flow::{self, Plan, forward, reply};
use crate::message::{Arrival, ParsedMessage};
use crate::pipeline::authenticate;
use crate::pipeline::decide::{self, RcptDecision};
use crate::pipeline::resolve::{self, Recipient};
use crate::{DomainError, Result};

/// Messages larger than this are parsed on the blocking pool.
const PARSE_INLINE_MAX: usize = 256 * 1024;

/// The answer to a complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Committed: every resulting delivery is queued, every block or bounce recorded.
    Accepted { queue_id: String },
    /// Nothing was kept; the sender should try again later.
    TemporaryFailure,
    /// The content cannot be passed on as it is.
    Malformed(String),
    /// More `Received` fields than [`MAX_HOPS`]: the message is going round in a loop.
    Loop { hops: usize },
    /// A check needed DNS and DNS did not answer: try again later, nothing was kept.
    DnsTemporary,
    /// Refused (`550`) with an enhanced status and the reason: the sender's DMARC
    /// `p=reject` failed (5.7.1), or every recipient refuses the sender (5.1.1).
    Rejected(&'static str, String),
}

/// Messages larger than this are not kept in memory between receipt and first attempt.
const KEEP_IN_MEMORY_MAX: usize = 1024 * 1024;

/// The most `Received` fields a message may arrive with (RFC 5321 6.3 asks for a limit).
pub const MAX_HOPS: usize = 30;

/// Our trace field: `Received: from <helo> ([ip]) by <hostname> with ESMTP[S]; <date>`, the
/// client's HELO name reduced to characters a host name may have.
fn received_line(envelope: &Envelope, hostname: &str, now: u64) -> String {
    let helo: String = envelope
        .helo
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(*c))
        .take(255)
        .collect();
    let helo = if helo.is_empty() { "unknown" } else { &helo };
    let with = match (envelope.tls, envelope.smtputf8) {
        (true, true) => "UTF8SMTPS",
        (true, false) => "ESMTPS",
        (false, true) => "UTF8SMTP",
        (false, false) => "ESMTP",
    };
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {hostname} (Postern) with {with};\r\n\t{date}",
        ip = envelope.remote_ip,
        date = crate::rewrite::rfc5322_date(now)
    )
}

/// Decides one `RCPT TO` of `envelope`.
pub async fn check_rcpt(ctx: &Context, envelope: &Envelope, rcpt: &str) -> RcptDecision {
    match resolve::resolve(ctx, rcpt).await {
        Ok(recipient) => match decide::decide_rcpt(&recipient) {
            RcptDecision::Accept if !envelope.trusted && !within_limits(ctx, &recipient) => {
                RcptDecision::RateLimited
            }
            decision => decision,
        },
        Err(e) => {
            tracing::warn!(error = %e, "recipient lookup failed");
            RcptDecision::TemporaryFailure
        }
    }
}

/// Counts an accepted recipient against the limits of its alias and owner: messages per
/// minute for an alias, replies per hour through a reverse alias.
fn within_limits(ctx: &Context, recipient: &Recipient) -> bool {
    use crate::limit::{HOUR, MINUTE};
    let limits = &ctx.settings().limits;
    let hit = |key: String, limit, period| ctx.limits().hit(&key, limit, period);
    match recipient {
        Recipient::Alias(route) => {
            hit(
                format!("alias-messages:{}", route.alias.id),
                limits.messages_per_alias_per_minute,
                MINUTE,
            ) && hit(
                format!("user-messages:{}", route.alias.user_id),
                limits.messages_per_user_per_minute,
                MINUTE,
            )
        }
        Recipient::ReverseAlias { route, .. } => hit(
            format!("user-replies:{}", route.alias.user_id),
            limits.replies_per_user_per_hour,
            HOUR,
        ),
        _ => true,
    }
}

/// Takes one message for the envelope's accepted recipients. `Accepted` only once the
/// commit that holds everything it produced is durable.
pub async fn receive(ctx: &Context, envelope: &Envelope, raw: Vec<u8>) -> Receipt {
    let hops = crate::message::count_received(&raw);
    if hops >= MAX_HOPS {
        return Receipt::Loop { hops: hops + 1 };
    }
    match receive_inner(ctx, envelope, raw).await {
        Ok(receipt) => receipt,
        Err(DomainError::MalformedMessage(why)) => Receipt::Malformed(why),
        Err(e) => {
            tracing::error!(error = %e, "message not accepted");
            Receipt::TemporaryFailure
        }
    }
}

async fn receive_inner(ctx: &Context, envelope: &Envelope, raw: Vec<u8>) -> Result<Receipt> {
    // 1. Authenticate the message as it came (claims in our name removed first), then
    //    repair what forwarding needs, and parse once.
    let hostname = ctx.settings().mail.hostname.clone();
    let raw = crate::message::strip_forged_claims(raw, &hostname);
    let checks = authenticate::check(ctx, envelope, &raw).await;
    if checks.dmarc_unknown() {
        return Ok(Receipt::DnsTemporary);
    }
    let raw_len = raw.len();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mail_from = envelope.mail_from.clone();
    let id_domain = ctx.settings().mail.reply_domain.clone();
    let received = received_line(envelope, &hostname, now);
    let authentication = checks.header.clone();
    let parse = move || {
        let arrival = Arrival {
            mail_from: &mail_from,
            id_domain: &id_domain,
            received: Some(&received),
            authentication: Some(&authentication),
            now,
        };
        ParsedMessage::receive(raw, &arrival)
    };
    let message = if raw_len > PARSE_INLINE_MAX {
        flow::cpu(parse).await?
    } else {
        parse()?
    };
    let source = Arc::new(Source {
        message,
        mail_from: envelope.mail_from.clone(),
        token: flow::notice::new_token(),
        client: Some((envelope.remote_ip, envelope.helo.clone())),
        facts: Default::default(),
    });
    let message = &source.message;
    // A spam filter's verdict counts only from a filter the operator listed.
    let spam_score = if ctx
        .settings()
        .smtp
        .spam_filters
        .iter()
        .any(|net| net.contains(&envelope.remote_ip))
    {
        crate::spam::score(message.raw())
    } else {
        None
    };

    // 2. Resolve and decide, per recipient (a reply: per alias, with its contacts).
    let mut plan = Plan::default();
    let mut forwarded = HashSet::new();
    // Recipients that refuse (blocked, with the owner's `return_5xx`) and the others: DATA
    // answers 550 only when every recipient refuses.
    let (mut refusing, mut accepting) = (0usize, 0usize);
    let mut replies: BTreeMap<
        i64,
        (
            Arc<crate::context::Route>,
            Vec<Arc<postern_entity::contact::Model>>,
        ),
    > = BTreeMap::new();
    for rcpt in &envelope.rcpt_to {
        match resolve::resolve(ctx, rcpt).await? {
            Recipient::Alias(route) => {
                // Two spellings of one address (`a@d`, `A@d.`) are one recipient.
                if !forwarded.insert(route.alias.id) {
                    continue;
                }
                if checks.dmarc_rejects() {
                    return Ok(Receipt::Rejected(
                        "5.7.1",
                        format!(
                            "Rejected: the sender's domain publishes a DMARC policy of reject, and \
                         this message fails it ({})",
                            checks.summary()
                        ),
                    ));
                }
                let facts = Arc::new(
                    forward::Facts::gather(ctx, &route, message, &envelope.mail_from).await?,
                );
                source.keep_facts(route.alias.id, Arc::clone(&facts));
                let from_ourselves =
                    resolve::is_our_own(ctx, &facts.sender.address, route.alias.user_id).await?;
                let decision = decide::decide_forward(
                    route,
                    envelope,
                    facts.sender_blocked(),
                    from_ourselves,
                    checks.dmarc_quarantines(),
                    spam_score,
                );
                match &decision {
                    decide::Decision::Block(r, _) if r.refuse_blocked => refusing += 1,
                    _ => accepting += 1,
                }
                forward::plan(
                    ctx,
                    &decision,
                    &facts,
                    message,
                    &envelope.mail_from,
                    &mut plan,
                );
            }
            Recipient::ReverseAlias { contact, route } => {
                let entry = replies
                    .entry(route.alias.id)
                    .or_insert_with(|| (route, Vec::new()));
                if !entry.1.iter().any(|c| c.id == contact.id) {
                    entry.1.push(contact);
                }
            }
            Recipient::Bounce(verp) => {
                let from_authenticated = !checks.dmarc_rejects()
                    && !checks.dmarc_quarantines()
                    && message
                        .inspection
                        .from
                        .as_ref()
                        .is_some_and(|f| checks.authenticates(flow::domain_of(&f.address)));
                plan.bounces.push((verp, from_authenticated));
            }
            Recipient::Postmaster(to) => plan.postmaster.push((to, rcpt.clone())),
            Recipient::Unknown | Recipient::Foreign => {
                tracing::warn!(rcpt, "recipient vanished between RCPT and DATA");
            }
        }
    }
    if !replies.is_empty() {
        let known = reply::known_reverse_aliases(ctx, message).await?;
        for (_, (route, contacts)) in replies {
            // A mailbox's domain that could not be checked for lack of DNS: try again later
            // rather than refuse the owner's genuine mail.
            let domain = envelope.mail_from.rsplit_once('@').map_or("", |(_, d)| d);
            let unsure = checks.spf == authenticate::Outcome::TempError
                || checks.dkim == authenticate::Outcome::TempError;
            if route.sender_mailbox(&envelope.mail_from).is_some()
                && !checks.authenticates(domain)
                && unsure
            {
                return Ok(Receipt::DnsTemporary);
            }
            let decision = decide::decide_reply(route, envelope, message, contacts, &known, |d| {
                checks.authenticates(d)
            });
            reply::plan(
                &decision,
                message,
                &source.token,
                &envelope.mail_from,
                &mut plan,
            );
        }
    }

    // 3. Commit (grouped with other sessions'), then start the first attempts. A large
    // message is handed to the database rather than copied, and its first attempts read it
    // back: holding it twice for every session in a group commit would cost more.
    let mut source = source;
    let mut stored = None;
    if raw_len > KEEP_IN_MEMORY_MAX
        && plan.bounces.is_empty()
        && plan.postmaster.is_empty()
        && let Some(s) = Arc::get_mut(&mut source)
    {
        stored = Some(s.message.take_raw());
    }
    let in_memory = stored.is_none();
    let (c, s) = (ctx.clone(), Arc::clone(&source));
    let committed = match stored {
        // Handed over, not copied: this work can run only once.
        Some(raw) => {
            ctx.writer()
                .write_once(move |txn| {
                    Box::pin(async move { plan.apply(&c, txn, &s, Some(raw)).await })
                })
                .await?
        }
        None => {
            let plan = Arc::new(plan);
            ctx.writer()
                .write(move |txn| {
                    let (plan, c, s) = (Arc::clone(&plan), c.clone(), Arc::clone(&s));
                    Box::pin(async move { plan.apply(&c, txn, &s, None).await })
                })
                .await?
        }
    };
    let queue_id = committed
        .received
        .first()
        .or(committed.other.first())
        .map_or_else(|| "none".to_string(), |d| format!("D{}", d.id));
    delivery::spawn(ctx, committed.received, in_memory.then_some(source));
    delivery::spawn(ctx, committed.other, None);
    if refusing > 0 && accepting == 0 && envelope.rcpt_to.len() == refusing {
        return Ok(Receipt::Rejected(
            "5.1.1",
            "Recipient address rejected: this address does not accept mail from you".into(),
        ));
    }
    Ok(Receipt::Accepted { queue_id })
}
