//! Accounts: passwords (argon2id), sign-up with email confirmation, login with optional TOTP,
//! password reset, sudo, and account deletion.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use data_encoding::{BASE32_NOPAD, HEXLOWER};
use hmac::{Hmac, Mac};
use postern_config::Settings;
use postern_entity::{account_token, alias, api_key, mailbox, user};
use rand::{Rng, RngCore};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::address::EmailAddress;
use crate::secrets::HmacKey;
use crate::{DomainError, Result, accounts};

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 100;
/// How long a signed-in-but-not-yet-MFA'd login may finish with its code.
const MFA_KEY_SECS: i64 = 300;
/// How long a sudo confirmation lasts.
pub const SUDO_SECS: i64 = 300;

pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| DomainError::Crypto(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| DomainError::Crypto(e.to_string()))?
        .to_string())
}

/// Constant-time check; a missing hash still costs one verification, so timing does not tell
/// whether an account exists.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J6jKcDpQqKj1I8g1kOdkvKHnqgLvN/I1v4Yhh1aQH0w";
    let parsed = PasswordHash::new(hash.unwrap_or(DUMMY)).or_else(|_| PasswordHash::new(DUMMY));
    match parsed {
        Ok(parsed) => {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
                && hash.is_some()
        }
        Err(_) => false,
    }
}

pub fn check_password_rules(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(DomainError::Invalid("password too short".into()));
    }
    if n > MAX_PASSWORD {
        return Err(DomainError::Invalid("password too long".into()));
    }
    Ok(())
}

fn sha256_hex(s: &str) -> String {
    HEXLOWER.encode(&Sha256::digest(s.as_bytes()))
}

/// A one-time email secret: the long token (for a link) and, for activation, a 6-digit code.
pub struct IssuedToken {
    pub token: String,
    pub code: Option<String>,
}

/// Replaces any earlier token of the same purpose.
pub async fn issue_token(
    db: &impl ConnectionTrait,
    user_id: i64,
    purpose: &str,
    with_code: bool,
    ttl: chrono::Duration,
) -> Result<IssuedToken> {
    account_token::Entity::delete_many()
        .filter(account_token::Column::UserId.eq(user_id))
        .filter(account_token::Column::Purpose.eq(purpose))
        .exec(db)
        .await?;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let token = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
    let code = with_code.then(|| format!("{:06}", rand::rng().random_range(0..1_000_000)));
    let now = chrono::Utc::now();
    account_token::ActiveModel {
        user_id: Set(user_id),
        purpose: Set(purpose.to_string()),
        token_hash: Set(sha256_hex(&token)),
        code_hash: Set(code
            .as_deref()
            .map(|c| sha256_hex(&format!("{user_id}:{c}")))),
        tries: Set(0),
        expires_at: Set(now + ttl),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(IssuedToken { token, code })
}

/// Consumes a token given by its link secret; returns its user.
pub async fn redeem_token(
    db: &impl ConnectionTrait,
    purpose: &str,
    token: &str,
) -> Result<Option<i64>> {
    let Some(row) = account_token::Entity::find()
        .filter(account_token::Column::TokenHash.eq(sha256_hex(token.trim())))
        .filter(account_token::Column::Purpose.eq(purpose))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    account_token::Entity::delete_by_id(row.id).exec(db).await?;
    Ok((row.expires_at > chrono::Utc::now()).then_some(row.user_id))
}

/// Consumes a token whose purpose starts with `prefix`; returns its user and full purpose.
pub async fn redeem_token_with_purpose(
    db: &impl ConnectionTrait,
    prefix: &str,
    token: &str,
) -> Result<Option<(i64, String)>> {
    let Some(row) = account_token::Entity::find()
        .filter(account_token::Column::TokenHash.eq(sha256_hex(token.trim())))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if !row.purpose.starts_with(prefix) {
        return Ok(None);
    }
    account_token::Entity::delete_by_id(row.id).exec(db).await?;
    Ok((row.expires_at > chrono::Utc::now()).then_some((row.user_id, row.purpose)))
}

/// What a typed code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted,
    Wrong,
    /// Too many wrong codes: the token is gone.
    Exhausted,
}

