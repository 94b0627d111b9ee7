//! The context every flow shares: database, settings, keys, outbound transport, caches and
//! the group-commit writer. Cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use postern_config::Settings;
use postern_entity::{alias, contact, mailbox};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, Semaphore, watch};

use crate::cache::Cache;
use crate::dkim::{self, Signers};
use crate::outbound::Outbound;
use crate::pipeline::commit::Writer;
use crate::rewrite::SenderFormat;
use crate::secrets::{self, HmacKey};
use crate::{DomainError, Result};

/// Deliveries attempted at once by one process.
pub(crate) const CONCURRENT_DELIVERIES: usize = 64;

/// Password hashes computed at once: half the cores (at least one). Each costs tens of
/// milliseconds of CPU; capping them leaves the other cores to the mail path's rendering and
/// signing, which share the blocking pool, so a flood of logins cannot stall mail.
fn password_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// An alias with what forwarding to it needs.
#[derive(Debug, Clone)]
pub struct Route {
    pub alias: alias::Model,
    /// Its verified mailboxes.
    pub mailboxes: Vec<mailbox::Model>,
    /// `(address, mailbox id)`: addresses allowed to send as one of those mailboxes.
    pub authorized: Vec<(String, i64)>,
    pub sender_format: SenderFormat,
    /// The owner answers blocked senders with `550 5.1.1` rather than a silent `250`.
    pub refuse_blocked: bool,
    /// The owner holds mail failing a DMARC `p=quarantine` in the quarantine.
    pub hold_quarantined: bool,
    /// The owner's spam threshold, in tenths of a point.
    pub spam_threshold: Option<i32>,
}

impl Route {
    /// The alias's mailbox that `address` is, if any.
    pub fn mailbox(&self, address: &str) -> Option<&mailbox::Model> {
        let address = address.to_lowercase();
        self.mailboxes.iter().find(|m| m.email == address)
    }

    /// The mailbox `address` may send as through a reverse alias: the mailbox itself, or one
    /// it authorised.
    pub fn sender_mailbox(&self, address: &str) -> Option<&mailbox::Model> {
        self.mailbox(address).or_else(|| {
            let address = address.to_lowercase();
            let (_, id) = self.authorized.iter().find(|(a, _)| *a == address)?;
            self.mailboxes.iter().find(|m| m.id == *id)
        })
    }

    /// The mailboxes forwards go to: verified, and not disabled by bounces (a disabled
    /// mailbox may still reply through the alias).
    pub fn forwards_to(&self) -> impl Iterator<Item = &mailbox::Model> {
        self.mailboxes.iter().filter(|m| !m.disabled)
    }
}

#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    settings: Arc<Settings>,
    signers: Signers,
    kek: crate::kek::Kek,
    /// The domains we sign for: the alias domains and the reply domain.
    signing_domains: Vec<String>,
    verp_key: HmacKey,
    reverse_alias_key: HmacKey,
    action_key: HmacKey,
    outbound: Outbound,
    writer: Writer,
    delivered: crate::delivery::status::Delivered,
    journal: crate::delivery::journal::Journal,
    instance: String,
    wake: Notify,
    deliveries: Arc<Semaphore>,
    password_slots: Semaphore,
    large_message_slots: Semaphore,
    key_uses: crate::accounts::KeyUses,
    limits: crate::limit::RateLimiter,
    authenticator: Arc<mail_auth::MessageAuthenticator>,
    auth_caches: crate::dns::AuthCaches,
    stopping: watch::Sender<bool>,
    routes_by_address: Cache<String, Route>,
    routes_by_id: Cache<i64, Route>,
    reverse_aliases: Cache<String, contact::Model>,
    contacts: Cache<(i64, String), contact::Model>,
}

