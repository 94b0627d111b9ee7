//! DKIM keys: an RSA-2048 and an Ed25519 key per domain, stored in the database sealed with
//! the key-encryption key (so every instance signs with the same keys, and the database alone
//! signs nothing), parsed once into signers.
//!
//! Rotation: a new pair is generated (`pending`) and shown by `postern domain dns`; once its
//! records are seen in DNS it signs (`active`) and the old pair stays published (`retiring`)
//! for the overlap, then is removed.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::encoding::AsDer;
use data_encoding::BASE64;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use postern_entity::dkim_key;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::kek::{self, Kek};
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

/// Makes sure `domain` has an active key of each kind (generating what is missing) and that
/// every stored private key is sealed with `kek`.
pub async fn ensure_keys(db: &impl ConnectionTrait, kek: &Kek, domain: &str) -> Result<()> {
    let keys = dkim_key::Entity::find()
        .filter(dkim_key::Column::Domain.eq(domain))
        .all(db)
        .await?;
    for k in keys.iter().filter(|k| !k.encrypted) {
        let sealed = kek.seal(&kek::aad(&k.domain, &k.selector), &k.private_key)?;
        dkim_key::Entity::update_many()
            .col_expr(dkim_key::Column::PrivateKey, Expr::value(sealed))
            .col_expr(dkim_key::Column::Encrypted, Expr::value(true))
            .filter(dkim_key::Column::Id.eq(k.id))
            .filter(dkim_key::Column::Encrypted.eq(false))
            .exec(db)
            .await?;
    }
    for algorithm in [Algorithm::Rsa, Algorithm::Ed25519] {
        let active = keys
            .iter()
            .any(|k| k.algorithm == algorithm.as_str() && k.state == ACTIVE);
        if !active {
            generate(
                db,
                kek,
                domain,
                algorithm.first_selector(),
                algorithm,
                ACTIVE,
            )
            .await?;
        }
    }
    Ok(())
}

const ACTIVE: &str = "active";
const PENDING: &str = "pending";
const RETIRING: &str = "retiring";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }

    fn first_selector(self) -> &'static str {
        match self {
            Self::Rsa => RSA_SELECTOR,
            Self::Ed25519 => ED25519_SELECTOR,
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed",
        }
    }
}

/// Generates a key pair and stores it, sealed, in `state`.
async fn generate(
    db: &impl ConnectionTrait,
    kek: &Kek,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    state: &str,
) -> Result<()> {
    let (private, public) = match algorithm {
        Algorithm::Rsa => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| DomainError::Crypto("RSA key generation failed".into()))?;
            let private = pair
                .as_der()
                .map_err(|_| DomainError::Crypto("RSA key encoding failed".into()))?;
            let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
                .as_der()
                .map_err(|_| DomainError::Crypto("RSA public key encoding failed".into()))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        Algorithm::Ed25519 => {
            let private =
                Ed25519Key::generate_pkcs8().map_err(|e| DomainError::Crypto(e.to_string()))?;
            let key = Ed25519Key::from_pkcs8_der(&private)
                .map_err(|e| DomainError::Crypto(e.to_string()))?;
            (private, key.public_key())
        }
    };
    let now = chrono::Utc::now();
    dkim_key::Entity::insert(dkim_key::ActiveModel {
        domain: Set(domain.to_string()),
        selector: Set(selector.to_string()),
        algorithm: Set(algorithm.as_str().to_string()),
        private_key: Set(kek.seal(&kek::aad(domain, selector), &private)?),
        public_key: Set(BASE64.encode(&public)),
        created_at: Set(now),
        state: Set(state.to_string()),
        encrypted: Set(true),
        activated_at: Set((state == ACTIVE).then_some(now)),
        retire_after: Set(None),
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

/// Starts a rotation of `domain`'s keys: a new pair, pending until its records are seen in
/// DNS. Returns the records to publish; `None` when a rotation is already pending.
pub async fn rotate(
    db: &impl ConnectionTrait,
    kek: &Kek,
    domain: &str,
) -> Result<Option<Vec<(String, String)>>> {
    let keys = dkim_key::Entity::find()
        .filter(dkim_key::Column::Domain.eq(domain))
        .all(db)
        .await?;
    if keys.iter().any(|k| k.state == PENDING) {
        return Ok(None);
    }
    let date = chrono::Utc::now().format("%Y%m%d").to_string();
    let mut selectors = Vec::new();
    for algorithm in [Algorithm::Rsa, Algorithm::Ed25519] {
        // One rotation a day normally; more get a letter.
        let selector = ["", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .map(|suffix| format!("postern-{date}{suffix}-{}", algorithm.short()))
            .find(|s| !keys.iter().any(|k| &k.selector == s))
            .ok_or_else(|| DomainError::Conflict("too many rotations today".into()))?;
        generate(db, kek, domain, &selector, algorithm, PENDING).await?;
        selectors.push(selector);
    }
    let records = dns_records(db, domain).await?;
    Ok(Some(
        records
            .into_iter()
            .filter(|(name, _)| selectors.iter().any(|s| name.starts_with(&format!("{s}."))))
            .collect(),
    ))
}

/// What one pass of the rotation job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// New selectors generated (their records must be published).
    pub generated: Vec<String>,
    /// Selectors whose record was seen in DNS: they sign now.
    pub activated: Vec<String>,
    /// Pending selectors whose record is not (yet) in DNS.
    pub waiting: Vec<String>,
    /// Old selectors removed after the overlap.
    pub retired: Vec<String>,
}

impl Rotation {
    pub fn changed_signers(&self) -> bool {
        !self.activated.is_empty()
    }
}

impl std::fmt::Display for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "generated {}; activated {}; waiting for DNS {}; retired {}",
            list(&self.generated),
            list(&self.activated),
            list(&self.waiting),
            list(&self.retired)
        )
    }
}