/// Checks a 6-digit code; three wrong ones burn the token.
pub async fn redeem_code(
    db: &impl ConnectionTrait,
    user_id: i64,
    purpose: &str,
    code: &str,
) -> Result<CodeCheck> {
    let Some(row) = account_token::Entity::find()
        .filter(account_token::Column::UserId.eq(user_id))
        .filter(account_token::Column::Purpose.eq(purpose))
        .one(db)
        .await?
    else {
        return Ok(CodeCheck::Wrong);
    };
    let given = sha256_hex(&format!("{user_id}:{}", code.trim()));
    let expected = row.code_hash.clone().unwrap_or_default();
    let ok = row.expires_at > chrono::Utc::now()
        && given.len() == expected.len()
        && bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    if ok {
        account_token::Entity::delete_by_id(row.id).exec(db).await?;
        return Ok(CodeCheck::Accepted);
    }
    if row.tries + 1 >= 3 {
        account_token::Entity::delete_by_id(row.id).exec(db).await?;
        return Ok(CodeCheck::Exhausted);
    }
    let tries = row.tries + 1;
    let mut active: account_token::ActiveModel = row.into();
    active.tries = Set(tries);
    active.update(db).await?;
    Ok(CodeCheck::Wrong)
}

/// Creates a not-yet-activated user with an unverified default mailbox. The password is
/// hashed by the caller, outside the transaction ([`crate::Context::hash_password`]).
pub async fn register(
    db: &impl ConnectionTrait,
    settings: &Settings,
    email: &EmailAddress,
    password_hash: String,
) -> Result<user::Model> {
    if accounts::is_our_domain(settings, email.domain()) {
        return Err(DomainError::Invalid(format!(
            "cannot use {email} as personal inbox"
        )));
    }
    let created = accounts::create_user(db, email).await?;
    let mut active: user::ActiveModel = created.user.into();
    active.password_hash = Set(Some(password_hash));
    active.activated = Set(false);
    let user = active.update(db).await?;
    let mut mb: mailbox::ActiveModel = created.mailbox.into();
    mb.verified = Set(false);
    mb.update(db).await?;
    // The key `create_user` made for the CLI is not for self-registered users.
    api_key::Entity::delete_many()
        .filter(api_key::Column::UserId.eq(user.id))
        .exec(db)
        .await?;
    Ok(user)
}

/// Marks the user activated and its default mailbox verified.
pub async fn activate(db: &impl ConnectionTrait, user_id: i64) -> Result<()> {
    let Some(u) = user::Entity::find_by_id(user_id).one(db).await? else {
        return Err(DomainError::NotFound("user".into()));
    };
    if let Some(mb_id) = u.default_mailbox_id
        && let Some(mb) = mailbox::Entity::find_by_id(mb_id).one(db).await?
    {
        let mut mb: mailbox::ActiveModel = mb.into();
        mb.verified = Set(true);
        mb.update(db).await?;
    }
    let mut active: user::ActiveModel = u.into();
    active.activated = Set(true);
    active.update(db).await?;
    Ok(())
}

/// Stores a new password hash and ends every way in that the old password opened: every
/// session but `keep_session` and every API key but `keep_key` (the caller's own).
pub async fn set_password(
    db: &impl ConnectionTrait,
    u: user::Model,
    password_hash: String,
    keep_session: Option<i64>,
    keep_key: Option<i64>,
) -> Result<user::Model> {
    use postern_entity::session;
    let user_id = u.id;
    let mut active: user::ActiveModel = u.into();
    active.password_hash = Set(Some(password_hash));
    let user = active.update(db).await?;
    let mut sessions = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(id) = keep_session {
        sessions = sessions.filter(session::Column::Id.ne(id));
    }
    sessions.exec(db).await?;
    let mut keys = api_key::Entity::delete_many().filter(api_key::Column::UserId.eq(user_id));
    if let Some(id) = keep_key {
        keys = keys.filter(api_key::Column::Id.ne(id));
    }
    keys.exec(db).await?;
    Ok(user)
}

/// A fresh API key for a device, replacing that device's earlier key (keys are stored hashed,
/// so an old one cannot be handed out again).
pub async fn key_for_device(
    db: &impl ConnectionTrait,
    user_id: i64,
    device: &str,
) -> Result<String> {
    let device: String = device
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let device = if device.trim().is_empty() {
        "device".to_string()
    } else {
        device
    };
    api_key::Entity::delete_many()
        .filter(api_key::Column::UserId.eq(user_id))
        .filter(api_key::Column::Name.eq(device.as_str()))
        .exec(db)
        .await?;
    accounts::create_api_key(db, user_id, &device).await
}

