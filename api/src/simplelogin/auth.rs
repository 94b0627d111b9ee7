//! Account endpoints: sign-up and activation, login with optional TOTP, password reset,
//! sudo, API keys, logout and account deletion.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use postern_domain::auth::{self, AttemptScope, CodeCheck, SessionOrigin};
use postern_domain::{DomainError, EmailAddress, accounts};
use postern_entity::user;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiUser, Caller, Credential};
use crate::limit::{ClientIp, MINUTE};

/// Sign-in attempts on `subject` (`user:<id>`, `ip:<addr>`) are counted in the database, so the
/// limit holds across API instances: `429` once `limit` fall within a minute.
async fn attempts_left(
    state: &AppState,
    scope: AttemptScope,
    subject: &str,
    limit: u32,
) -> Result<(), ApiError> {
    let recent =
        auth::recent_attempts(state.ctx.db(), scope, subject, chrono::Duration::minutes(1)).await?;
    if recent >= u64::from(limit) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts; wait a minute and try again",
        ));
    }
    Ok(())
}

async fn count_attempt(
    state: &AppState,
    scope: AttemptScope,
    subjects: &[&str],
) -> Result<(), ApiError> {
    for subject in subjects {
        auth::record_attempt(state.ctx.db(), scope, subject).await?;
    }
    Ok(())
}

/// A small HTML page for the links in emails.
fn page(status: StatusCode, body: &str) -> (StatusCode, Html<String>) {
    (
        status,
        Html(format!(
            "<!doctype html><meta charset=utf-8><title>Postern</title>{body}"
        )),
    )
}

/// The page a link in an email opens: it changes nothing by itself (mail scanners follow
/// links), it asks the person to confirm with a POST to `action`.
pub(crate) fn confirm_page(
    action: &str,
    token: Option<&str>,
    what: &str,
) -> (StatusCode, Html<String>) {
    let Some(token) = token.filter(|t| is_token(t)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "<p>This link is invalid or has expired.</p>",
        );
    };
    page(
        StatusCode::OK,
        &format!(
            "<form method=post action=\"{action}\"><input type=hidden name=token value=\"{token}\">\
             <p>{what}</p><button type=submit>Confirm</button></form>"
        ),
    )
}

/// Link tokens are lowercase base32; anything else is not one of ours.
fn is_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `token` from an `application/x-www-form-urlencoded` body.
pub(crate) fn form_token(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.trim().to_string())
        .filter(|t| is_token(t))
}

fn text(body: &Map<String, Value>, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_string)
}

async fn commit(txn: sea_orm::DatabaseTransaction) -> Result<(), ApiError> {
    txn.commit().await.map_err(DomainError::from)?;
    Ok(())
}

async fn send_activation(state: &AppState, user: &user::Model) -> Result<(), ApiError> {
    let txn = postern_domain::db::begin_write(state.ctx.db()).await?;
    let issued =
        auth::issue_token(&txn, user.id, "activate", true, chrono::Duration::days(1)).await?;
    commit(txn).await?;
    let link = format!(
        "{}/auth/activate?token={}",
        state.ctx.settings().http.public_url,
        issued.token
    );
    let code = issued.code.unwrap_or_default();
    let body = format!(
        "Welcome to Postern.\n\nConfirm your address by opening this link:\n{link}\n\n\
         or by entering this code in your app: {code}\n\nThe link and the code work for one day."
    );
    state
        .ctx
        .send_notice(user.id, &user.email, "Confirm your Postern account", &body)
        .await?;
    Ok(())
}

/// `POST /api/auth/register` `{email, password}`.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = "auth",
    summary = "Sign up; a confirmation code and link are emailed",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    limit_signup(&state, &ip)?;
    let body = super::json_object(&body)?;
    registration_open(&state)?;
    let (Some(email), Some(password)) = (text(&body, "email"), text(&body, "password")) else {
        return Err(ApiError::bad_request("request body cannot be empty"));
    };
    sign_up(&state, &email, &password).await?;
    Ok(Json(json!({"msg": "User needs to confirm their account"})))
}

/// Counts a sign-up from `ip` (before anything else is read, so a flood is cheap to refuse).
pub(crate) fn limit_signup(state: &AppState, ip: &str) -> Result<(), ApiError> {
    let limit = state.ctx.settings().limits.signup_per_minute;
    state.limit(&format!("signup:{ip}"), limit, MINUTE)
}

