//! Decisions, per recipient: pure functions of what resolve found and what the message says.
//! The gateway maps [`RcptDecision`] to SMTP replies in one place; the flows act on
//! [`Decision`].

use std::collections::HashMap;
use std::sync::Arc;

use postern_entity::{contact, mailbox};

use crate::context::Route;
use crate::envelope::Envelope;
use crate::message::ParsedMessage;
use crate::pipeline::resolve::Recipient;

/// The answer to one `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptDecision {
    Accept,
    /// No such address on a domain we serve.
    Unknown,
    /// A domain we do not serve, or a routing trick: we are not a relay.
    RelayDenied,
    /// The answer is not known right now (database down).
    TemporaryFailure,
    /// Over a rate limit (messages per alias or user, replies per user): try again later.
    RateLimited,
}

/// Decides a recipient at `RCPT` time.
pub fn decide_rcpt(recipient: &Recipient) -> RcptDecision {
    match recipient {
        Recipient::Alias(_) | Recipient::Bounce(_) | Recipient::Postmaster(_) => {
            RcptDecision::Accept
        }
        // Whoever the sender, the same answer: who may write through a reverse alias is
        // decided after DATA, so RCPT tells a stranger nothing about the owner's address.
        Recipient::ReverseAlias { .. } => RcptDecision::Accept,
        Recipient::Unknown => RcptDecision::Unknown,
        Recipient::Foreign => RcptDecision::RelayDenied,
    }
}

/// Why a message to an alias is kept from its mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// In the trash: deleted, not yet purged.
    AliasDeleted,
    AliasDisabled,
    ContactBlocked,
    NoMailbox,
}

impl BlockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AliasDeleted => "alias deleted",
            Self::AliasDisabled => "alias disabled",
            Self::ContactBlocked => "contact blocked",
            Self::NoMailbox => "alias has no verified mailbox",
        }
    }
}

/// Why a message through a reverse alias is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefuseReason {
    /// The envelope sender is neither one of the alias's mailboxes nor an address one of
    /// them authorised.
    Unauthorised,
    /// The envelope sender is a mailbox of the alias, but the message does not
    /// authenticate for its domain (no SPF pass, no aligned DKIM pass): possibly forged.
    Unauthenticated,
    /// To/Cc addresses that are not reverse aliases of the alias.
    UnknownRecipients(Vec<String>),
}

/// Why a forward is held in the quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// It fails its sender's DMARC `p=quarantine`, and the owner holds such mail.
    Dmarc,
    /// A trusted upstream filter scored it (in tenths) above the owner's threshold.
    Spam { score: i32, threshold: i32 },
}

/// What happens to the message for one recipient (or one alias, for replies).
#[derive(Debug, Clone)]
pub enum Decision {
    Forward(Arc<Route>),
    /// Held in the quarantine until the owner releases it.
    Quarantine(Arc<Route>, Hold),
    Block(Arc<Route>, BlockReason),
    /// The owner wrote to their own alias: sending it back would loop.
    Loop(Arc<Route>),
    Reply {
        route: Arc<Route>,
        mailbox: mailbox::Model,
        /// The envelope recipients, each a contact of the alias.
        contacts: Vec<Arc<contact::Model>>,
    },
    RefuseReply {
        route: Arc<Route>,
        mailbox: Option<mailbox::Model>,
        reason: RefuseReason,
    },
}

/// A message to an alias. `sender_blocked`: the owner blocked the sender's contact;
/// `from_ourselves`: its `From:` is one of our reverse aliases or another alias of the owner;
/// `quarantine`: it fails its sender's DMARC `p=quarantine`; `spam_score`: what a trusted
/// upstream filter scored it, in tenths of a point.
pub fn decide_forward(
    route: Arc<Route>,
    envelope: &Envelope,
    sender_blocked: bool,
    from_ourselves: bool,
    quarantine: bool,
    spam_score: Option<i32>,
) -> Decision {
    let spam = match (spam_score, route.spam_threshold) {
        (Some(score), Some(threshold)) if score > threshold => {
            Some(Hold::Spam { score, threshold })
        }
        _ => None,
    };
    if route.mailbox(&envelope.mail_from).is_some() || from_ourselves {
        Decision::Loop(route)
    } else if route.alias.deleted_at.is_some() {
        Decision::Block(route, BlockReason::AliasDeleted)
    } else if !route.alias.enabled {
        Decision::Block(route, BlockReason::AliasDisabled)
    } else if sender_blocked {
        Decision::Block(route, BlockReason::ContactBlocked)
    } else if route.forwards_to().next().is_none() {
        Decision::Block(route, BlockReason::NoMailbox)
    } else if quarantine && route.hold_quarantined {
        Decision::Quarantine(route, Hold::Dmarc)
    } else if let Some(hold) = spam {
        Decision::Quarantine(route, hold)
    } else {
        Decision::Forward(route)
    }
}

/// A message through reverse aliases of one alias. `known`: the To/Cc addresses that are
/// reverse aliases, with their contacts.
pub fn decide_reply(
    route: Arc<Route>,
    envelope: &Envelope,
    message: &ParsedMessage,
    contacts: Vec<Arc<contact::Model>>,
    known: &HashMap<String, Arc<contact::Model>>,
    authenticates: impl Fn(&str) -> bool,
) -> Decision {
    let Some(mailbox) = route.sender_mailbox(&envelope.mail_from).cloned() else {
        return Decision::RefuseReply {
            route,
            mailbox: None,
            reason: RefuseReason::Unauthorised,
        };
    };
    // The sender must prove the address it sends from: the mailbox's, or an authorised one's.
    let domain = envelope.mail_from.rsplit_once('@').map_or("", |(_, d)| d);
    if !authenticates(domain) {
        return Decision::RefuseReply {
            route,
            mailbox: None,
            reason: RefuseReason::Unauthenticated,
        };
    }
    let unknown: Vec<String> = message
        .recipients
        .iter()
        .filter(|address| **address != route.alias.email)
        .filter(|address| {
            known
                .get(*address)
                .is_none_or(|c| c.alias_id != route.alias.id)
        })
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Decision::RefuseReply {
            route,
            mailbox: Some(mailbox),
            reason: RefuseReason::UnknownRecipients(unknown),
        };
    }
    Decision::Reply {
        route,
        mailbox,
        contacts,
    }
}
