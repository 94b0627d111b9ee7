//! Signed alias suffixes: the server offers `.cat123@alias.example`, signs it with a timestamp,
//! and accepts a custom alias only with a suffix it signed in the last ten minutes.

use data_encoding::BASE64URL_NOPAD;
use subtle::ConstantTimeEq;

use crate::secrets::HmacKey;

/// How long a signed suffix stays valid.
pub const MAX_AGE_SECS: i64 = 600;
const MAC_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SuffixError {
    /// Too old, from the future, or not signed by us: the client should ask again.
    #[error("Alias creation time is expired, please retry")]
    Expired,
    #[error("Tampered suffix")]
    Tampered,
}

/// `suffix.<b64url timestamp>.<b64url mac>`.
pub fn sign(key: &HmacKey, suffix: &str, now: i64) -> String {
    let ts = BASE64URL_NOPAD.encode(&now.to_be_bytes());
    let mac = mac(key, suffix, &ts);
    format!("{suffix}.{ts}.{mac}")
}

/// The suffix inside a signed suffix, if we signed it less than [`MAX_AGE_SECS`] ago.
pub fn verify(key: &HmacKey, signed: &str, now: i64) -> Result<String, SuffixError> {
    let (rest, given) = signed.rsplit_once('.').ok_or(SuffixError::Tampered)?;
    let (suffix, ts) = rest.rsplit_once('.').ok_or(SuffixError::Tampered)?;
    let expected = mac(key, suffix, ts);
    if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(SuffixError::Expired);
    }
    let bytes: [u8; 8] = BASE64URL_NOPAD
        .decode(ts.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SuffixError::Tampered)?;
    let signed_at = i64::from_be_bytes(bytes);
    if now - signed_at > MAX_AGE_SECS || signed_at - now > 60 {
        return Err(SuffixError::Expired);
    }
    Ok(suffix.to_string())
}

fn mac(key: &HmacKey, suffix: &str, ts: &str) -> String {
    let sig = key.sign(&[b"alias-suffix", suffix.as_bytes(), ts.as_bytes()]);
    BASE64URL_NOPAD.encode(&sig[..MAC_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_suffixes_expire_and_resist_tampering() {
        let key = HmacKey::from_bytes([3; 32]);
        let signed = sign(&key, ".cat123@alias.test", 1_000_000);
        assert_eq!(
            verify(&key, &signed, 1_000_100).as_deref(),
            Ok(".cat123@alias.test")
        );
        assert_eq!(verify(&key, &signed, 1_000_601), Err(SuffixError::Expired));
        let forged = signed.replace(".cat123@alias.test", ".cat123@evil.test");
        assert_eq!(verify(&key, &forged, 1_000_100), Err(SuffixError::Expired));
        assert_eq!(
            verify(&HmacKey::from_bytes([4; 32]), &signed, 1_000_100),
            Err(SuffixError::Expired)
        );
        assert_eq!(
            verify(&key, "garbage", 1_000_100),
            Err(SuffixError::Tampered)
        );
    }
}
