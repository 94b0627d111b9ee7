//! One-click actions from notification emails: disable an alias, block a contact, view a
//! refused message. The link carries what to do, signed (HMAC) and dated; opening it shows a
//! page, and only the page's POST acts, so a mail scanner following links changes nothing.

use data_encoding::BASE32_NOPAD;
use postern_entity::{alias, bounce, contact};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use subtle::ConstantTimeEq;

use crate::secrets::HmacKey;
use crate::{DomainError, Result};

/// How long a link works.
pub const LIFETIME_DAYS: i64 = 30;
const MAC_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DisableAlias(i64),
    BlockContact(i64),
    ViewBounce(i64),
}

impl Action {
    fn encode(self) -> String {
        match self {
            Self::DisableAlias(id) => format!("a{id}"),
            Self::BlockContact(id) => format!("c{id}"),
            Self::ViewBounce(id) => format!("b{id}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (kind, id) = s.split_at_checked(1)?;
        let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
        match kind {
            "a" => Some(Self::DisableAlias(id)),
            "c" => Some(Self::BlockContact(id)),
            "b" => Some(Self::ViewBounce(id)),
            _ => None,
        }
    }

    /// What the link's button says.
    pub fn label(self) -> &'static str {
        match self {
            Self::DisableAlias(_) => "Disable the alias",
            Self::BlockContact(_) => "Block this sender",
            Self::ViewBounce(_) => "View the refused message",
        }
    }

    /// Whether following it changes something (then it needs the page's POST).
    pub fn changes(self) -> bool {
        !matches!(self, Self::ViewBounce(_))
    }

    /// `<payload>.<expiry day>.<mac>`, URL-safe.
    pub fn token(self, key: &HmacKey, now: chrono::DateTime<chrono::Utc>) -> String {
        let day = now.timestamp() / 86_400 + LIFETIME_DAYS;
        let payload = format!("{}.{day}", self.encode());
        format!("{payload}.{}", mac(key, &payload))
    }

    /// The action a token names, if we signed it and it has not expired.
    pub fn verify(key: &HmacKey, token: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Self> {
        let (payload, given) = token.rsplit_once('.')?;
        let expected = mac(key, payload);
        if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        {
            return None;
        }
        let (action, day) = payload.split_once('.')?;
        let day: i64 = day.parse().ok()?;
        if now.timestamp() / 86_400 > day {
            return None;
        }
        Self::decode(action)
    }
}

fn mac(key: &HmacKey, payload: &str) -> String {
    let sig = key.sign(&[b"action", payload.as_bytes()]);
    BASE32_NOPAD.encode(&sig[..MAC_BYTES]).to_ascii_lowercase()
}

/// What an action is about, for the confirmation page.
pub async fn describe(db: &impl ConnectionTrait, action: Action) -> Result<String> {
    Ok(match action {
        Action::DisableAlias(id) => {
            let a = alias::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| DomainError::NotFound("alias".into()))?;
            format!("Stop forwarding mail sent to {}?", a.email)
        }
        Action::BlockContact(id) => {
            let c = contact::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| DomainError::NotFound("contact".into()))?;
            format!("Block mail from {} to your alias?", c.email)
        }
        Action::ViewBounce(id) => {
            bounce::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| DomainError::NotFound("refused message".into()))?;
            "The refused message".into()
        }
    })
}

/// Does it; returns what was done.
pub async fn perform(db: &impl ConnectionTrait, action: Action) -> Result<String> {
    let done = match action {
        Action::DisableAlias(id) => {
            let a = alias::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| DomainError::NotFound("alias".into()))?;
            let email = a.email.clone();
            let mut a: alias::ActiveModel = a.into();
            a.enabled = Set(false);
            a.update(db).await?;
            format!("{email} is disabled: mail sent to it is no longer forwarded.")
        }
        Action::BlockContact(id) => {
            let c = contact::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| DomainError::NotFound("contact".into()))?;
            let email = c.email.clone();
            let mut c: contact::ActiveModel = c.into();
            c.blocked = Set(true);
            c.update(db).await?;
            format!("{email} is blocked.")
        }
        Action::ViewBounce(_) => return Err(DomainError::Invalid("nothing to do".into())),
    };
    crate::cache::invalidate();
    Ok(done)
}

/// The stored report of a bounce, for the view page.
pub async fn refused_message(db: &impl ConnectionTrait, bounce_id: i64) -> Result<Vec<u8>> {
    let b = bounce::Entity::find_by_id(bounce_id)
        .one(db)
        .await?
        .ok_or_else(|| DomainError::NotFound("refused message".into()))?;
    let message_id = b
        .message_id
        .ok_or_else(|| DomainError::NotFound("the refused message is no longer kept".into()))?;
    let m = crate::delivery::queue::load_message(db, message_id).await?;
    Ok(m.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_expire_and_resist_forgery() {
        let key = HmacKey::from_bytes([3; 32]);
        let now = chrono::Utc::now();
        for action in [
            Action::DisableAlias(7),
            Action::BlockContact(9),
            Action::ViewBounce(11),
        ] {
            let token = action.token(&key, now);
            assert_eq!(Action::verify(&key, &token, now), Some(action));
            let later = now + chrono::Duration::days(LIFETIME_DAYS + 1);
            assert_eq!(Action::verify(&key, &token, later), None);
            assert_eq!(
                Action::verify(&HmacKey::from_bytes([4; 32]), &token, now),
                None
            );
        }
        let token = Action::DisableAlias(7).token(&key, now);
        assert_eq!(
            Action::verify(&key, &token.replacen("a7", "a8", 1), now),
            None
        );
        assert_eq!(Action::verify(&key, "", now), None);
        assert_eq!(Action::verify(&key, "a.b.c", now), None);
    }
}
