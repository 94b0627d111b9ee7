//! Users, API keys, mailboxes, aliases and contacts (reverse aliases).
//!
//! Every function takes `&impl ConnectionTrait` so a caller can run it inside a transaction.

use data_encoding::{BASE32_NOPAD, HEXLOWER};
use postern_config::Settings;
use postern_entity::{alias, alias_mailbox, api_key, contact, deleted_alias, mailbox, user};
use rand::{Rng, RngCore};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use sha2::{Digest, Sha256};

use crate::address::EmailAddress;
use crate::secrets::HmacKey;
use crate::verp::Verp;
use crate::words::WORDS;
use crate::{DomainError, Result};

/// A new user with its default mailbox and first API key (shown once, stored hashed).
pub struct NewUser {
    pub user: user::Model,
    pub mailbox: mailbox::Model,
    pub api_key: String,
}

pub async fn create_user(db: &impl ConnectionTrait, email: &EmailAddress) -> Result<NewUser> {
    if find_user(db, email.as_str()).await?.is_some() {
        return Err(DomainError::Conflict(format!(
            "a user with the email {email} already exists"
        )));
    }
    if find_verified_mailbox(db, email.as_str()).await?.is_some() {
        return Err(DomainError::Conflict(format!(
            "{email} is already a mailbox of another user"
        )));
    }
    if !not_ours(db, email.as_str()).await? {
        return Err(DomainError::Conflict(format!(
            "{email} is an alias or reverse alias on this server, not a real mailbox"
        )));
    }
    let now = chrono::Utc::now();
    let user = user::ActiveModel {
        email: Set(email.to_string()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let mailbox = insert_mailbox(db, user.id, email, true).await?;
    let mut active: user::ActiveModel = user.into();
    active.default_mailbox_id = Set(Some(mailbox.id));
    let user = active.update(db).await?;
    let api_key = create_api_key(db, user.id, "default").await?;
    Ok(NewUser {
        user,
        mailbox,
        api_key,
    })
}

pub async fn find_user(db: &impl ConnectionTrait, email: &str) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.to_lowercase()))
        .one(db)
        .await?)
}

pub async fn find_user_by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

pub async fn set_alias_quota(
    db: &impl ConnectionTrait,
    u: user::Model,
    quota: Option<i32>,
) -> Result<()> {
    let mut active: user::ActiveModel = u.into();
    active.alias_quota = Set(quota);
    active.update(db).await?;
    Ok(())
}

pub async fn require_user(db: &impl ConnectionTrait, email: &str) -> Result<user::Model> {
    find_user(db, email)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("user {email}")))
}

/// Creates an API key and returns it; only its SHA-256 is stored.
pub async fn create_api_key(db: &impl ConnectionTrait, user_id: i64, name: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
    api_key::ActiveModel {
        user_id: Set(user_id),
        name: Set(name.to_string()),
        key_hash: Set(hash_api_key(&key)),
        use_count: Set(0),
        last_used: Set(None),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(key)
}

/// API keys have 256 bits of entropy, so a fast hash is enough and lookups stay indexed.
pub fn hash_api_key(key: &str) -> String {
    HEXLOWER.encode(&Sha256::digest(key.as_bytes()))
}

/// The verified mailbox at `email` (there is at most one; unverified claims may be several).
pub async fn find_verified_mailbox(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<mailbox::Model>> {
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::Email.eq(email.to_lowercase()))
        .filter(mailbox::Column::Verified.eq(true))
        .one(db)
        .await?)
}

/// Whether any mailbox, verified or not, is at `email`.
async fn any_mailbox_at(db: &impl ConnectionTrait, email: &str) -> Result<bool> {
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::Email.eq(email.to_lowercase()))
        .count(db)
        .await?
        > 0)
}