impl Context {
    /// Prepares keys and secrets (creating them on first start), releases the delivery
    /// claims a previous run of `instance` left, and returns the context.
    pub async fn start(
        db: DatabaseConnection,
        settings: Arc<Settings>,
        outbound: Outbound,
        instance: String,
    ) -> Result<Self> {
        let domains = signing_domains(&settings);
        let kek = crate::kek::Kek::load(&settings, &db).await?;
        for domain in &domains {
            dkim::ensure_keys(&db, &kek, domain)
                .await
                .map_err(|e| DomainError::Invalid(format!("DKIM keys for {domain}: {e}")))?;
        }
        let signers = Signers::load(&db, &kek, &domains).await?;
        let verp_key = secrets::load_or_create(&db, "verp").await?;
        let reverse_alias_key = secrets::load_or_create(&db, "reverse-alias").await?;
        let action_key = secrets::load_or_create(&db, "action").await?;
        let journal = crate::delivery::journal::Journal::new(&settings.data_dir, &instance);
        let accepted = journal.replay(&db, &instance).await?;
        if accepted > 0 {
            tracing::info!(accepted, %instance, "marked delivered what the last run sent but had not recorded");
        }
        let released = crate::delivery::queue::release_claims(&db, &instance).await?;
        if released > 0 {
            tracing::info!(released, %instance, "resumed deliveries claimed before a restart");
        }
        let writer = Writer::start(crate::db::writer_connection(&settings, &db).await?);
        let delivered = crate::delivery::status::Delivered::start(writer.clone());
        let authenticator = crate::dns::authenticator(&settings.dns)?;
        let ctx = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                signers,
                kek,
                signing_domains: domains,
                verp_key,
                reverse_alias_key,
                action_key,
                outbound,
                writer,
                delivered,
                journal,
                instance,
                wake: Notify::new(),
                deliveries: Arc::new(Semaphore::new(CONCURRENT_DELIVERIES)),
                password_slots: Semaphore::new(password_slots()),
                large_message_slots: Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
                key_uses: Default::default(),
                limits: Default::default(),
                authenticator,
                auth_caches: Default::default(),
                stopping: watch::channel(false).0,
                routes_by_address: Cache::default(),
                routes_by_id: Cache::default(),
                reverse_aliases: Cache::default(),
                contacts: Cache::default(),
            }),
        };
        ctx.watch_signing_keys();
        Ok(ctx)
    }

    /// Hashes a password with argon2id on the blocking pool (see [`password_slots`]).
    pub async fn hash_password(&self, password: &str) -> Result<String> {
        let password = password.to_string();
        self.password_work(move || crate::auth::hash_password(&password))
            .await?
    }

    /// Checks a password against its hash on the blocking pool; a missing hash costs the same.
    pub async fn verify_password(&self, hash: Option<&str>, password: &str) -> Result<bool> {
        let (hash, password) = (hash.map(str::to_string), password.to_string());
        self.password_work(move || crate::auth::verify_password(hash.as_deref(), &password))
            .await
    }

    async fn password_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let _slot = self
            .inner
            .password_slots
            .acquire()
            .await
            .map_err(|_| DomainError::Unavailable("shutting down".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| DomainError::Unavailable(format!("password hashing: {e}")))
    }

    /// The SPF, DKIM, DMARC and ARC checker, on the shared caching resolver.
    /// Parsed DNS answers of the sender checks (SPF, DKIM keys, DMARC), kept for their TTL.
    pub fn auth_caches(&self) -> &crate::dns::AuthCaches {
        &self.inner.auth_caches
    }

    pub fn authenticator(&self) -> &mail_auth::MessageAuthenticator {
        &self.inner.authenticator
    }

    /// The mail path's rate limits (messages per alias and user, replies per user).
    pub fn limits(&self) -> &crate::limit::RateLimiter {
        &self.inner.limits
    }

    /// API-key uses not yet written ([`crate::accounts::user_by_api_key`]).
    pub fn key_uses(&self) -> &crate::accounts::KeyUses {
        &self.inner.key_uses
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn signers(&self) -> &Signers {
        &self.inner.signers
    }

    /// The key that seals DKIM private keys at rest.
    pub fn kek(&self) -> &crate::kek::Kek {
        &self.inner.kek
    }

    /// The domains we sign for.
    pub fn signing_domains(&self) -> &[String] {
        &self.inner.signing_domains
    }

    /// Signs with the keys active now (after a rotation, in this or another instance).
    pub async fn reload_signers(&self) -> Result<()> {
        let inner = &self.inner;
        inner
            .signers
            .reload(&inner.db, &inner.kek, &inner.signing_domains)
            .await
    }

    /// Every minute, picks up keys another instance activated; ends with the context.
    fn watch_signing_keys(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(
                tokio::time::Instant::now() + SIGNER_RELOAD,
                SIGNER_RELOAD,
            );
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let ctx = Context { inner };
                if let Err(e) = ctx.reload_signers().await {
                    tracing::warn!(error = %e, "reloading DKIM keys failed");
                }
            }
        });
    }

    pub fn verp_key(&self) -> &HmacKey {
        &self.inner.verp_key
    }

    /// The key reverse-alias addresses are derived with.
    /// Signs the one-click links of notification emails.
    pub fn action_key(&self) -> &HmacKey {
        &self.inner.action_key
    }

    pub fn reverse_alias_key(&self) -> &HmacKey {
        &self.inner.reverse_alias_key
    }

    pub fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }

    /// The group-commit writer: every write of the mail path goes through it.
    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Where a successful send's status goes: committed in batches.
    pub fn delivered(&self) -> &crate::delivery::status::Delivered {
        &self.inner.delivered
    }

    /// Where an accepted delivery is noted before its status commit.
    pub fn sent_journal(&self) -> &crate::delivery::journal::Journal {
        &self.inner.journal
    }

    /// This process's name on the delivery claims it makes.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// How many more deliveries this process can attempt right now.
    pub fn free_delivery_slots(&self) -> usize {
        self.inner.deliveries.available_permits()
    }

    /// Woken whenever a delivery attempt ends; the queue runner waits on it while busy.
    pub fn wake(&self) -> &Notify {
        &self.inner.wake
    }

    /// Deliveries of large messages being rendered and sent at once (see `delivery::attempt`).
    pub(crate) fn large_message_slots(&self) -> &Semaphore {
        &self.inner.large_message_slots
    }

    pub(crate) fn delivery_slots(&self) -> &Arc<Semaphore> {
        &self.inner.deliveries
    }

    /// Resolves once [`Context::shutdown`] has been called.
    pub(crate) async fn stopping(&self) {
        let mut rx = self.inner.stopping.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Stops delivering: waits up to `grace` for the attempts under way, then abandons the
    /// rest (their claims are released when this instance starts again).
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.stopping.send(true);
        let all = u32::try_from(CONCURRENT_DELIVERIES).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(grace, self.inner.deliveries.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!("deliveries still running at shutdown were abandoned");
        }
        self.inner.deliveries.close();
    }

    pub(crate) fn routes_by_address(&self) -> &Cache<String, Route> {
        &self.inner.routes_by_address
    }

    pub(crate) fn routes_by_id(&self) -> &Cache<i64, Route> {
        &self.inner.routes_by_id
    }

    pub(crate) fn reverse_aliases(&self) -> &Cache<String, contact::Model> {
        &self.inner.reverse_aliases
    }

    /// An alias's contacts by `(alias id, address)`, as the forward flow looks them up.
    pub(crate) fn contacts(&self) -> &Cache<(i64, String), contact::Model> {
        &self.inner.contacts
    }

    /// Queues a message from Postern to one of its users (account emails).
    pub async fn send_notice(
        &self,
        user_id: i64,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Result<()> {
        let notice = crate::flow::notice::Notice {
            kind: crate::flow::notice::NoticeKind::Account,
            user_id: Some(user_id),
            alias_id: None,
            to: vec![to.to_string()],
            subject: subject.to_string(),
            text: text.to_string(),
            actions: Vec::new(),
        };
        crate::flow::notice::send(self, notice).await
    }
}

/// How often an instance looks for DKIM keys activated elsewhere.
const SIGNER_RELOAD: Duration = Duration::from_secs(60);

fn signing_domains(settings: &Settings) -> Vec<String> {
    let mut domains = settings.mail.alias_domains.clone();
    if !domains.contains(&settings.mail.reply_domain) {
        domains.push(settings.mail.reply_domain.clone());
    }
    domains
}