/// One pass over `domains`: starts a rotation where the active keys are older than
/// `rotation`, activates pending keys whose records `published` confirms, and removes
/// retiring keys after `overlap`.
pub async fn rotation_step<F, Fut>(
    db: &impl ConnectionTrait,
    kek: &Kek,
    domains: &[String],
    rotation: std::time::Duration,
    overlap: std::time::Duration,
    published: F,
) -> Result<Rotation>
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let now = chrono::Utc::now();
    let rotation = chrono::Duration::from_std(rotation).unwrap_or(chrono::Duration::days(182));
    let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::days(7));
    let mut done = Rotation::default();
    for domain in domains {
        let keys = dkim_key::Entity::find()
            .filter(dkim_key::Column::Domain.eq(domain.as_str()))
            .all(db)
            .await?;
        let newest_active = keys
            .iter()
            .filter(|k| k.state == ACTIVE)
            .map(|k| k.activated_at.unwrap_or(k.created_at))
            .max();
        if !keys.iter().any(|k| k.state == PENDING)
            && newest_active.is_some_and(|at| now - at > rotation)
            && let Some(records) = rotate(db, kek, domain).await?
        {
            done.generated
                .extend(records.into_iter().map(|(name, _)| name));
        }
        let keys = dkim_key::Entity::find()
            .filter(dkim_key::Column::Domain.eq(domain.as_str()))
            .all(db)
            .await?;
        for k in keys.iter().filter(|k| k.state == PENDING) {
            let name = format!("{}._domainkey.{}", k.selector, k.domain);
            if !published(name.clone(), k.public_key.clone()).await {
                done.waiting.push(name);
                continue;
            }
            dkim_key::Entity::update_many()
                .col_expr(dkim_key::Column::State, Expr::value(RETIRING))
                .col_expr(
                    dkim_key::Column::RetireAfter,
                    Expr::value(Some(now + overlap)),
                )
                .filter(dkim_key::Column::Domain.eq(domain.as_str()))
                .filter(dkim_key::Column::Algorithm.eq(k.algorithm.as_str()))
                .filter(dkim_key::Column::State.eq(ACTIVE))
                .exec(db)
                .await?;
            dkim_key::Entity::update_many()
                .col_expr(dkim_key::Column::State, Expr::value(ACTIVE))
                .col_expr(dkim_key::Column::ActivatedAt, Expr::value(Some(now)))
                .filter(dkim_key::Column::Id.eq(k.id))
                .exec(db)
                .await?;
            done.activated.push(name);
        }
        for k in keys
            .iter()
            .filter(|k| k.state == RETIRING && k.retire_after.is_some_and(|t| t < now))
        {
            dkim_key::Entity::delete_by_id(k.id).exec(db).await?;
            done.retired
                .push(format!("{}._domainkey.{}", k.selector, k.domain));
        }
    }
    Ok(done)
}

/// The rotation job: looks up pending keys' records afresh (outside any transaction), then
/// applies [`rotation_step`] in one write transaction, and signs with what is now active.
pub async fn rotation_job(ctx: &crate::context::Context) -> Result<Rotation> {
    let resolver = crate::dns::resolver(&ctx.settings().dns)?;
    let pending = dkim_key::Entity::find()
        .filter(dkim_key::Column::State.eq(PENDING))
        .all(ctx.db())
        .await?;
    let mut seen = std::collections::HashSet::new();
    for k in &pending {
        let name = format!("{}._domainkey.{}", k.selector, k.domain);
        if published(&resolver, &name, &k.public_key).await {
            seen.insert(name);
        }
    }
    let settings = &ctx.settings().dkim;
    let txn = crate::db::begin_write(ctx.db()).await?;
    let done = rotation_step(
        &txn,
        ctx.kek(),
        ctx.signing_domains(),
        settings.rotation,
        settings.overlap,
        |name, _| std::future::ready(seen.contains(&name)),
    )
    .await?;
    txn.commit().await?;
    if done.changed_signers() {
        ctx.reload_signers().await?;
    }
    Ok(done)
}

