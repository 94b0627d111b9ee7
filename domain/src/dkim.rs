//! DKIM keys: one RSA-2048 and one Ed25519 key per domain, created once, stored in the
//! database (so every instance signs with the same keys), parsed once into signers.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use data_encoding::BASE64;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use postern_entity::dkim_key;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::{DomainError, Result};

pub const RSA_SELECTOR: &str = "postern-rsa1";
pub const ED25519_SELECTOR: &str = "postern-ed1";

/// Headers covered by our signatures (those absent from a message are skipped by the signer).
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Makes sure `domain` has both keys; generates what is missing.
pub async fn ensure_keys(db: &impl ConnectionTrait, domain: &str) -> Result<()> {
    let existing: Vec<String> = dkim_key::Entity::find()
        .filter(dkim_key::Column::Domain.eq(domain))
        .all(db)
        .await?
        .into_iter()
        .map(|k| k.algorithm)
        .collect();
    if !existing.iter().any(|a| a == "rsa") {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| DomainError::Crypto("RSA key generation failed".into()))?;
        let private = pair
            .as_der()
            .map_err(|_| DomainError::Crypto("RSA key encoding failed".into()))?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
            .as_der()
            .map_err(|_| DomainError::Crypto("RSA public key encoding failed".into()))?;
        store(
            db,
            domain,
            RSA_SELECTOR,
            "rsa",
            private.as_ref(),
            public.as_ref(),
        )
        .await?;
    }
    if !existing.iter().any(|a| a == "ed25519") {
        let private =
            Ed25519Key::generate_pkcs8().map_err(|e| DomainError::Crypto(e.to_string()))?;
        let key =
            Ed25519Key::from_pkcs8_der(&private).map_err(|e| DomainError::Crypto(e.to_string()))?;
        store(
            db,
            domain,
            ED25519_SELECTOR,
            "ed25519",
            &private,
            &key.public_key(),
        )
        .await?;
    }
    Ok(())
}