/// `<user id>.<unix time>.<mac>`: proves the password step of a two-factor login.
pub fn mfa_key(key: &HmacKey, user_id: i64, now: i64) -> String {
    let payload = format!("{user_id}.{now}");
    let mac = key.sign(&[b"mfa-key", payload.as_bytes()]);
    format!(
        "{payload}.{}",
        BASE32_NOPAD.encode(&mac[..20]).to_ascii_lowercase()
    )
}

pub fn verify_mfa_key(key: &HmacKey, mfa_key: &str, now: i64) -> Option<i64> {
    let (payload, given) = mfa_key.trim().rsplit_once('.')?;
    let mac = key.sign(&[b"mfa-key", payload.as_bytes()]);
    let expected = BASE32_NOPAD.encode(&mac[..20]).to_ascii_lowercase();
    if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return None;
    }
    let (user_id, at) = payload.split_once('.')?;
    let at: i64 = at.parse().ok()?;
    if now - at > MFA_KEY_SECS || at - now > 60 {
        return None;
    }
    user_id.parse().ok()
}

/// A new random TOTP secret (base32, 160 bits).
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    BASE32_NOPAD.encode(&bytes)
}

/// RFC 6238 TOTP (SHA-1, 30 s, 6 digits) for time step `step`.
pub fn totp_at(secret: &str, step: i64) -> Option<String> {
    let key = BASE32_NOPAD
        .decode(secret.trim().to_ascii_uppercase().as_bytes())
        .ok()?;
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(&key).ok()?;
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some(format!("{:06}", bin % 1_000_000))
}

/// The time step (30 s) within one step of `now` whose code is `code`, if any.
pub fn totp_step(secret: &str, code: &str, now: i64) -> Option<i64> {
    let current = now.div_euclid(30);
    let code = code.trim();
    (current - 1..=current + 1).find(|&step| {
        totp_at(secret, step).is_some_and(|expected| {
            expected.len() == code.len() && bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        })
    })
}