pub(crate) fn registration_open(state: &AppState) -> Result<(), ApiError> {
    if state.ctx.settings().accounts.registration {
        Ok(())
    } else {
        Err(ApiError::bad_request("registration is closed"))
    }
}

/// A sign-up, for the API and the web page alike, once [`limit_signup`] and
/// [`registration_open`] passed. A taken address gets the same answer as a new sign-up, so
/// addresses cannot be probed; the email sent to the address says what happened.
pub(crate) async fn sign_up(state: &AppState, email: &str, password: &str) -> Result<(), ApiError> {
    let settings = state.ctx.settings();
    auth::check_password_rules(password)?;
    let email = EmailAddress::parse(email)
        .map_err(|_| ApiError::bad_request(format!("cannot use {email} as personal inbox")))?;
    let db = state.ctx.db();
    let taken = match accounts::find_user(db, email.as_str()).await? {
        Some(existing) if existing.activated => Some((
            existing.id,
            "Someone tried to create a Postern account with this address, which already has \
             one. If it was you, log in, or reset your password if you forgot it."
                .to_string(),
        )),
        Some(existing) => Some((
            existing.id,
            format!(
                "Someone tried to create a Postern account with this address. An account was \
                 already started with it but never confirmed: use the confirmation email sent \
                 then, or wait until it expires ({} days after it was started) and sign up again.",
                settings.accounts.unverified_lifetime.as_secs() / 86_400
            ),
        )),
        None => accounts::find_verified_mailbox(db, email.as_str())
            .await?
            .map(|m| {
                (
                    m.user_id,
                    "Someone tried to create a Postern account with this address, which is \
                     already the mailbox of a Postern account. If it was you, log in to that \
                     account. Nothing was changed."
                        .to_string(),
                )
            }),
    };
    if let Some((owner, text)) = taken {
        // The same work as a sign-up, so the time taken does not tell either.
        state.ctx.hash_password(password).await?;
        state
            .ctx
            .send_notice(owner, email.as_str(), "Sign-up attempt", &text)
            .await?;
        return Ok(());
    }
    let hash = state.ctx.hash_password(password).await?;
    let txn = postern_domain::db::begin_write(db).await?;
    let user = auth::register(&txn, settings, &email, hash).await?;
    commit(txn).await?;
    send_activation(state, &user).await
}