async fn store(
    db: &impl ConnectionTrait,
    domain: &str,
    selector: &str,
    algorithm: &str,
    private: &[u8],
    public: &[u8],
) -> Result<()> {
    dkim_key::Entity::insert(dkim_key::ActiveModel {
        domain: Set(domain.to_string()),
        selector: Set(selector.to_string()),
        algorithm: Set(algorithm.to_string()),
        private_key: Set(private.to_vec()),
        public_key: Set(BASE64.encode(public)),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([dkim_key::Column::Domain, dkim_key::Column::Selector])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The DNS TXT records that publish a domain's keys: `(name, value)`.
pub async fn dns_records(db: &impl ConnectionTrait, domain: &str) -> Result<Vec<(String, String)>> {
    let keys = dkim_key::Entity::find()
        .filter(dkim_key::Column::Domain.eq(domain))
        .order_by_asc(dkim_key::Column::Id)
        .all(db)
        .await?;
    Ok(keys
        .into_iter()
        .map(|k| {
            let kind = if k.algorithm == "rsa" {
                "rsa"
            } else {
                "ed25519"
            };
            (
                format!("{}._domainkey.{}", k.selector, k.domain),
                format!("v=DKIM1; k={kind}; p={}", k.public_key),
            )
        })
        .collect())
}

struct DomainSigners {
    rsa: DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>,
    ed25519: DkimSigner<Ed25519Key, mail_auth::dkim::Done>,
    /// ARC sets, with the same RSA key as DKIM.
    arc: ArcSealer<RsaKey<Sha256>, mail_auth::dkim::Done>,
}

/// Every domain's signers, loaded once (parsing an RSA key costs far more than using it).
#[derive(Clone, Default)]
pub struct Signers {
    domains: Arc<HashMap<String, DomainSigners>>,
}

impl Signers {
    /// Loads the keys of `domains` (which must exist: see [`ensure_keys`]).
    pub async fn load(db: &impl ConnectionTrait, domains: &[String]) -> Result<Self> {
        let mut map = HashMap::new();
        for domain in domains {
            let keys = dkim_key::Entity::find()
                .filter(dkim_key::Column::Domain.eq(domain.as_str()))
                .order_by_desc(dkim_key::Column::Id)
                .all(db)
                .await?;
            let rsa = keys.iter().find(|k| k.algorithm == "rsa");
            let ed = keys.iter().find(|k| k.algorithm == "ed25519");
            let (Some(rsa), Some(ed)) = (rsa, ed) else {
                return Err(DomainError::NotFound(format!("DKIM keys for {domain}")));
            };
            let rsa_key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(rsa.private_key.clone()),
            ))
            .map_err(|e| DomainError::Crypto(e.to_string()))?;
            let ed_key = Ed25519Key::from_pkcs8_der(&ed.private_key)
                .map_err(|e| DomainError::Crypto(e.to_string()))?;
            let arc_key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(rsa.private_key.clone()),
            ))
            .map_err(|e| DomainError::Crypto(e.to_string()))?;
            map.insert(
                domain.clone(),
                DomainSigners {
                    rsa: DkimSigner::from_key(rsa_key)
                        .domain(domain.as_str())
                        .selector(rsa.selector.as_str())
                        .headers(SIGNED_HEADERS.iter().copied()),
                    ed25519: DkimSigner::from_key(ed_key)
                        .domain(domain.as_str())
                        .selector(ed.selector.as_str())
                        .headers(SIGNED_HEADERS.iter().copied()),
                    arc: ArcSealer::from_key(arc_key)
                        .domain(domain.as_str())
                        .selector(rsa.selector.as_str())
                        .headers(SIGNED_HEADERS.iter().copied()),
                },
            );
        }
        Ok(Self {
            domains: Arc::new(map),
        })
    }

    /// Returns `message` with an ARC set for `domain` prepended: our `results` of checking
    /// what we received, `arc` the chain it arrived with (instance one above it). A chain
    /// that failed is not extended: the message is returned as it is.
    pub fn seal(
        &self,
        domain: &str,
        mut message: Vec<u8>,
        results: &AuthenticationResults,
        arc: &ArcOutput,
    ) -> Result<Vec<u8>> {
        if !arc.can_be_sealed() {
            return Ok(message);
        }
        let signers = self
            .domains
            .get(domain)
            .ok_or_else(|| DomainError::NotFound(format!("ARC key for {domain}")))?;
        let set = {
            let parsed = AuthenticatedMessage::parse(&message).ok_or_else(|| {
                DomainError::MalformedMessage("the forward cannot be parsed for ARC".into())
            })?;
            signers
                .arc
                .seal(&parsed, results, arc)
                .map_err(|e| DomainError::Crypto(e.to_string()))?
                .to_header()
                // The same folding flaw as in DKIM (see `tidy_signature`), in each header.
                .replace("\r\n\t;\r\n", ";\r\n")
        };
        message.reserve_exact(set.len());
        message.splice(0..0, set.into_bytes());
        Ok(message)
    }

    /// Returns `message` with an RSA and an Ed25519 `DKIM-Signature` for `domain` prepended.
    pub fn sign(&self, domain: &str, mut message: Vec<u8>) -> Result<Vec<u8>> {
        let signers = self
            .domains
            .get(domain)
            .ok_or_else(|| DomainError::NotFound(format!("DKIM keys for {domain}")))?;
        let rsa = signers
            .rsa
            .sign(&message)
            .map_err(|e| DomainError::Crypto(e.to_string()))?;
        let ed = signers
            .ed25519
            .sign(&message)
            .map_err(|e| DomainError::Crypto(e.to_string()))?;
        let rsa = tidy_signature(rsa.to_header());
        let ed = tidy_signature(ed.to_header());
        // Put the headers in front within the same buffer: a large message is not copied.
        message.reserve_exact(rsa.len() + ed.len());
        message.splice(0..0, ed.bytes().chain(rsa.bytes()));
        Ok(message)
    }
}

/// mail-auth can fold the header right after the `b=` value, leaving `…==\r\n\t;`. That
/// folding whitespace lies outside the tag value, so a verifier keeps it when it blanks `b=`,
/// while the signature was computed over `b=;`: RFC 6376 verifiers (dkimpy) then fail. The
/// whitespace goes, and the header reads as it was signed.
fn tidy_signature(header: String) -> String {
    match header.strip_suffix("\r\n\t;\r\n") {
        Some(head) => format!("{head};\r\n"),
        None => header,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn folding_whitespace_after_the_signature_value_goes() {
        let folded = "DKIM-Signature: v=1; a=ed25519-sha256; b=AAAA\r\n\tBBBB==\r\n\t;\r\n";
        assert_eq!(
            super::tidy_signature(folded.to_string()),
            "DKIM-Signature: v=1; a=ed25519-sha256; b=AAAA\r\n\tBBBB==;\r\n"
        );
        let fine = "DKIM-Signature: v=1; b=AAAA;\r\n";
        assert_eq!(super::tidy_signature(fine.to_string()), fine);
    }
}