/// Accepts a code of the user's TOTP secret within one step of now, once. Remembering the
/// step is one conditional UPDATE, so two requests racing with the same code cannot both pass.
pub async fn check_totp(
    db: &impl ConnectionTrait,
    u: &user::Model,
    code: &str,
    now: i64,
) -> Result<bool> {
    use sea_orm::Condition;
    use sea_orm::sea_query::Expr;
    let Some(secret) = u.totp_secret.as_deref() else {
        return Ok(false);
    };
    let Some(step) = totp_step(secret, code, now) else {
        return Ok(false);
    };
    let claimed = user::Entity::update_many()
        .col_expr(user::Column::TotpLastStep, Expr::value(step))
        .filter(user::Column::Id.eq(u.id))
        .filter(user::Column::TotpSecret.eq(secret))
        .filter(
            Condition::any()
                .add(user::Column::TotpLastStep.is_null())
                .add(user::Column::TotpLastStep.lt(step)),
        )
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Starts MFA setup: a new server-generated secret waits for a code from the app. Returns it
/// for the QR code; nothing else changes until [`confirm_totp`].
pub async fn begin_totp(db: &impl ConnectionTrait, u: user::Model) -> Result<String> {
    let secret = new_totp_secret();
    let mut active: user::ActiveModel = u.into();
    active.totp_pending = Set(Some(secret.clone()));
    active.update(db).await?;
    Ok(secret)
}

/// Turns MFA on with the pending secret when `code` is one of its codes; `false` (and no
/// change at all) otherwise.
pub async fn confirm_totp(
    db: &impl ConnectionTrait,
    u: &user::Model,
    code: &str,
    now: i64,
) -> Result<bool> {
    use sea_orm::sea_query::Expr;
    let Some(pending) = u.totp_pending.as_deref() else {
        return Ok(false);
    };
    let Some(step) = totp_step(pending, code, now) else {
        return Ok(false);
    };
    let done = user::Entity::update_many()
        .col_expr(user::Column::TotpSecret, Expr::value(pending))
        .col_expr(
            user::Column::TotpPending,
            Expr::value(Option::<String>::None),
        )
        .col_expr(user::Column::TotpLastStep, Expr::value(step))
        .filter(user::Column::Id.eq(u.id))
        .filter(user::Column::TotpPending.eq(pending))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Turns MFA off.
pub async fn disable_totp(db: &impl ConnectionTrait, u: user::Model) -> Result<user::Model> {
    let mut active: user::ActiveModel = u.into();
    active.totp_secret = Set(None);
    active.totp_pending = Set(None);
    active.totp_last_step = Set(None);
    Ok(active.update(db).await?)
}

/// Marks the calling key as recently confirmed with the password.
pub async fn grant_sudo(db: &impl ConnectionTrait, key: api_key::Model) -> Result<()> {
    let mut active: api_key::ActiveModel = key.into();
    active.sudo_at = Set(Some(chrono::Utc::now()));
    active.update(db).await?;
    Ok(())
}

/// The one sudo rule: the password, or a TOTP code, was proven at `proven_at`, within the
/// last [`SUDO_SECS`]. A key gets it from `PATCH /api/sudo`; a session from a login with the
/// password (or its MFA step) or from `PATCH /api/sudo`, never from exchanging a token.
pub fn sudo_fresh(proven_at: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    proven_at.is_some_and(|at| {
        let age = (chrono::Utc::now() - at).num_seconds();
        (0..=SUDO_SECS).contains(&age)
    })
}

/// Marks a browser session as recently confirmed with the password.
pub async fn grant_session_sudo(db: &impl ConnectionTrait, session_id: i64) -> Result<()> {
    use postern_entity::session;
    use sea_orm::sea_query::Expr;
    session::Entity::update_many()
        .col_expr(
            session::Column::SudoAt,
            Expr::value(Some(chrono::Utc::now())),
        )
        .filter(session::Column::Id.eq(session_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the account and everything it owns; its alias addresses are never reused.
pub async fn delete_account(db: &impl ConnectionTrait, user_id: i64) -> Result<()> {
    use postern_entity::{activity, contact};
    for a in alias::Entity::find()
        .filter(alias::Column::UserId.eq(user_id))
        .all(db)
        .await?
    {
        accounts::purge_alias(db, a).await?;
    }
    contact::Entity::delete_many()
        .filter(contact::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    activity::Entity::delete_many()
        .filter(activity::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    postern_entity::authorized_address::Entity::delete_many()
        .filter(postern_entity::authorized_address::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    // What Postern kept about their mail: notifications, bounces with the refused messages,
    // held messages (the stored messages go with the next retention pass).
    postern_entity::notification::Entity::delete_many()
        .filter(postern_entity::notification::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    postern_entity::bounce::Entity::delete_many()
        .filter(postern_entity::bounce::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    postern_entity::quarantine::Entity::delete_many()
        .filter(postern_entity::quarantine::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    mailbox::Entity::delete_many()
        .filter(mailbox::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    api_key::Entity::delete_many()
        .filter(api_key::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    account_token::Entity::delete_many()
        .filter(account_token::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    postern_entity::session::Entity::delete_many()
        .filter(postern_entity::session::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    user::Entity::delete_by_id(user_id).exec(db).await?;
    Ok(())
}

/// The API key row for a presented key, without counting a use.
pub async fn api_key_row(db: &impl ConnectionTrait, key: &str) -> Result<Option<api_key::Model>> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(accounts::hash_api_key(key.trim())))
        .one(db)
        .await?)
}

pub async fn list_api_keys(db: &impl ConnectionTrait, user_id: i64) -> Result<Vec<api_key::Model>> {
    use sea_orm::QueryOrder;
    Ok(api_key::Entity::find()
        .filter(api_key::Column::UserId.eq(user_id))
        .order_by_asc(api_key::Column::Id)
        .all(db)
        .await?)
}

/// Revokes one of the user's keys; `false` when there is no such key of theirs.
pub async fn revoke_api_key(db: &impl ConnectionTrait, user_id: i64, key_id: i64) -> Result<bool> {
    let result = api_key::Entity::delete_many()
        .filter(api_key::Column::Id.eq(key_id))
        .filter(api_key::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// How long a browser session lasts.
pub const SESSION_DAYS: i64 = 30;

/// How a browser session was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOrigin {
    /// By proving the password (and TOTP code) just now: starts with sudo.
    Login,
    /// By exchanging a token: an ordinary session.
    Exchange,
}

/// A new browser session: `(cookie token, CSRF token)`.
pub async fn create_session(
    db: &impl ConnectionTrait,
    user_id: i64,
    origin: SessionOrigin,
) -> Result<(String, String)> {
    use postern_entity::session;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
    rand::rng().fill_bytes(&mut bytes);
    let csrf = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
    let now = chrono::Utc::now();
    session::ActiveModel {
        token_hash: Set(sha256_hex(&token)),
        user_id: Set(user_id),
        csrf_token: Set(csrf.clone()),
        expires_at: Set(now + chrono::Duration::days(SESSION_DAYS)),
        created_at: Set(now),
        sudo_at: Set((origin == SessionOrigin::Login).then_some(now)),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((token, csrf))
}

/// The live session of a cookie token.
pub async fn find_session(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<postern_entity::session::Model>> {
    use postern_entity::session;
    Ok(session::Entity::find()
        .filter(session::Column::TokenHash.eq(sha256_hex(token.trim())))
        .filter(session::Column::ExpiresAt.gt(chrono::Utc::now()))
        .one(db)
        .await?)
}

pub async fn end_session(db: &impl ConnectionTrait, id: i64) -> Result<()> {
    postern_entity::session::Entity::delete_by_id(id)
        .exec(db)
        .await?;
    Ok(())
}

/// Constant-time comparison of a presented CSRF token with the session's.
pub fn csrf_matches(session: &postern_entity::session::Model, presented: &str) -> bool {
    presented.len() == session.csrf_token.len()
        && bool::from(presented.as_bytes().ct_eq(session.csrf_token.as_bytes()))
}

/// What sign-in attempts are counted against: [`record_attempt`], [`recent_attempts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptScope {
    /// A wrong password at login or sudo.
    Login,
    /// A wrong TOTP code.
    Mfa,
    /// A password-reset request.
    Reset,
}

impl AttemptScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Mfa => "mfa",
            Self::Reset => "reset",
        }
    }
}

/// Counts one attempt on `subject` (`user:<id>` or `ip:<address>`), in the database so every
/// API instance sees it.
pub async fn record_attempt(
    db: &impl ConnectionTrait,
    scope: AttemptScope,
    subject: &str,
) -> Result<()> {
    use postern_entity::auth_attempt;
    auth_attempt::ActiveModel {
        scope: Set(scope.as_str().to_string()),
        subject: Set(subject.to_string()),
        at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Attempts on `subject` within the last `window`.
pub async fn recent_attempts(
    db: &impl ConnectionTrait,
    scope: AttemptScope,
    subject: &str,
    window: chrono::Duration,
) -> Result<u64> {
    use postern_entity::auth_attempt;
    use sea_orm::PaginatorTrait;
    Ok(auth_attempt::Entity::find()
        .filter(auth_attempt::Column::Scope.eq(scope.as_str()))
        .filter(auth_attempt::Column::Subject.eq(subject))
        .filter(auth_attempt::Column::At.gt(chrono::Utc::now() - window))
        .count(db)
        .await?)
}

/// Forgets attempts older than `age`; returns how many.
pub async fn purge_attempts(db: &impl ConnectionTrait, age: chrono::Duration) -> Result<u64> {
    use postern_entity::auth_attempt;
    Ok(auth_attempt::Entity::delete_many()
        .filter(auth_attempt::Column::At.lt(chrono::Utc::now() - age))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(&h), "correct horse"));
        assert!(!verify_password(Some(&h), "wrong horse"));
        assert!(!verify_password(None, "anything"));
        assert!(check_password_rules("short").is_err());
        assert!(check_password_rules(&"x".repeat(101)).is_err());
    }

    #[test]
    fn totp_matches_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 s → 94287082.
        let secret = BASE32_NOPAD.encode(b"12345678901234567890");
        assert_eq!(totp_at(&secret, 59 / 30).as_deref(), Some("287082"));
        assert_eq!(
            totp_at(&secret, 1_111_111_109 / 30).as_deref(),
            Some("081804")
        );
    }

    #[test]
    fn mfa_keys_expire_and_resist_forgery() {
        let key = HmacKey::from_bytes([9; 32]);
        let k = mfa_key(&key, 42, 1000);
        assert_eq!(verify_mfa_key(&key, &k, 1100), Some(42));
        assert_eq!(verify_mfa_key(&key, &k, 1400), None);
        assert_eq!(verify_mfa_key(&key, &k.replacen("42", "43", 1), 1100), None);
    }
}