/// Whether `name` publishes a DKIM record with public key `public` (asked afresh).
pub async fn published(
    resolver: &hickory_resolver::TokioResolver,
    name: &str,
    public: &str,
) -> bool {
    crate::dns::txt_records(resolver, name)
        .await
        .iter()
        .any(|text| {
            text.split(';').any(|tag| {
                tag.trim()
                    .strip_prefix("p=")
                    .is_some_and(|p| p.split_whitespace().collect::<String>() == public)
            })
        })
}

/// The DNS TXT records that publish a domain's keys (active, pending and retiring):
/// `(name, value)`.
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

/// The keys of `domain` with their state, for `postern domain dns`.
pub async fn key_states(db: &impl ConnectionTrait, domain: &str) -> Result<Vec<(String, String)>> {
    Ok(dkim_key::Entity::find()
        .filter(dkim_key::Column::Domain.eq(domain))
        .order_by_asc(dkim_key::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|k| (k.selector, k.state))
        .collect())
}

struct DomainSigners {
    rsa: DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>,
    ed25519: DkimSigner<Ed25519Key, mail_auth::dkim::Done>,
    /// ARC sets, with the same RSA key as DKIM.
    arc: ArcSealer<RsaKey<Sha256>, mail_auth::dkim::Done>,
}

/// Every domain's signers, parsed once per key (parsing an RSA key costs far more than
/// using it) and swapped whole when a rotation activates new keys.
#[derive(Clone, Default)]
pub struct Signers {
    domains: Arc<RwLock<Arc<HashMap<String, DomainSigners>>>>,
    /// The active selectors the map was built from, to reload only on a change.
    loaded: Arc<RwLock<Vec<String>>>,
}

impl Signers {
    /// Loads the active keys of `domains` (which must exist: see [`ensure_keys`]).
    pub async fn load(db: &impl ConnectionTrait, kek: &Kek, domains: &[String]) -> Result<Self> {
        let signers = Self::default();
        signers.reload(db, kek, domains).await?;
        Ok(signers)
    }

    /// Reads the active keys again, and rebuilds the signers if they changed.
    pub async fn reload(
        &self,
        db: &impl ConnectionTrait,
        kek: &Kek,
        domains: &[String],
    ) -> Result<()> {
        let active: Vec<dkim_key::Model> = dkim_key::Entity::find()
            .filter(dkim_key::Column::Domain.is_in(domains.iter().map(String::as_str)))
            .filter(dkim_key::Column::State.eq(ACTIVE))
            .order_by_desc(dkim_key::Column::Id)
            .all(db)
            .await?;
        let selectors: Vec<String> = active
            .iter()
            .map(|k| format!("{}/{}", k.domain, k.selector))
            .collect();
        if *self.loaded.read().unwrap_or_else(PoisonError::into_inner) == selectors {
            return Ok(());
        }
        let mut map = HashMap::new();
        for domain in domains {
            let rsa = active
                .iter()
                .find(|k| k.domain == *domain && k.algorithm == "rsa");
            let ed = active
                .iter()
                .find(|k| k.domain == *domain && k.algorithm == "ed25519");
            let (Some(rsa), Some(ed)) = (rsa, ed) else {
                return Err(DomainError::NotFound(format!("DKIM keys for {domain}")));
            };
            let rsa_der = private_key(kek, rsa)?;
            let ed_der = private_key(kek, ed)?;
            let rsa_key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(rsa_der.clone()),
            ))
            .map_err(|e| DomainError::Crypto(e.to_string()))?;
            let ed_key = Ed25519Key::from_pkcs8_der(&ed_der)
                .map_err(|e| DomainError::Crypto(e.to_string()))?;
            let arc_key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(rsa_der),
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
        *self.domains.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = selectors;
        Ok(())
    }

    fn current(&self) -> Arc<HashMap<String, DomainSigners>> {
        Arc::clone(&self.domains.read().unwrap_or_else(PoisonError::into_inner))
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
        let all = self.current();
        let signers = all
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
        let all = self.current();
        let signers = all
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

/// A stored private key, opened (keys stored before encryption are read as they are).
fn private_key(kek: &Kek, k: &dkim_key::Model) -> Result<Vec<u8>> {
    if k.encrypted {
        kek.open(&kek::aad(&k.domain, &k.selector), &k.private_key)
    } else {
        Ok(k.private_key.clone())
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
