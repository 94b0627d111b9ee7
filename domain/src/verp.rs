//! VERP bounce addresses: `b.<kind><id>.<mac>@reply_domain`, naming one delivery.
//!
//! The MAC (80 bits of HMAC-SHA256) makes them unforgeable: a bounce to an address we did not
//! sign changes nothing.

use data_encoding::BASE32_NOPAD;
use subtle::ConstantTimeEq;

use crate::secrets::HmacKey;

const MAC_BYTES: usize = 10;

/// What a VERP address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verp {
    pub delivery_id: i64,
}

impl Verp {
    /// The envelope sender for `delivery_id`.
    pub fn address(key: &HmacKey, delivery_id: i64, reply_domain: &str) -> String {
        let payload = format!("d{delivery_id}");
        format!("b.{payload}.{}@{reply_domain}", mac(key, &payload))
    }

    /// Verifies a local part; `None` for anything that is not a VERP address we signed.
    pub fn verify(key: &HmacKey, local: &str) -> Option<Verp> {
        let rest = local.strip_prefix("b.")?;
        let (payload, given) = rest.split_once('.')?;
        let expected = mac(key, payload);
        if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        {
            return None;
        }
        let delivery_id = payload.strip_prefix('d')?.parse().ok()?;
        Some(Verp { delivery_id })
    }

    /// Cheap shape test used before touching the database.
    pub fn looks_like(local: &str) -> bool {
        local.starts_with("b.") && local.matches('.').count() == 2
    }
}

fn mac(key: &HmacKey, payload: &str) -> String {
    let sig = key.sign(&[b"verp", payload.as_bytes()]);
    BASE32_NOPAD.encode(&sig[..MAC_BYTES]).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let key = HmacKey::from_bytes([7; 32]);
        let other = HmacKey::from_bytes([8; 32]);
        let addr = Verp::address(&key, 42, "reply.test");
        let local = addr.split('@').next().expect("local");
        assert!(Verp::looks_like(local));
        assert_eq!(Verp::verify(&key, local), Some(Verp { delivery_id: 42 }));
        assert_eq!(Verp::verify(&other, local), None);
        let forged = local.replace("d42", "d43");
        assert_eq!(Verp::verify(&key, &forged), None);
        assert_eq!(Verp::verify(&key, "b.d42.aaaaaaaaaaaaaaaa"), None);
        assert_eq!(Verp::verify(&key, "shop"), None);
    }
}