async fn insert_mailbox(
    db: &impl ConnectionTrait,
    user_id: i64,
    email: &EmailAddress,
    verified: bool,
) -> Result<mailbox::Model> {
    Ok(mailbox::ActiveModel {
        user_id: Set(user_id),
        email: Set(email.to_string()),
        verified: Set(verified),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// Adds a mailbox to a user. An admin adding it vouches for it, so it starts verified.
pub async fn add_mailbox(
    db: &impl ConnectionTrait,
    settings: &Settings,
    user: &user::Model,
    email: &EmailAddress,
) -> Result<mailbox::Model> {
    check_mailbox_address(settings, email)?;
    if find_verified_mailbox(db, email.as_str()).await?.is_some()
        || user_has_mailbox(db, user.id, email).await?
    {
        return Err(DomainError::Conflict(format!(
            "the mailbox {email} already exists"
        )));
    }
    insert_mailbox(db, user.id, email, true).await
}

/// An unverified mailbox: the row, and whether the address is already another account's
/// verified mailbox (then the verification can never succeed; the caller says so by email
/// to the address, and answers the client exactly as for a free address).
pub struct PendingMailbox {
    pub mailbox: mailbox::Model,
    pub taken: bool,
}

/// Adds a mailbox that must be verified (by a link sent to it) before it receives anything.
/// Only the user's own duplicate is refused: whether someone else uses the address is not
/// revealed. Unverified mailboxes expire ([`purge_unverified`]).
pub async fn add_unverified_mailbox(
    db: &impl ConnectionTrait,
    settings: &Settings,
    user: &user::Model,
    email: &EmailAddress,
) -> Result<PendingMailbox> {
    check_mailbox_address(settings, email)?;
    if user_has_mailbox(db, user.id, email).await? {
        return Err(DomainError::Conflict(format!(
            "the mailbox {email} already exists"
        )));
    }
    let taken = find_verified_mailbox(db, email.as_str()).await?.is_some();
    let mailbox = insert_mailbox(db, user.id, email, false).await?;
    Ok(PendingMailbox { mailbox, taken })
}

fn check_mailbox_address(settings: &Settings, email: &EmailAddress) -> Result<()> {
    if is_our_domain(settings, email.domain()) {
        return Err(DomainError::Invalid(format!(
            "{email} is on one of this server's own domains; a mailbox must be a real address elsewhere"
        )));
    }
    Ok(())
}

async fn user_has_mailbox(
    db: &impl ConnectionTrait,
    user_id: i64,
    email: &EmailAddress,
) -> Result<bool> {
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::UserId.eq(user_id))
        .filter(mailbox::Column::Email.eq(email.as_str()))
        .count(db)
        .await?
        > 0)
}

/// Deletes unverified mailboxes and never-activated accounts older than `lifetime`, so an
/// address claimed by someone who cannot read its mail is free again. Returns
/// `(mailboxes, accounts)` removed.
pub async fn purge_unverified(
    db: &impl ConnectionTrait,
    lifetime: std::time::Duration,
) -> Result<(u64, u64)> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::days(7));
    let stale_users = user::Entity::find()
        .filter(user::Column::Activated.eq(false))
        .filter(user::Column::CreatedAt.lt(cutoff))
        .all(db)
        .await?;
    let accounts = stale_users.len() as u64;
    for u in stale_users {
        crate::auth::delete_account(db, u.id).await?;
    }
    let stale = mailbox::Entity::find()
        .filter(mailbox::Column::Verified.eq(false))
        .filter(mailbox::Column::CreatedAt.lt(cutoff))
        .all(db)
        .await?;
    let mut mailboxes = 0;
    for m in stale {
        let is_default = user::Entity::find()
            .filter(user::Column::DefaultMailboxId.eq(m.id))
            .count(db)
            .await?
            > 0;
        if is_default {
            continue;
        }
        alias_mailbox::Entity::delete_many()
            .filter(alias_mailbox::Column::MailboxId.eq(m.id))
            .exec(db)
            .await?;
        mailbox::Entity::delete_by_id(m.id).exec(db).await?;
        mailboxes += 1;
    }
    Ok((mailboxes, accounts))
}

/// One of the user's mailboxes by id; another user's is `None`, like a missing one.
pub async fn user_mailbox(
    db: &impl ConnectionTrait,
    user_id: i64,
    id: i64,
) -> Result<Option<mailbox::Model>> {
    Ok(mailbox::Entity::find_by_id(id)
        .filter(mailbox::Column::UserId.eq(user_id))
        .one(db)
        .await?)
}

/// Marks a mailbox verified; a `Conflict` when another account verified the address first.
pub async fn verify_mailbox(
    db: &impl ConnectionTrait,
    m: mailbox::Model,
) -> Result<mailbox::Model> {
    if let Some(other) = find_verified_mailbox(db, &m.email).await?
        && other.id != m.id
    {
        return Err(DomainError::Conflict(format!(
            "{} is already the mailbox of an account",
            m.email
        )));
    }
    let mut active: mailbox::ActiveModel = m.into();
    active.verified = Set(true);
    Ok(active.update(db).await?)
}

/// The addresses the given mailboxes authorised to send as them: `(address, mailbox id)`.
pub async fn authorized_addresses(
    db: &impl ConnectionTrait,
    mailbox_ids: impl IntoIterator<Item = i64>,
) -> Result<Vec<(String, i64)>> {
    use postern_entity::authorized_address;
    let ids: Vec<i64> = mailbox_ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(authorized_address::Entity::find()
        .filter(authorized_address::Column::MailboxId.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|a| (a.email, a.mailbox_id))
        .collect())
}

/// The addresses one of the user's mailboxes authorised.
pub async fn list_authorized(
    db: &impl ConnectionTrait,
    m: &mailbox::Model,
) -> Result<Vec<postern_entity::authorized_address::Model>> {
    use postern_entity::authorized_address;
    Ok(authorized_address::Entity::find()
        .filter(authorized_address::Column::MailboxId.eq(m.id))
        .order_by_asc(authorized_address::Column::Id)
        .all(db)
        .await?)
}