/// `POST /api/auth/activate` `{email, code}`.
#[utoipa::path(
    post,
    path = "/api/auth/activate",
    tag = "auth",
    summary = "Confirm a sign-up with the emailed code",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn activate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    state.per_minute(&format!("activate:{ip}"), |l| l.login_per_minute)?;
    let body = super::json_object(&body)?;
    let wrong = || ApiError::bad_request("Wrong email or code");
    let (Some(email), Some(code)) = (text(&body, "email"), text(&body, "code")) else {
        return Err(wrong());
    };
    let db = state.ctx.db();
    let Some(user) = accounts::find_user(db, &email).await? else {
        return Err(wrong());
    };
    if user.activated {
        return Err(wrong());
    }
    let txn = postern_domain::db::begin_write(db).await?;
    let check = auth::redeem_code(&txn, user.id, "activate", &code).await?;
    if check == CodeCheck::Accepted {
        auth::activate(&txn, user.id).await?;
    }
    commit(txn).await?;
    match check {
        CodeCheck::Accepted => Ok(Json(
            json!({"msg": "Account is activated, user can login now"}),
        )),
        CodeCheck::Wrong => Err(wrong()),
        CodeCheck::Exhausted => Err(ApiError::new(StatusCode::GONE, "Too many wrong tries")),
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /auth/activate?token=…`: the link in the confirmation email opens a page that
/// confirms with a POST.
#[utoipa::path(
    get,
    path = "/auth/activate",
    tag = "auth",
    summary = "The page of the emailed confirmation link (confirms with a POST)",
    params(("token" = String, Query, description = "From the email")),
    responses((status = 200, description = "A page with a confirm button"), (status = 400, description = "Not a valid link")),
)]
pub async fn activate_link(Query(q): Query<TokenQuery>) -> (StatusCode, Html<String>) {
    confirm_page(
        "/auth/activate",
        q.token.as_deref(),
        "Confirm your Postern account.",
    )
}

/// `POST /auth/activate` (form `token=…`): confirms a sign-up from the emailed link.
#[utoipa::path(
    post,
    path = "/auth/activate",
    tag = "auth",
    summary = "Confirm a sign-up with the emailed link",
    responses((status = 200, description = "Confirmed"), (status = 400, description = "Invalid or expired link")),
)]
pub async fn activate_confirm(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Html<String>), ApiError> {
    let db = state.ctx.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let user = match form_token(&body) {
        Some(token) => auth::redeem_token(&txn, "activate", &token).await?,
        None => None,
    };
    let outcome = match user {
        Some(user_id) => Some(auth::activate(&txn, user_id).await),
        None => None,
    };
    match outcome {
        Some(Ok(())) => {
            commit(txn).await?;
            Ok(page(
                StatusCode::OK,
                "<p>Your account is confirmed. You can log in now.</p>",
            ))
        }
        Some(Err(DomainError::Conflict(_))) => Ok(page(
            StatusCode::CONFLICT,
            "<p>This address became the mailbox of another Postern account before it was \
             confirmed here. Log in to that account instead.</p>",
        )),
        Some(Err(e)) => Err(e.into()),
        None => Ok(page(
            StatusCode::BAD_REQUEST,
            "<p>This link is invalid or has expired. Ask for a new one.</p>",
        )),
    }
}

/// `POST /api/auth/reactivate` `{email}`: sends a new confirmation.
#[utoipa::path(
    post,
    path = "/api/auth/reactivate",
    tag = "auth",
    summary = "Send a new confirmation",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn reactivate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    state.per_minute(&format!("signup:{ip}"), |l| l.signup_per_minute)?;
    let body = super::json_object(&body)?;
    let email = text(&body, "email").unwrap_or_default();
    // One answer whatever the address is (unknown, active, disabled, waiting), so it cannot
    // be probed; only an account waiting for confirmation gets an email.
    if let Some(user) = accounts::find_user(state.ctx.db(), &email).await?
        && !user.activated
        && !user.disabled
    {
        send_activation(&state, &user).await?;
    }
    Ok(Json(json!({"msg": "User needs to confirm their account"})))
}

/// `Set-Cookie` for a new browser session.
pub(crate) async fn session_cookie(
    state: &AppState,
    user_id: i64,
    origin: SessionOrigin,
) -> Result<HeaderMap, ApiError> {
    let (token, _csrf) = auth::create_session(state.ctx.db(), user_id, origin).await?;
    let secure = if state.ctx.settings().http.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        crate::extract::SESSION_COOKIE,
        auth::SESSION_DAYS * 86_400
    );
    let mut headers = HeaderMap::new();
    if let Ok(value) = cookie.parse() {
        headers.insert(axum::http::header::SET_COOKIE, value);
    }
    Ok(headers)
}

fn login_answer(
    user: &user::Model,
    api_key: Option<String>,
    mfa_key: Option<String>,
) -> Json<Value> {
    Json(json!({
        "name": user.name.clone().unwrap_or_default(),
        "email": user.email,
        "mfa_enabled": mfa_key.is_some(),
        "mfa_key": mfa_key,
        "api_key": api_key,
    }))
}

/// `POST /api/auth/login` `{email, password, device}`.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    summary = "Log in; returns an API key, or an mfa_key when TOTP is on",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<(HeaderMap, Json<Value>), ApiError> {
    limit_login(&state, &ip)?;
    let body = super::json_object(&body)?;
    let (Some(email), Some(password)) = (text(&body, "email"), text(&body, "password")) else {
        return Err(ApiError::bad_request("request body cannot be empty"));
    };
    let device = text(&body, "device").unwrap_or_else(|| "device".into());
    match check_login(&state, &ip, &email, &password).await? {
        LoginStep::NeedsCode(user) => {
            let key = auth::mfa_key(&state.mfa_key, user.id, chrono::Utc::now().timestamp());
            Ok((HeaderMap::new(), login_answer(&user, None, Some(key))))
        }
        LoginStep::Done(user) => {
            let key = auth::key_for_device(state.ctx.db(), user.id, &device).await?;
            Ok((
                session_cookie(&state, user.id, SessionOrigin::Login).await?,
                login_answer(&user, Some(key), None),
            ))
        }
    }
}

/// Where a correct password leads.
pub(crate) enum LoginStep {
    /// Logged in.
    Done(user::Model),
    /// TOTP is on: a code from the authenticator comes next.
    NeedsCode(user::Model),
}

/// Counts a request that proves a password from `ip` (login, sudo, password change).
pub(crate) fn limit_login(state: &AppState, ip: &str) -> Result<(), ApiError> {
    state.per_minute(&format!("login-ip:{ip}"), |l| l.login_per_minute)
}

/// Checks a login's email and password (after [`limit_login`]), counting failures per
/// address and per account.
pub(crate) async fn check_login(
    state: &AppState,
    ip: &str,
    email: &str,
    password: &str,
) -> Result<LoginStep, ApiError> {
    let email = email.trim().to_lowercase();
    let db = state.ctx.db();
    let limit = state.ctx.settings().limits.login_per_minute;
    let ip_subject = format!("ip:{ip}");
    attempts_left(state, AttemptScope::Login, &ip_subject, limit).await?;
    let user = accounts::find_user(db, &email).await?;
    let user_subject = user.as_ref().map(|u| format!("user:{}", u.id));
    if let Some(subject) = &user_subject {
        attempts_left(state, AttemptScope::Login, subject, limit).await?;
    }
    let password_ok = state
        .ctx
        .verify_password(
            user.as_ref().and_then(|u| u.password_hash.as_deref()),
            password,
        )
        .await?;
    let Some(user) = user.filter(|_| password_ok) else {
        let mut subjects = vec![ip_subject.as_str()];
        subjects.extend(user_subject.as_deref());
        count_attempt(state, AttemptScope::Login, &subjects).await?;
        return Err(ApiError::bad_request("Email or password incorrect"));
    };
    if user.disabled {
        return Err(ApiError::bad_request("Account disabled"));
    }
    if !user.activated {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Account not activated",
        ));
    }
    if user.totp_secret.is_some() {
        Ok(LoginStep::NeedsCode(user))
    } else {
        Ok(LoginStep::Done(user))
    }
}

/// `POST /api/auth/mfa` `{mfa_token, mfa_key, device}`.
#[utoipa::path(
    post,
    path = "/api/auth/mfa",
    tag = "auth",
    summary = "Finish a two-factor login with a TOTP code",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn mfa(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<(HeaderMap, Json<Value>), ApiError> {
    limit_login_code(&state, &ip)?;
    let body = super::json_object(&body)?;
    let (Some(token), Some(mfa_key)) = (text(&body, "mfa_token"), text(&body, "mfa_key")) else {
        return Err(ApiError::bad_request("request body cannot be empty"));
    };
    let user = check_login_code(&state, &mfa_key, &token).await?;
    let device = text(&body, "device").unwrap_or_else(|| "device".into());
    let key = auth::key_for_device(state.ctx.db(), user.id, &device).await?;
    Ok((
        session_cookie(&state, user.id, SessionOrigin::Login).await?,
        Json(json!({
            "name": user.name.clone().unwrap_or_default(),
            "email": user.email,
            "api_key": key,
        })),
    ))
}

pub(crate) fn limit_login_code(state: &AppState, ip: &str) -> Result<(), ApiError> {
    state.per_minute(&format!("mfa-ip:{ip}"), |l| l.login_per_minute)
}

/// The second step of a login with TOTP on (after [`limit_login_code`]): `mfa_key` (signed by
/// the first step) and a code.
pub(crate) async fn check_login_code(
    state: &AppState,
    mfa_key: &str,
    code: &str,
) -> Result<user::Model, ApiError> {
    let now = chrono::Utc::now().timestamp();
    let user_id = auth::verify_mfa_key(&state.mfa_key, mfa_key, now)
        .ok_or_else(|| ApiError::bad_request("Invalid mfa_key"))?;
    let subject = format!("user:{user_id}");
    let limit = state.ctx.settings().limits.login_per_minute;
    attempts_left(state, AttemptScope::Mfa, &subject, limit).await?;
    let db = state.ctx.db();
    let Some(user) = accounts::find_user_by_id(db, user_id).await? else {
        return Err(ApiError::bad_request("Invalid mfa_key"));
    };
    if user.totp_secret.is_none() {
        return Err(ApiError::bad_request(
            "This endpoint should only be used by user who enables MFA",
        ));
    }
    if !auth::check_totp(db, &user, code, now).await? {
        count_attempt(state, AttemptScope::Mfa, &[&subject]).await?;
        return Err(ApiError::bad_request("Wrong TOTP Token"));
    }
    Ok(user)
}

/// `POST /api/auth/forgot_password` `{email}`: always `{"ok": true}`.
#[utoipa::path(
    post,
    path = "/api/auth/forgot_password",
    tag = "auth",
    summary = "Email a password-reset link",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn forgot_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    limit_reset_request(&state, &ip)?;
    let body = super::json_object(&body)?;
    let email = text(&body, "email")
        .ok_or_else(|| ApiError::bad_request("request body must contain email"))?;
    send_reset_link(&state, &ip, &email).await?;
    Ok(Json(json!({"ok": true})))
}

pub(crate) fn limit_reset_request(state: &AppState, ip: &str) -> Result<(), ApiError> {
    state.per_minute(&format!("reset:{ip}"), |l| l.reset_per_minute)
}

/// Emails a reset link to the account at `email`, if there is one (after
/// [`limit_reset_request`]): the answer is the same either way.
pub(crate) async fn send_reset_link(
    state: &AppState,
    ip: &str,
    email: &str,
) -> Result<(), ApiError> {
    let db = state.ctx.db();
    let limit = state.ctx.settings().limits.reset_per_minute;
    let ip_subject = format!("ip:{ip}");
    attempts_left(state, AttemptScope::Reset, &ip_subject, limit).await?;
    count_attempt(state, AttemptScope::Reset, &[&ip_subject]).await?;
    let Some(user) = accounts::find_user(db, email)
        .await?
        .filter(|u| !u.disabled)
    else {
        return Ok(());
    };
    // Over the account's limit nothing is sent, with the same answer: the limit must not tell
    // whether the account exists.
    let subject = format!("user:{}", user.id);
    if attempts_left(state, AttemptScope::Reset, &subject, limit)
        .await
        .is_err()
    {
        return Ok(());
    }
    count_attempt(state, AttemptScope::Reset, &[&subject]).await?;
    let txn = postern_domain::db::begin_write(db).await?;
    let issued =
        auth::issue_token(&txn, user.id, "reset", false, chrono::Duration::hours(1)).await?;
    commit(txn).await?;
    let link = format!(
        "{}/auth/reset_password?token={}",
        state.ctx.settings().http.public_url,
        issued.token
    );
    let text = format!(
        "To choose a new password for your Postern account, open this link within an hour:\n{link}\n\n\
         If you did not ask for this, ignore this email: your password stays as it is."
    );
    state
        .ctx
        .send_notice(user.id, &user.email, "Reset your Postern password", &text)
        .await?;
    Ok(())
}

/// `POST /api/auth/reset_password` `{token, password}`: completes a reset. Every session and
/// API key of the account ends, since a reset means the old credentials are not trusted, and
/// the account's address is told.
#[utoipa::path(
    post,
    path = "/api/auth/reset_password",
    tag = "auth",
    summary = "Set a new password with the emailed token; revokes all keys",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn reset_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    limit_reset(&state, &ip)?;
    let body = super::json_object(&body)?;
    let (Some(token), Some(password)) = (text(&body, "token"), text(&body, "password")) else {
        return Err(ApiError::bad_request("request body cannot be empty"));
    };
    complete_reset(&state, &token, &password).await?;
    Ok(Json(json!({"ok": true})))
}

pub(crate) fn limit_reset(state: &AppState, ip: &str) -> Result<(), ApiError> {
    state.per_minute(&format!("reset:{ip}"), |l| l.login_per_minute)
}

/// Sets the new password of a reset link's account (after [`limit_reset`]).
pub(crate) async fn complete_reset(
    state: &AppState,
    token: &str,
    password: &str,
) -> Result<(), ApiError> {
    auth::check_password_rules(password)?;
    let hash = state.ctx.hash_password(password).await?;
    let db = state.ctx.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let Some(user_id) = auth::redeem_token(&txn, "reset", token).await? else {
        return Err(ApiError::bad_request("Invalid or expired link"));
    };
    let user = accounts::find_user_by_id(&txn, user_id)
        .await?
        .ok_or_else(|| ApiError::bad_request("Invalid or expired link"))?;
    let user = auth::set_password(&txn, user, hash, None, None).await?;
    commit(txn).await?;
    tell_password_changed(state, &user).await
}

/// Tells the account's address that its password changed and every other sign-in ended.
async fn tell_password_changed(state: &AppState, user: &user::Model) -> Result<(), ApiError> {
    let text = "The password of your Postern account was changed. Every other browser session \
                was logged out and every other API key revoked.\n\n\
                If you did not do this, reset your password now and check your account's \
                mailboxes.";
    state
        .ctx
        .send_notice(
            user.id,
            &user.email,
            "Your Postern password was changed",
            text,
        )
        .await?;
    Ok(())
}

/// `PATCH /api/sudo` `{password}`, or `{mfa_token}` (a TOTP code) when MFA is on: the
/// calling key or session may make sensitive calls for five minutes.
#[utoipa::path(
    patch,
    path = "/api/sudo",
    tag = "account",
    summary = "Confirm the password for five minutes of sensitive calls",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn sudo(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    limit_login(&state, &ip)?;
    let body = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    grant_sudo(
        &state,
        caller,
        field("password").as_deref(),
        field("mfa_token").as_deref(),
    )
    .await?;
    Ok(Json(json!({"ok": true})))
}

/// Proves the caller is the account's owner again (after [`limit_login`]), and opens the
/// sudo window for the calling key or session. With MFA on, the proof is a code from the
/// authenticator: a password that leaked with a key is not enough to turn MFA off.
pub(crate) async fn grant_sudo(
    state: &AppState,
    caller: Caller,
    password: Option<&str>,
    code: Option<&str>,
) -> Result<(), ApiError> {
    let user = &caller.user;
    let subject = format!("user:{}", user.id);
    let limit = state.ctx.settings().limits.login_per_minute;
    attempts_left(state, AttemptScope::Login, &subject, limit).await?;
    let db = state.ctx.db();
    let proven = if user.totp_secret.is_some() {
        let Some(code) = code else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Two-factor authentication is on: send mfa_token, a code from your authenticator app",
            ));
        };
        auth::check_totp(db, user, code, chrono::Utc::now().timestamp()).await?
    } else {
        state
            .ctx
            .verify_password(user.password_hash.as_deref(), password.unwrap_or_default())
            .await?
    };
    if !proven {
        count_attempt(state, AttemptScope::Login, &[&subject]).await?;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Invalid password"));
    }
    match caller.credential {
        Credential::Key(key) => auth::grant_sudo(db, key).await?,
        Credential::Session(session) => auth::grant_session_sudo(db, session.id).await?,
    }
    Ok(())
}

/// `DELETE /api/user` (sudo): deletes the account and everything it owns.
#[utoipa::path(
    delete,
    path = "/api/user",
    tag = "account",
    summary = "Delete the account (needs sudo)",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    close_account(&state, &caller).await?;
    Ok(Json(json!({"ok": true})))
}

/// Deletes the caller's account and everything it owns (sudo).
pub(crate) async fn close_account(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    caller.require_sudo()?;
    let txn = postern_domain::db::begin_write(state.ctx.db()).await?;
    auth::delete_account(&txn, caller.user.id).await?;
    commit(txn).await
}

/// `POST /api/api_key` `{device}` (sudo) → 201 `{"api_key": …}`, shown once.
#[utoipa::path(
    post,
    path = "/api/api_key",
    tag = "keys",
    summary = "Create an API key (needs sudo); shown once",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_sudo()?;
    let body = super::json_object(&body)?;
    let device = text(&body, "device")
        .ok_or_else(|| ApiError::bad_request("request body cannot be empty"))?;
    let key = accounts::create_api_key(state.ctx.db(), caller.user.id, &device).await?;
    Ok((StatusCode::CREATED, Json(json!({"api_key": key}))))
}

/// `GET /api/api_keys`: the user's keys, never the secrets.
#[utoipa::path(
    get,
    path = "/api/api_keys",
    tag = "keys",
    summary = "List API keys (never the secrets)",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, ApiError> {
    let keys: Vec<Value> = auth::list_api_keys(state.ctx.db(), user.id)
        .await?
        .iter()
        .map(|k| {
            json!({
                "id": k.id,
                "name": k.name,
                "created_at": k.created_at.timestamp(),
                "last_used": k.last_used.map(|t| t.timestamp()),
                "use_count": k.use_count,
            })
        })
        .collect();
    Ok(Json(json!({"api_keys": keys})))
}

/// `DELETE /api/api_keys/:id`.
#[utoipa::path(
    delete,
    path = "/api/api_keys/{id}",
    tag = "keys",
    summary = "Revoke an API key",
    params(("id" = i64, Path, description = "Key id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = super::parse_id(&id)?;
    if auth::revoke_api_key(state.ctx.db(), user.id, id).await? {
        Ok(Json(json!({"deleted": true})))
    } else {
        Err(ApiError::forbidden())
    }
}

/// `GET /api/logout`: the key that made the call stops working; a browser session ends and
/// its cookie is cleared.
#[utoipa::path(
    get,
    path = "/api/logout",
    tag = "auth",
    summary = "Log out: the calling key stops working",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(HeaderMap, Json<Value>), ApiError> {
    let db = state.ctx.db();
    let mut out = HeaderMap::new();
    match caller.credential {
        Credential::Key(row) => {
            auth::revoke_api_key(db, caller.user.id, row.id).await?;
        }
        Credential::Session(session) => {
            auth::end_session(db, session.id).await?;
            out.insert(
                axum::http::header::SET_COOKIE,
                crate::extract::cleared_session_cookie(),
            );
        }
    }
    Ok((out, Json(json!({"msg": "User is logged out"}))))
}

/// `GET /api/csrf`: the CSRF token a cookie session sends in `X-CSRF-Token` with writes.
#[utoipa::path(
    get,
    path = "/api/csrf",
    tag = "auth",
    summary = "The CSRF token of the calling browser session",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
)]
pub async fn csrf(caller: Caller) -> Result<Json<Value>, ApiError> {
    match caller.credential {
        Credential::Session(session) => Ok(Json(json!({"csrf_token": session.csrf_token}))),
        Credential::Key(_) => Err(ApiError::bad_request("No browser session")),
    }
}

#[utoipa::path(
    patch,
    path = "/api/user/password",
    tag = "account",
    summary = "Change the password",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    limit_login(&state, &ip)?;
    let body = super::json_object(&body)?;
    let current = text(&body, "current_password").unwrap_or_default();
    let new = text(&body, "new_password")
        .ok_or_else(|| ApiError::bad_request("new_password is required"))?;
    replace_password(&state, caller, &current, &new).await?;
    Ok(Json(json!({"ok": true})))
}

/// Changes the password given the current one (after [`limit_login`]). Every other session
/// and key ends; the calling one stays.
pub(crate) async fn replace_password(
    state: &AppState,
    caller: Caller,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    let subject = format!("user:{}", caller.user.id);
    let limit = state.ctx.settings().limits.login_per_minute;
    attempts_left(state, AttemptScope::Login, &subject, limit).await?;
    if !state
        .ctx
        .verify_password(caller.user.password_hash.as_deref(), current)
        .await?
    {
        count_attempt(state, AttemptScope::Login, &[&subject]).await?;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Invalid password"));
    }
    auth::check_password_rules(new)?;
    let hash = state.ctx.hash_password(new).await?;
    let (keep_session, keep_key) = (caller.session_id(), caller.key_id());
    let user =
        auth::set_password(state.ctx.db(), caller.user, hash, keep_session, keep_key).await?;
    tell_password_changed(state, &user).await
}

/// `GET /api/user/cookie_token` → `{"token"}`: a one-time token a native app opens as
/// `/auth/api_to_cookie?token=…` to get a browser session (valid one hour).
#[utoipa::path(
    get,
    path = "/api/user/cookie_token",
    tag = "auth",
    summary = "A one-time token that opens a browser session",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn cookie_token(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, ApiError> {
    let issued = auth::issue_token(
        state.ctx.db(),
        user.id,
        "cookie",
        false,
        chrono::Duration::hours(1),
    )
    .await?;
    Ok(Json(json!({"token": issued.token})))
}

/// `GET /auth/api_to_cookie?token=…`: exchanges a cookie token for a session cookie.
#[utoipa::path(
    get,
    path = "/auth/api_to_cookie",
    tag = "auth",
    summary = "Exchange a cookie token for a browser session",
    params(("token" = String, Query, description = "From /api/user/cookie_token")),
    responses((status = 200, description = "Session cookie set"), (status = "4XX", description = "Invalid or used token")),
)]
pub async fn api_to_cookie(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Result<(StatusCode, HeaderMap, Html<&'static str>), ApiError> {
    let db = state.ctx.db();
    let user = match q.token.as_deref() {
        Some(token) => auth::redeem_token(db, "cookie", token).await?,
        None => None,
    };
    match user {
        Some(user_id) => Ok((
            StatusCode::OK,
            session_cookie(&state, user_id, SessionOrigin::Exchange).await?,
            Html("<!doctype html><title>Postern</title><p>You are logged in.</p>"),
        )),
        None => Ok((
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            Html(
                "<!doctype html><title>Postern</title><p>This link is invalid or has expired.</p>",
            ),
        )),
    }
}

/// `POST /api/mfa/setup` (sudo) → a new TOTP secret, generated here, and its `otpauth://`
/// URI for an authenticator app. Nothing changes until `POST /api/mfa/enable` confirms a code
/// of that secret.
#[utoipa::path(
    post,
    path = "/api/mfa/setup",
    tag = "auth",
    summary = "Start turning on two-factor authentication",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn mfa_setup(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (secret, uri) = begin_mfa(&state, caller).await?;
    Ok(Json(json!({"secret": secret, "otpauth_uri": uri})))
}

/// A new pending TOTP secret and its `otpauth://` URI (sudo).
pub(crate) async fn begin_mfa(
    state: &AppState,
    caller: Caller,
) -> Result<(String, String), ApiError> {
    caller.require_sudo()?;
    let email = caller.user.email.clone();
    let secret = auth::begin_totp(state.ctx.db(), caller.user).await?;
    let uri = otpauth_uri(&email, &secret);
    Ok((secret, uri))
}

/// The `otpauth://` URI an authenticator app reads a TOTP secret of `email` from.
pub(crate) fn otpauth_uri(email: &str, secret: &str) -> String {
    let email = email.replace('@', "%40");
    format!("otpauth://totp/Postern:{email}?secret={secret}&issuer=Postern")
}

/// `POST /api/mfa/enable` `{code}` (sudo): turns TOTP on with the secret from
/// `POST /api/mfa/setup` once a code of it matches. A `secret` in the body must be that one:
/// a secret the client chose is never stored. A wrong code changes nothing.
#[utoipa::path(
    post,
    path = "/api/mfa/enable",
    tag = "auth",
    summary = "Turn on two-factor authentication",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn mfa_enable(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require_sudo()?;
    let body = super::json_object(&body)?;
    let Some(code) = text(&body, "code") else {
        return Err(ApiError::bad_request("code is required"));
    };
    confirm_mfa(&state, &caller, &code, text(&body, "secret").as_deref()).await?;
    Ok(Json(json!({"ok": true})))
}

/// Turns TOTP on once `code` matches the pending secret (sudo).
pub(crate) async fn confirm_mfa(
    state: &AppState,
    caller: &Caller,
    code: &str,
    secret: Option<&str>,
) -> Result<(), ApiError> {
    caller.require_sudo()?;
    let user = &caller.user;
    let Some(pending) = user.totp_pending.as_deref() else {
        return Err(ApiError::bad_request(
            "Start with POST /api/mfa/setup: it gives the secret to confirm",
        ));
    };
    if let Some(secret) = secret
        && !secret.trim().eq_ignore_ascii_case(pending)
    {
        return Err(ApiError::bad_request(
            "secret is not the one POST /api/mfa/setup gave",
        ));
    }
    let subject = format!("user:{}", user.id);
    let limit = state.ctx.settings().limits.login_per_minute;
    attempts_left(state, AttemptScope::Mfa, &subject, limit).await?;
    if !auth::confirm_totp(state.ctx.db(), user, code, chrono::Utc::now().timestamp()).await? {
        count_attempt(state, AttemptScope::Mfa, &[&subject]).await?;
        return Err(ApiError::bad_request("Wrong TOTP Token"));
    }
    Ok(())
}

/// `DELETE /api/mfa` (sudo): turns TOTP off.
#[utoipa::path(
    delete,
    path = "/api/mfa",
    tag = "auth",
    summary = "Turn off two-factor authentication",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn mfa_disable(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_sudo()?;
    auth::disable_totp(state.ctx.db(), caller.user).await?;
    Ok(Json(json!({"ok": true})))
}

/// `POST /api/auth/facebook` and `/api/auth/google`: social login is not offered.
#[utoipa::path(
    post,
    path = "/api/auth/google",
    tag = "auth",
    summary = "Social login (not offered; also /api/auth/facebook)",
    responses((status = 400, description = "Not offered", body = crate::openapi::ErrorBody)),
)]
pub async fn social_login() -> ApiError {
    ApiError::bad_request("invalid login mechanism")
}