/// Lets `email` send as mailbox `m` through reverse aliases. Not one of our own addresses.
pub async fn authorize_address(
    db: &impl ConnectionTrait,
    settings: &Settings,
    m: &mailbox::Model,
    email: &EmailAddress,
) -> Result<postern_entity::authorized_address::Model> {
    use postern_entity::authorized_address;
    if is_our_domain(settings, email.domain()) {
        return Err(DomainError::Invalid(
            "an address on this server's own domains cannot be authorised".into(),
        ));
    }
    let existing = list_authorized(db, m).await?;
    if let Some(a) = existing.iter().find(|a| a.email == email.as_str()) {
        return Ok(a.clone());
    }
    if existing.len() >= 20 {
        return Err(DomainError::Invalid(
            "a mailbox may authorise at most 20 addresses".into(),
        ));
    }
    let row = authorized_address::ActiveModel {
        user_id: Set(m.user_id),
        mailbox_id: Set(m.id),
        email: Set(email.as_str().to_string()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    };
    let saved = authorized_address::Entity::insert(row)
        .exec_with_returning(db)
        .await?;
    crate::cache::invalidate();
    Ok(saved)
}

/// Removes one of mailbox `m`'s authorised addresses; false when it has no such one.
pub async fn unauthorize_address(
    db: &impl ConnectionTrait,
    m: &mailbox::Model,
    id: i64,
) -> Result<bool> {
    use postern_entity::authorized_address;
    let done = authorized_address::Entity::delete_many()
        .filter(authorized_address::Column::Id.eq(id))
        .filter(authorized_address::Column::MailboxId.eq(m.id))
        .exec(db)
        .await?;
    crate::cache::invalidate();
    Ok(done.rows_affected == 1)
}

/// Stops or resumes forwarding to a mailbox (bounces stop it; the owner resumes it).
pub async fn set_mailbox_disabled(
    db: &impl ConnectionTrait,
    m: &mailbox::Model,
    disabled: bool,
) -> Result<()> {
    mailbox::Entity::update_many()
        .col_expr(mailbox::Column::Disabled, Expr::value(disabled))
        .filter(mailbox::Column::Id.eq(m.id))
        .exec(db)
        .await?;
    crate::cache::invalidate();
    Ok(())
}

pub async fn set_default_mailbox(
    db: &impl ConnectionTrait,
    user: user::Model,
    m: &mailbox::Model,
) -> Result<()> {
    if !m.verified {
        return Err(DomainError::Invalid(
            "Unverified mailbox cannot be used as default mailbox".into(),
        ));
    }
    let mut active: user::ActiveModel = user.into();
    active.default_mailbox_id = Set(Some(m.id));
    active.update(db).await?;
    Ok(())
}

/// Deletes a mailbox. Its aliases move to `transfer_to` (one of the user's verified
/// mailboxes); without one, aliases left with no mailbox are deleted.
pub async fn delete_mailbox(
    db: &impl ConnectionTrait,
    user: &user::Model,
    m: mailbox::Model,
    transfer_to: Option<i64>,
) -> Result<()> {
    if user.default_mailbox_id == Some(m.id) {
        return Err(DomainError::Invalid(
            "Cannot delete your default mailbox".into(),
        ));
    }
    let target = match transfer_to {
        Some(id) if id == m.id => {
            return Err(DomainError::Invalid(
                "You can not transfer the aliases to the mailbox you want to delete".into(),
            ));
        }
        Some(id) => {
            let t = user_mailbox(db, user.id, id).await?.ok_or_else(|| {
                DomainError::Invalid("You must transfer the aliases to a mailbox you own".into())
            })?;
            if !t.verified {
                return Err(DomainError::Invalid(
                    "Your new mailbox is not verified".into(),
                ));
            }
            Some(t)
        }
        None => None,
    };
    let links = alias_mailbox::Entity::find()
        .filter(alias_mailbox::Column::MailboxId.eq(m.id))
        .all(db)
        .await?;
    alias_mailbox::Entity::delete_many()
        .filter(alias_mailbox::Column::MailboxId.eq(m.id))
        .exec(db)
        .await?;
    for link in links {
        let remaining = alias_mailbox::Entity::find()
            .filter(alias_mailbox::Column::AliasId.eq(link.alias_id))
            .count(db)
            .await?;
        match &target {
            Some(t) => {
                alias_mailbox::Entity::insert(alias_mailbox::ActiveModel {
                    alias_id: Set(link.alias_id),
                    mailbox_id: Set(t.id),
                })
                .on_conflict(
                    OnConflict::columns([
                        alias_mailbox::Column::AliasId,
                        alias_mailbox::Column::MailboxId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
            }
            None if remaining == 0 => {
                if let Some(a) = alias::Entity::find_by_id(link.alias_id).one(db).await? {
                    purge_alias(db, a).await?;
                }
            }
            None => {}
        }
    }
    postern_entity::authorized_address::Entity::delete_many()
        .filter(postern_entity::authorized_address::Column::MailboxId.eq(m.id))
        .exec(db)
        .await?;
    mailbox::Entity::delete_by_id(m.id).exec(db).await?;
    Ok(())
}

pub async fn user_mailboxes(
    db: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Vec<mailbox::Model>> {
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::UserId.eq(user_id))
        .order_by_asc(mailbox::Column::Id)
        .all(db)
        .await?)
}

/// A role address no user may take: a reserved local part on an alias domain, or the
/// configured postmaster address itself.
pub fn is_reserved(settings: &Settings, address: &EmailAddress) -> bool {
    let on_alias_domain = settings
        .mail
        .alias_domains
        .iter()
        .any(|d| d == address.domain());
    (on_alias_domain
        && settings
            .accounts
            .reserved_local_parts
            .iter()
            .any(|r| r == address.local()))
        || settings.mail.postmaster.as_deref() == Some(address.as_str())
}

/// Aliases that hold a reserved address (created before the name was reserved). They keep
/// working, except `postmaster@` and `abuse@`, which always go to `mail.postmaster`.
pub async fn reserved_aliases(
    db: &impl ConnectionTrait,
    settings: &Settings,
) -> Result<Vec<alias::Model>> {
    let mut candidates = Vec::new();
    for domain in &settings.mail.alias_domains {
        for local in &settings.accounts.reserved_local_parts {
            candidates.push(format!("{local}@{domain}"));
        }
    }
    candidates.extend(settings.mail.postmaster.clone());
    Ok(alias::Entity::find()
        .filter(alias::Column::Email.is_in(candidates))
        .order_by_asc(alias::Column::Id)
        .all(db)
        .await?)
}

pub fn is_our_domain(settings: &Settings, domain: &str) -> bool {
    settings.mail.reply_domain == domain || settings.mail.alias_domains.iter().any(|d| d == domain)
}

/// The address a new alias gets.
#[derive(Debug, Clone)]
pub enum NewAliasAddress {
    /// Exactly this one (on an alias domain, free).
    Exact(EmailAddress),
    /// `word_word123` on the given alias domain (default: the first).
    RandomWords(Option<String>),
    /// A random UUID.
    RandomUuid(Option<String>),
    /// Eight random letters and digits (addy.io's default format).
    RandomCharacters(Option<String>),
    /// `<site>.<word>123` for a website's host name (the one-click alias of browser tools).
    Website(String),
}

/// Creates an alias for `user`. `mailboxes` (addresses of the user's own verified mailboxes)
/// default to the user's default mailbox.
pub async fn create_alias(
    db: &impl ConnectionTrait,
    settings: &Settings,
    user: &user::Model,
    address: NewAliasAddress,
    mailboxes: &[EmailAddress],
    note: Option<String>,
) -> Result<alias::Model> {
    let targets = pick_mailboxes(db, user, mailboxes).await?;
    if let Some(quota) = user.alias_quota {
        let count = alias::Entity::find()
            .filter(alias::Column::UserId.eq(user.id))
            .filter(alias::Column::DeletedAt.is_null())
            .count(db)
            .await?;
        if count >= u64::try_from(quota).unwrap_or(0) {
            return Err(DomainError::Invalid(format!(
                "the alias quota of {quota} is reached"
            )));
        }
    }
    let email = match address {
        NewAliasAddress::Exact(address) => {
            check_new_alias_address(db, settings, &address).await?;
            address.to_string()
        }
        other => random_alias(db, settings, &other).await?,
    };
    let alias = alias::ActiveModel {
        user_id: Set(user.id),
        email: Set(email),
        enabled: Set(true),
        note: Set(note.map(|n| n.chars().take(10_000).collect())),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    for mb in targets {
        alias_mailbox::ActiveModel {
            alias_id: Set(alias.id),
            mailbox_id: Set(mb.id),
        }
        .insert(db)
        .await?;
    }
    Ok(alias)
}

async fn pick_mailboxes(
    db: &impl ConnectionTrait,
    user: &user::Model,
    wanted: &[EmailAddress],
) -> Result<Vec<mailbox::Model>> {
    let owned = user_mailboxes(db, user.id).await?;
    if wanted.is_empty() {
        let default = owned
            .iter()
            .find(|m| Some(m.id) == user.default_mailbox_id)
            .or_else(|| owned.first())
            .cloned()
            .ok_or_else(|| DomainError::Invalid(format!("{} has no mailbox", user.email)))?;
        return Ok(vec![default]);
    }
    let mut picked = Vec::new();
    for w in wanted {
        let mb = owned
            .iter()
            .find(|m| m.email == w.as_str())
            .ok_or_else(|| {
                DomainError::Invalid(format!("{w} is not a mailbox of {}", user.email))
            })?;
        if !mb.verified {
            return Err(DomainError::Invalid(format!(
                "the mailbox {w} is not verified"
            )));
        }
        if !picked.iter().any(|p: &mailbox::Model| p.id == mb.id) {
            picked.push(mb.clone());
        }
    }
    Ok(picked)
}

async fn check_new_alias_address(
    db: &impl ConnectionTrait,
    settings: &Settings,
    address: &EmailAddress,
) -> Result<()> {
    if !settings
        .mail
        .alias_domains
        .iter()
        .any(|d| d == address.domain())
    {
        return Err(DomainError::Invalid(format!(
            "{address} is not on an alias domain (alias domains: {})",
            settings.mail.alias_domains.join(", ")
        )));
    }
    if address.domain() == settings.mail.reply_domain && address.local() == "noreply" {
        return Err(DomainError::Invalid(format!(
            "{address} is reserved: Postern sends its notices from it"
        )));
    }
    if is_reserved(settings, address) {
        return Err(DomainError::Invalid(format!(
            "{address} is reserved for the server's own mail (postmaster, abuse and other role addresses)"
        )));
    }
    if let Err(problem) = crate::address::check_local_part(address.local()) {
        return Err(DomainError::Invalid(format!("{address} {problem}")));
    }
    if Verp::looks_like(address.local()) {
        return Err(DomainError::Invalid(format!(
            "{address} is reserved for bounce handling"
        )));
    }
    if !address_is_free(db, address.as_str()).await? {
        return Err(DomainError::Conflict(format!(
            "the address {address} is already taken"
        )));
    }
    Ok(())
}

/// Not an alias, a reverse alias, a mailbox, nor a deleted alias.
async fn address_is_free(db: &impl ConnectionTrait, email: &str) -> Result<bool> {
    Ok(not_ours(db, email).await? && !any_mailbox_at(db, email).await?)
}

/// Not an alias, a reverse alias, nor a deleted alias: an address that may be a person's.
async fn not_ours(db: &impl ConnectionTrait, email: &str) -> Result<bool> {
    Ok(alias::Entity::find()
        .filter(alias::Column::Email.eq(email))
        .count(db)
        .await?
        == 0
        && contact::Entity::find()
            .filter(contact::Column::ReplyEmail.eq(email))
            .count(db)
            .await?
            == 0
        && deleted_alias::Entity::find()
            .filter(deleted_alias::Column::Email.eq(email))
            .count(db)
            .await?
            == 0)
}

async fn random_alias(
    db: &impl ConnectionTrait,
    settings: &Settings,
    kind: &NewAliasAddress,
) -> Result<String> {
    let domain = match kind {
        NewAliasAddress::RandomWords(Some(d))
        | NewAliasAddress::RandomUuid(Some(d))
        | NewAliasAddress::RandomCharacters(Some(d)) => {
            if !settings.mail.alias_domains.contains(d) {
                return Err(DomainError::Invalid(format!("{d} is not an alias domain")));
            }
            d.as_str()
        }
        _ => settings.default_alias_domain(),
    };
    let site = match kind {
        NewAliasAddress::Website(host) => site_label(host),
        _ => None,
    };
    for _ in 0..20 {
        let local = {
            let mut rng = rand::rng();
            let word = |rng: &mut rand::rngs::ThreadRng| WORDS[rng.random_range(0..WORDS.len())];
            match (kind, &site) {
                (NewAliasAddress::RandomUuid(_), _) => uuid_v4(&mut rng),
                (NewAliasAddress::RandomCharacters(_), _) => (0..8)
                    .map(|_| {
                        let chars = b"abcdefghijklmnopqrstuvwxyz0123456789";
                        char::from(chars[rng.random_range(0..chars.len())])
                    })
                    .collect(),
                (_, Some(site)) => {
                    format!("{site}.{}{:03}", word(&mut rng), rng.random_range(0..1000))
                }
                _ => format!(
                    "{}_{}{:03}",
                    word(&mut rng),
                    word(&mut rng),
                    rng.random_range(0..1000)
                ),
            }
        };
        let email = format!("{local}@{domain}");
        if address_is_free(db, &email).await? {
            return Ok(email);
        }
    }
    Err(DomainError::Conflict(
        "could not find a free random alias; try again".into(),
    ))
}

/// The name of a site from its host name: `www.github.com` → `github`,
/// `shop.example.co.uk` → `example`. `None` when nothing usable is left.
pub fn site_label(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let host = host
        .split("://")
        .last()
        .unwrap_or_default()
        .split(['/', ':', '?', '#'])
        .next()
        .unwrap_or_default();
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    let label = match labels.as_slice() {
        [] => return None,
        [only] => *only,
        // `co.uk`, `com.au`: a short second-level label under a country code.
        [.., name, second, tld] if second.len() <= 3 && tld.len() == 2 => *name,
        [.., name, _tld] => *name,
    };
    let clean: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    let clean = clean.trim_matches(['-', '_']).to_string();
    (!clean.is_empty()).then_some(clean)
}

fn uuid_v4(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = HEXLOWER.encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Uses of each API key counted in memory since its row was last written (one per database:
/// it lives in the [`crate::Context`]).
#[derive(Default)]
pub struct KeyUses(std::sync::Mutex<std::collections::HashMap<i64, i64>>);

/// How often a key's `last_used` and `use_count` are written: a read-only request must not
/// cost a write each time.
const KEY_USE_WRITE_SECS: i64 = 60;

/// The user an API key belongs to, with the key row. Its use is counted in memory and
/// written at most once a minute per key (with every use counted since).
pub async fn user_by_api_key(
    db: &impl ConnectionTrait,
    uses: &KeyUses,
    key: &str,
) -> Result<Option<(user::Model, api_key::Model)>> {
    use sea_orm::sea_query::ExprTrait;
    let hash = hash_api_key(key.trim());
    let Some(row) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash.as_str()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let now = chrono::Utc::now();
    let due = row
        .last_used
        .is_none_or(|at| (now - at).num_seconds() >= KEY_USE_WRITE_SECS);
    let uses = {
        let mut counts = uses
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due {
            counts.remove(&row.id).unwrap_or(0) + 1
        } else {
            *counts.entry(row.id).or_insert(0) += 1;
            0
        }
    };
    if uses > 0 {
        api_key::Entity::update_many()
            .col_expr(
                api_key::Column::UseCount,
                Expr::col(api_key::Column::UseCount).add(uses),
            )
            .col_expr(api_key::Column::LastUsed, Expr::value(Some(now)))
            .filter(api_key::Column::Id.eq(row.id))
            .exec(db)
            .await?;
    }
    Ok(user::Entity::find_by_id(row.user_id)
        .one(db)
        .await?
        .map(|u| (u, row)))
}

/// One of the user's aliases by id; another user's alias is `None`, like a missing one.
pub async fn user_alias(
    db: &impl ConnectionTrait,
    user_id: i64,
    alias_id: i64,
) -> Result<Option<alias::Model>> {
    Ok(alias::Entity::find_by_id(alias_id)
        .filter(alias::Column::UserId.eq(user_id))
        .filter(alias::Column::DeletedAt.is_null())
        .one(db)
        .await?)
}

pub async fn toggle_alias(db: &impl ConnectionTrait, alias: alias::Model) -> Result<alias::Model> {
    let enabled = !alias.enabled;
    let mut active: alias::ActiveModel = alias.into();
    active.enabled = Set(enabled);
    Ok(active.update(db).await?)
}

/// A random suffix for a custom alias on `domain`: `.cat123@domain`, or `.48213@domain` in
/// the `random_string` style.
pub fn random_suffix(domain: &str, style: &str) -> String {
    let mut rng = rand::rng();
    if style == "random_string" {
        return format!(".{:05}@{domain}", rng.random_range(0..100_000));
    }
    let word = WORDS[rng.random_range(0..WORDS.len())];
    format!(".{word}{:03}@{domain}", rng.random_range(0..1000))
}

/// A user's settings, validated; `None` fields stay as they are.
#[derive(Debug, Default, Clone)]
pub struct SettingsUpdate {
    pub alias_generator: Option<String>,
    pub sender_format: Option<String>,
    pub random_alias_suffix: Option<String>,
    pub notification: Option<bool>,
    pub default_alias_domain: Option<String>,
    /// `return_2xx` or `return_5xx`.
    pub block_behaviour: Option<String>,
    /// `warn` or `hold`.
    pub dmarc_quarantine: Option<String>,
    /// `Some(None)` turns the spam threshold off; `Some(Some(t))` sets it, in tenths of a
    /// point (1 to 1,000: 0.1 to 100).
    pub spam_threshold: Option<Option<i32>>,
}

/// The highest spam threshold, in tenths of a point.
pub const MAX_SPAM_THRESHOLD: i32 = 1000;

/// A spam threshold as people write it (`5`, `7.5`) in tenths of a point; `None` when it is
/// not a number.
pub fn parse_spam_threshold(points: f64) -> Option<i32> {
    (points.is_finite() && points.abs() < 1e6).then(|| (points * 10.0).round() as i32)
}

pub async fn update_settings(
    db: &impl ConnectionTrait,
    settings: &Settings,
    u: user::Model,
    update: SettingsUpdate,
) -> Result<user::Model> {
    let mut active: user::ActiveModel = u.into();
    if let Some(g) = update.alias_generator {
        if !matches!(g.as_str(), "word" | "uuid") {
            return Err(DomainError::Invalid("Invalid alias_generator".into()));
        }
        active.alias_generator = Set(g);
    }
    if let Some(f) = update.sender_format {
        if crate::rewrite::SenderFormat::parse(&f).is_none() {
            return Err(DomainError::Invalid("Invalid sender_format".into()));
        }
        active.sender_format = Set(f);
    }
    if let Some(s) = update.random_alias_suffix {
        if !matches!(s.as_str(), "word" | "random_string") {
            return Err(DomainError::Invalid("Invalid random_alias_suffix".into()));
        }
        active.random_alias_suffix = Set(s);
    }
    if let Some(n) = update.notification {
        active.notification = Set(n);
    }
    if let Some(b) = update.block_behaviour {
        if !matches!(b.as_str(), "return_2xx" | "return_5xx") {
            return Err(DomainError::Invalid("Invalid block_behaviour".into()));
        }
        active.block_behaviour = Set(b);
    }
    if let Some(q) = update.dmarc_quarantine {
        if !matches!(q.as_str(), "warn" | "hold") {
            return Err(DomainError::Invalid("Invalid dmarc_quarantine".into()));
        }
        active.dmarc_quarantine = Set(q);
    }
    if let Some(t) = update.spam_threshold {
        if t.is_some_and(|t| !(1..=MAX_SPAM_THRESHOLD).contains(&t)) {
            return Err(DomainError::Invalid(
                "Invalid spam_threshold: give a score from 0.1 to 100, or null for none".into(),
            ));
        }
        active.spam_threshold = Set(t);
    }
    if let Some(d) = update.default_alias_domain {
        if !settings.mail.alias_domains.contains(&d) {
            return Err(DomainError::Invalid("invalid domain".into()));
        }
        active.default_alias_domain = Set(Some(d));
    }
    Ok(active.update(db).await?)
}

/// The domain new random aliases of `u` go on.
pub fn alias_domain_for(settings: &Settings, u: &user::Model) -> String {
    u.default_alias_domain
        .clone()
        .filter(|d| settings.mail.alias_domains.contains(d))
        .unwrap_or_else(|| settings.default_alias_domain().to_string())
}

/// Changes to an alias; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct AliasUpdate {
    pub note: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub pinned: Option<bool>,
    /// Mailbox ids of the alias's owner (verified).
    pub mailbox_ids: Option<Vec<i64>>,
}

pub async fn update_alias(
    db: &impl ConnectionTrait,
    alias: alias::Model,
    update: AliasUpdate,
) -> Result<alias::Model> {
    if let Some(ids) = &update.mailbox_ids {
        let owned = user_mailboxes(db, alias.user_id).await?;
        if ids.is_empty() {
            return Err(DomainError::Invalid(
                "Must choose at least one mailbox".into(),
            ));
        }
        for id in ids {
            match owned.iter().find(|m| m.id == *id) {
                Some(m) if m.verified => {}
                Some(_) => return Err(DomainError::Invalid("Mailbox not verified".into())),
                None => return Err(DomainError::Invalid("Invalid mailbox_id".into())),
            }
        }
        alias_mailbox::Entity::delete_many()
            .filter(alias_mailbox::Column::AliasId.eq(alias.id))
            .exec(db)
            .await?;
        let mut seen = Vec::new();
        for id in ids {
            if seen.contains(id) {
                continue;
            }
            seen.push(*id);
            alias_mailbox::ActiveModel {
                alias_id: Set(alias.id),
                mailbox_id: Set(*id),
            }
            .insert(db)
            .await?;
        }
    }
    let mut active: alias::ActiveModel = alias.into();
    if let Some(note) = update.note {
        active.note = Set(note.map(|n| n.chars().take(10_000).collect()));
    }
    if let Some(name) = update.name {
        active.name = Set(name);
    }
    if let Some(pinned) = update.pinned {
        active.pinned = Set(pinned);
    }
    Ok(active.update(db).await?)
}

/// Puts an alias's address on the deleted list: it can never be created again, by anyone.
async fn tombstone(db: &impl ConnectionTrait, email: &str) -> Result<()> {
    deleted_alias::Entity::insert(deleted_alias::ActiveModel {
        email: Set(email.to_string()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(deleted_alias::Column::Email)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Moves an alias to the trash: it stops forwarding at once (mail to it is recorded as
/// blocked), is listed nowhere, and its address is never given out again. The retention job
/// purges it after `retention.trash_days`.
pub async fn trash_alias(db: &impl ConnectionTrait, alias: alias::Model) -> Result<()> {
    tombstone(db, &alias.email).await?;
    alias::Entity::update_many()
        .col_expr(alias::Column::Enabled, Expr::value(false))
        .col_expr(
            alias::Column::DeletedAt,
            Expr::value(Some(chrono::Utc::now())),
        )
        .filter(alias::Column::Id.eq(alias.id))
        .exec(db)
        .await?;
    crate::cache::invalidate();
    Ok(())
}

/// Deletes an alias and everything of it now; its address stays taken (a tombstone).
pub async fn purge_alias(db: &impl ConnectionTrait, alias: alias::Model) -> Result<()> {
    use postern_entity::{activity, message_id};
    tombstone(db, &alias.email).await?;
    alias_mailbox::Entity::delete_many()
        .filter(alias_mailbox::Column::AliasId.eq(alias.id))
        .exec(db)
        .await?;
    contact::Entity::delete_many()
        .filter(contact::Column::AliasId.eq(alias.id))
        .exec(db)
        .await?;
    activity::Entity::delete_many()
        .filter(activity::Column::AliasId.eq(alias.id))
        .exec(db)
        .await?;
    message_id::Entity::delete_many()
        .filter(message_id::Column::AliasId.eq(alias.id))
        .exec(db)
        .await?;
    alias::Entity::delete_by_id(alias.id).exec(db).await?;
    Ok(())
}

/// One of the user's contacts by id; another user's is `None`, like a missing one.
pub async fn user_contact(
    db: &impl ConnectionTrait,
    user_id: i64,
    contact_id: i64,
) -> Result<Option<contact::Model>> {
    Ok(contact::Entity::find_by_id(contact_id)
        .filter(contact::Column::UserId.eq(user_id))
        .one(db)
        .await?)
}

pub async fn toggle_contact_block(
    db: &impl ConnectionTrait,
    c: contact::Model,
) -> Result<contact::Model> {
    let blocked = !c.blocked;
    let mut active: contact::ActiveModel = c.into();
    active.blocked = Set(blocked);
    Ok(active.update(db).await?)
}

pub async fn delete_contact(db: &impl ConnectionTrait, c: contact::Model) -> Result<()> {
    contact::Entity::delete_by_id(c.id).exec(db).await?;
    Ok(())
}

pub async fn find_alias(db: &impl ConnectionTrait, email: &str) -> Result<Option<alias::Model>> {
    Ok(alias::Entity::find()
        .filter(alias::Column::Email.eq(email.to_lowercase()))
        .one(db)
        .await?)
}

pub async fn list_aliases(db: &impl ConnectionTrait, user_id: i64) -> Result<Vec<alias::Model>> {
    Ok(alias::Entity::find()
        .filter(alias::Column::UserId.eq(user_id))
        .filter(alias::Column::DeletedAt.is_null())
        .order_by_asc(alias::Column::Id)
        .all(db)
        .await?)
}

pub async fn set_alias_enabled(
    db: &impl ConnectionTrait,
    email: &str,
    enabled: bool,
) -> Result<alias::Model> {
    let alias = find_alias(db, email)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("alias {email}")))?;
    let mut active: alias::ActiveModel = alias.into();
    active.enabled = Set(enabled);
    Ok(active.update(db).await?)
}

/// The mailboxes an alias forwards to.
pub async fn alias_mailboxes(
    db: &impl ConnectionTrait,
    alias_id: i64,
) -> Result<Vec<mailbox::Model>> {
    let links = alias_mailbox::Entity::find()
        .filter(alias_mailbox::Column::AliasId.eq(alias_id))
        .all(db)
        .await?;
    let ids: Vec<i64> = links.iter().map(|l| l.mailbox_id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::Id.is_in(ids))
        .order_by_asc(mailbox::Column::Id)
        .all(db)
        .await?)
}

pub async fn find_contact_by_reverse_alias(
    db: &impl ConnectionTrait,
    reply_email: &str,
) -> Result<Option<contact::Model>> {
    Ok(contact::Entity::find()
        .filter(contact::Column::ReplyEmail.eq(reply_email.to_lowercase()))
        .one(db)
        .await?)
}

/// The contact for `email` on `alias`, created with a fresh reverse alias on first use.
pub async fn get_or_create_contact(
    db: &impl ConnectionTrait,
    settings: &Settings,
    key: &HmacKey,
    alias: &alias::Model,
    email: &str,
    name: Option<&str>,
) -> Result<contact::Model> {
    let email = email.to_lowercase();
    if let Some(existing) = find_contact(db, alias.id, &email).await? {
        if name.is_some() && existing.name.as_deref() != name {
            let mut active: contact::ActiveModel = existing.into();
            active.name = Set(name.map(|n| n.chars().take(256).collect()));
            return Ok(active.update(db).await?);
        }
        return Ok(existing);
    }
    let reply_email = reverse_alias_address(key, alias.id, &email, &settings.mail.reply_domain);
    // Another session may create the same contact concurrently: insert-if-absent, then read.
    contact::Entity::insert(contact::ActiveModel {
        user_id: Set(alias.user_id),
        alias_id: Set(alias.id),
        email: Set(email.clone()),
        name: Set(name.map(|n| n.chars().take(256).collect())),
        reply_email: Set(reply_email),
        blocked: Set(false),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([contact::Column::AliasId, contact::Column::Email])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    find_contact(db, alias.id, &email)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("contact {email}")))
}

pub async fn find_contact(
    db: &impl ConnectionTrait,
    alias_id: i64,
    email: &str,
) -> Result<Option<contact::Model>> {
    Ok(contact::Entity::find()
        .filter(contact::Column::AliasId.eq(alias_id))
        .filter(contact::Column::Email.eq(email))
        .one(db)
        .await?)
}

/// `bob_at_ext_test.<20 base32 chars>@reply_domain`: readable in an address book,
/// unguessable (100 bits of an HMAC under a server secret), ASCII only. Derived from the alias
/// and the contact, so concurrent sessions agree on it without a lock.
pub fn reverse_alias_address(
    key: &HmacKey,
    alias_id: i64,
    contact_email: &str,
    reply_domain: &str,
) -> String {
    let contact_email = contact_email.to_lowercase();
    let hint: String = contact_email
        .replace('@', "_at_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    let mac = key.sign(&[
        b"reverse-alias",
        &alias_id.to_be_bytes(),
        contact_email.as_bytes(),
    ]);
    let tag: String = BASE32_NOPAD
        .encode(&mac[..13])
        .to_ascii_lowercase()
        .chars()
        .take(20)
        .collect();
    let hint = hint.trim_matches('_');
    let hint = if hint.is_empty() { "contact" } else { hint };
    format!("{hint}.{tag}@{reply_domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_aliases_are_ascii_keyed_and_distinct_per_alias() {
        let key = HmacKey::from_bytes([7; 32]);
        let a = reverse_alias_address(&key, 1, "Bøb.Smith@ext.test", "reply.test");
        assert_eq!(
            a,
            reverse_alias_address(&key, 1, "bøb.smith@ext.test", "reply.test")
        );
        assert_ne!(
            a,
            reverse_alias_address(&key, 2, "Bøb.Smith@ext.test", "reply.test")
        );
        let other_key = HmacKey::from_bytes([8; 32]);
        assert_ne!(
            a,
            reverse_alias_address(&other_key, 1, "Bøb.Smith@ext.test", "reply.test")
        );
        assert!(a.is_ascii());
        assert!(a.ends_with("@reply.test"));
        let random = a
            .split('@')
            .next()
            .and_then(|l| l.rsplit('.').next())
            .expect("random");
        assert_eq!(random.len(), 20);
        assert!(EmailAddress::parse(&a).is_ok(), "{a}");
    }

    #[test]
    fn site_labels() {
        assert_eq!(site_label("www.github.com").as_deref(), Some("github"));
        assert_eq!(
            site_label("https://shop.example.co.uk/path").as_deref(),
            Some("example")
        );
        assert_eq!(site_label("localhost:8080").as_deref(), Some("localhost"));
        assert_eq!(site_label("...").as_deref(), None);
        assert_eq!(site_label("bad!chars$.com").as_deref(), Some("badchars"));
        let mut rng = rand::rng();
        let u = uuid_v4(&mut rng);
        assert_eq!((u.len(), &u[14..15]), (36, "4"));
    }

    #[test]
    fn api_key_hash_is_stable_and_not_the_key() {
        assert_eq!(hash_api_key("k"), hash_api_key("k"));
        assert_ne!(hash_api_key("k"), "k");
        assert_eq!(hash_api_key("k").len(), 64);
    }
}
