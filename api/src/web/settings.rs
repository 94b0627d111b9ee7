//! Settings and keys: the account's settings, its password, the sudo step, API keys,
//! two-factor authentication and deleting the account. Every change goes through the
//! functions the JSON API calls.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use postern_domain::{accounts, auth};
use serde::Deserialize;

use super::account::MessagePage;
use super::{CsrfForm, Nav, WebError, WebUser, back_to, local_path, render, url_escape, when};
use crate::AppState;
use crate::limit::ClientIp;
use crate::simplelogin::auth::{
    begin_mfa, close_account, confirm_mfa, grant_sudo, limit_login, otpauth_uri, replace_password,
};
use crate::simplelogin::misc::current_settings;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(settings_page).post(save_settings))
        .route("/settings/password", post(change_password))
        .route("/sudo", get(sudo_page).post(sudo))
        .route("/settings/keys", get(keys_page).post(create_key))
        .route("/settings/keys/{id}/revoke", post(revoke_key))
        .route("/settings/mfa", get(mfa_page).post(enable_mfa))
        .route("/settings/mfa/disable", post(disable_mfa))
        .route("/settings/delete", get(delete_page).post(delete_account))
}

/// The sudo page when the session has not proven the password lately, to come back to
/// `here` afterwards.
fn need_sudo(user: &WebUser, here: &str) -> Option<Response> {
    user.caller
        .require_sudo()
        .err()
        .map(|_| back_to(&format!("/sudo?next={}", url_escape(here))))
}

/// One option of a `<select>`.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices(options: &[(&str, &str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: value.to_string(),
            label: label.to_string(),
            selected: *value == current,
        })
        .collect()
}

// The values `accounts::update_settings` accepts, with what the page calls them.
const SENDER_FORMATS: &[(&str, &str)] = &[
    ("AT", "Bob Smith - bob at example.com"),
    ("A", "Bob Smith - bob(a)example.com"),
    ("NAME_ONLY", "Bob Smith (the address when there is no name)"),
    ("AT_ONLY", "bob at example.com"),
    ("NO_NAME", "No name, only the reverse alias"),
];
const GENERATORS: &[(&str, &str)] = &[
    ("word", "Words, like lucky_river123"),
    (
        "uuid",
        "A random UUID, like 0b3e7c1a-5d2f-4c8e-9a61-2f4d8b7e6c30",
    ),
];
const SUFFIXES: &[(&str, &str)] = &[
    ("word", "A word and digits, like .cat123"),
    ("random_string", "Digits, like .48213"),
];
const BLOCK: &[(&str, &str)] = &[
    (
        "return_2xx",
        "Accepted silently: the sender does not know it was blocked",
    ),
    ("return_5xx", "Refused: the sender gets a bounce"),
];
const DMARC: &[(&str, &str)] = &[
    ("warn", "Forward it with a warning in the subject"),
    ("hold", "Hold it in the quarantine until I release it"),
];

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    password_error: Option<&'a str>,
    sender_format: Vec<Choice>,
    alias_generator: Vec<Choice>,
    random_alias_suffix: Vec<Choice>,
    domain: Vec<Choice>,
    block_behaviour: Vec<Choice>,
    dmarc_quarantine: Vec<Choice>,
    /// The threshold as typed back into its field (`7.5`), empty when off.
    spam_threshold: String,
    /// Whether this server believes any spam filter's verdict at all.
    spam_filters: bool,
    notification: bool,
    totp_on: bool,
}

/// The settings page of `u`, with an error under one of its forms.
fn settings_view(
    state: &AppState,
    nav: Nav,
    csrf: &str,
    u: &postern_entity::user::Model,
    notice: Option<&str>,
    error: Option<&str>,
    password_error: Option<&str>,
) -> Response {
    let current = current_settings(state, u);
    let domains: Vec<(&str, &str)> = state
        .ctx
        .settings()
        .mail
        .alias_domains
        .iter()
        .map(|d| (d.as_str(), d.as_str()))
        .collect();
    render(&SettingsPage {
        nav: Some(nav),
        csrf,
        notice,
        error,
        password_error,
        sender_format: choices(SENDER_FORMATS, current.sender_format),
        alias_generator: choices(GENERATORS, current.alias_generator),
        random_alias_suffix: choices(SUFFIXES, current.random_alias_suffix),
        domain: choices(&domains, &current.random_alias_default_domain),
        block_behaviour: choices(BLOCK, current.block_behaviour),
        dmarc_quarantine: choices(DMARC, current.dmarc_quarantine),
        spam_threshold: current
            .spam_threshold
            .map(|t| t.to_string())
            .unwrap_or_default(),
        spam_filters: !state.ctx.settings().smtp.spam_filters.is_empty(),
        notification: current.notification,
        totp_on: u.totp_secret.is_some(),
    })
}

#[derive(Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

async fn settings_page(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<SavedQuery>,
) -> Response {
    let notice = match q.saved.as_deref() {
        Some("1") => Some("Saved."),
        Some("password") => Some(
            "Your password was changed. Your other sessions were logged out and your API keys \
             revoked.",
        ),
        Some("mfa-on") => Some("Two-factor authentication is on."),
        Some("mfa-off") => Some("Two-factor authentication is off."),
        _ => None,
    };
    settings_view(
        &state,
        user.nav("settings"),
        &user.csrf,
        &user.caller.user,
        notice,
        None,
        None,
    )
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    sender_format: Option<String>,
    alias_generator: Option<String>,
    random_alias_suffix: Option<String>,
    default_alias_domain: Option<String>,
    block_behaviour: Option<String>,
    dmarc_quarantine: Option<String>,
    /// Empty turns it off.
    spam_threshold: Option<String>,
    /// A checkbox: present when ticked.
    notification: Option<String>,
}

async fn save_settings(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<SettingsForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let u = user.caller.user.clone();
    // The domain shown may be the server's default rather than a choice: only a change is
    // stored, so the default can still move with the server's configuration.
    let domain = form
        .default_alias_domain
        .filter(|d| *d != accounts::alias_domain_for(state.ctx.settings(), &u));
    let spam_threshold = match form.spam_threshold.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(typed) => Some(Some(
            typed
                .parse::<f64>()
                .ok()
                .and_then(accounts::parse_spam_threshold)
                // Out of range: the domain's check explains the allowed values.
                .unwrap_or(0),
        )),
    };
    let update = accounts::SettingsUpdate {
        alias_generator: form.alias_generator,
        sender_format: form.sender_format,
        random_alias_suffix: form.random_alias_suffix,
        notification: Some(form.notification.is_some()),
        default_alias_domain: domain,
        block_behaviour: form.block_behaviour,
        dmarc_quarantine: form.dmarc_quarantine,
        spam_threshold,
    };
    match accounts::update_settings(state.ctx.db(), state.ctx.settings(), u.clone(), update).await {
        Ok(_) => Ok(back_to("/settings?saved=1")),
        Err(e) => {
            let e = crate::error::ApiError::from(e);
            let nav = user.nav("settings");
            let page = settings_view(&state, nav, &user.csrf, &u, None, Some(&e.message), None);
            Ok((e.status, page).into_response())
        }
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

async fn change_password(
    State(state): State<AppState>,
    user: WebUser,
    ClientIp(ip): ClientIp,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let nav = user.nav("settings");
    let u = user.caller.user.clone();
    let replaced = async {
        limit_login(&state, &ip)?;
        replace_password(&state, user.caller, &form.current, &form.new).await
    };
    match replaced.await {
        Ok(()) => Ok(back_to("/settings?saved=password")),
        Err(e) => {
            let page = settings_view(&state, nav, &user.csrf, &u, None, None, Some(&e.message));
            Ok((e.status, page).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "sudo.html")]
struct SudoPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    next: &'a str,
    totp: bool,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sudo_page(user: WebUser, Query(q): Query<NextQuery>) -> Response {
    render(&SudoPage {
        nav: Some(user.nav("settings")),
        csrf: &user.csrf,
        next: &local_path(q.next.as_deref()),
        totp: user.caller.user.totp_secret.is_some(),
        error: None,
    })
}

#[derive(Deserialize)]
struct SudoForm {
    csrf: String,
    next: Option<String>,
    password: Option<String>,
    code: Option<String>,
}

async fn sudo(
    State(state): State<AppState>,
    user: WebUser,
    ClientIp(ip): ClientIp,
    Form(form): Form<SudoForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let next = local_path(form.next.as_deref());
    let nav = user.nav("settings");
    let totp = user.caller.user.totp_secret.is_some();
    let code = form.code.as_deref().map(str::trim);
    let granted = async {
        limit_login(&state, &ip)?;
        grant_sudo(&state, user.caller, form.password.as_deref(), code).await
    };
    match granted.await {
        Ok(()) => Ok(back_to(&next)),
        Err(e) => {
            let page = render(&SudoPage {
                nav: Some(nav),
                csrf: &user.csrf,
                next: &next,
                totp,
                error: Some(&e.message),
            });
            Ok((e.status, page).into_response())
        }
    }
}

struct KeyRow {
    id: i64,
    name: String,
    created: String,
    last_used: String,
    use_count: i64,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    keys: Vec<KeyRow>,
    name: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "keys_created.html")]
struct KeyCreatedPage<'a> {
    nav: Option<Nav>,
    name: &'a str,
    key: &'a str,
}

#[derive(Deserialize)]
struct KeysQuery {
    /// A name typed before the sudo step, to fill in again.
    name: Option<String>,
    revoked: Option<String>,
}

async fn keys_view(
    state: &AppState,
    user: &WebUser,
    name: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, WebError> {
    let keys = auth::list_api_keys(state.ctx.db(), user.id())
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            name: k.name,
            created: when(k.created_at),
            last_used: k.last_used.map(when).unwrap_or_else(|| "Never".into()),
            use_count: k.use_count,
        })
        .collect();
    Ok(render(&KeysPage {
        nav: Some(user.nav("settings")),
        csrf: &user.csrf,
        keys,
        name,
        notice,
        error,
    }))
}

async fn keys_page(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<KeysQuery>,
) -> Result<Response, WebError> {
    let notice = q.revoked.is_some().then_some("The key was revoked.");
    keys_view(
        &state,
        &user,
        q.name.as_deref().unwrap_or_default(),
        notice,
        None,
    )
    .await
}

#[derive(Deserialize)]
struct KeyForm {
    csrf: String,
    name: String,
}

async fn create_key(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<KeyForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let name = form.name.trim();
    if let Some(to_sudo) = need_sudo(&user, &format!("/settings/keys?name={}", url_escape(name))) {
        return Ok(to_sudo);
    }
    if name.is_empty() {
        let page = keys_view(&state, &user, name, None, Some("Give the key a name.")).await?;
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    let key = accounts::create_api_key(state.ctx.db(), user.id(), name).await?;
    Ok(render(&KeyCreatedPage {
        nav: Some(user.nav("settings")),
        name,
        key: &key,
    }))
}

async fn revoke_key(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = super::path_id(&id)?;
    if auth::revoke_api_key(state.ctx.db(), user.id(), id).await? {
        Ok(back_to("/settings/keys?revoked=1"))
    } else {
        Err(WebError::not_found())
    }
}

#[derive(Template)]
#[template(path = "mfa.html")]
struct MfaPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    on: bool,
    secret: &'a str,
    qr: Option<String>,
    error: Option<&'a str>,
}

/// The `otpauth://` URI as an inline SVG QR code. The page's Content-Security-Policy forbids
/// inline styles, so the SVG must carry none; `None` if it cannot be made.
fn qr_svg(uri: &str) -> Option<String> {
    let svg = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| tracing::error!(error = %e, "the MFA QR code failed"))
        .ok()?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    // Drop the XML declaration: inside HTML it would be a stray comment.
    let svg = &svg[svg.find("<svg")?..];
    if svg.contains("style") {
        return None;
    }
    Some(svg.replacen(
        "<svg ",
        "<svg class=\"qr\" role=\"img\" aria-label=\"QR code for your authenticator app\" ",
        1,
    ))
}

/// The page showing a pending secret, with the form for a code of it.
fn mfa_setup_view(nav: Nav, csrf: &str, secret: &str, uri: &str, error: Option<&str>) -> Response {
    render(&MfaPage {
        nav: Some(nav),
        csrf,
        on: false,
        secret,
        qr: qr_svg(uri),
        error,
    })
}

/// With TOTP on, a form to turn it off; with it off, a new secret to confirm.
async fn mfa_page(State(state): State<AppState>, user: WebUser) -> Result<Response, WebError> {
    if let Some(to_sudo) = need_sudo(&user, "/settings/mfa") {
        return Ok(to_sudo);
    }
    if user.caller.user.totp_secret.is_some() {
        return Ok(render(&MfaPage {
            nav: Some(user.nav("settings")),
            csrf: &user.csrf,
            on: true,
            secret: "",
            qr: None,
            error: None,
        }));
    }
    let nav = user.nav("settings");
    // A secret already shown (and maybe scanned) stays the one to confirm: a reload, or a
    // return through the sudo page, must not replace it behind the person's back.
    if let Some(pending) = user.caller.user.totp_pending.clone() {
        let uri = otpauth_uri(&user.caller.user.email, &pending);
        return Ok(mfa_setup_view(nav, &user.csrf, &pending, &uri, None));
    }
    let (secret, uri) = begin_mfa(&state, user.caller).await?;
    Ok(mfa_setup_view(nav, &user.csrf, &secret, &uri, None))
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

async fn enable_mfa(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    if let Some(to_sudo) = need_sudo(&user, "/settings/mfa") {
        return Ok(to_sudo);
    }
    let Some(pending) = user.caller.user.totp_pending.clone() else {
        return Ok(back_to("/settings/mfa"));
    };
    match confirm_mfa(&state, &user.caller, form.code.trim(), None).await {
        Ok(()) => Ok(back_to("/settings?saved=mfa-on")),
        Err(e) => {
            let uri = otpauth_uri(&user.caller.user.email, &pending);
            let nav = user.nav("settings");
            let page = mfa_setup_view(nav, &user.csrf, &pending, &uri, Some(&e.message));
            Ok((e.status, page).into_response())
        }
    }
}

async fn disable_mfa(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    if let Some(to_sudo) = need_sudo(&user, "/settings/mfa") {
        return Ok(to_sudo);
    }
    auth::disable_totp(state.ctx.db(), user.caller.user).await?;
    Ok(back_to("/settings?saved=mfa-off"))
}

#[derive(Template)]
#[template(path = "delete_account.html")]
struct DeletePage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

async fn delete_page(user: WebUser) -> Response {
    if let Some(to_sudo) = need_sudo(&user, "/settings/delete") {
        return to_sudo;
    }
    render(&DeletePage {
        nav: Some(user.nav("settings")),
        csrf: &user.csrf,
        email: &user.caller.user.email,
        error: None,
    })
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    confirm: String,
}

async fn delete_account(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<DeleteForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    if let Some(to_sudo) = need_sudo(&user, "/settings/delete") {
        return Ok(to_sudo);
    }
    if !form
        .confirm
        .trim()
        .eq_ignore_ascii_case(&user.caller.user.email)
    {
        let page = render(&DeletePage {
            nav: Some(user.nav("settings")),
            csrf: &user.csrf,
            email: &user.caller.user.email,
            error: Some("Type your account's email address exactly to confirm."),
        });
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    }
    close_account(&state, &user.caller).await?;
    let mut response = render(&MessagePage {
        nav: None,
        title: "Account deleted",
        message: "Your Postern account and all its aliases are deleted. Their addresses will \
                  never be given to anyone else. Goodbye.",
        link: Some(("/signup", "Create a new account")),
    });
    response
        .headers_mut()
        .append(header::SET_COOKIE, crate::extract::cleared_session_cookie());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_inline_svg_without_styles() {
        let svg = qr_svg(&otpauth_uri("me@example.com", "JBSWY3DPEHPK3PXP")).expect("a QR code");
        assert!(svg.starts_with("<svg class=\"qr\" role=\"img\""));
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("style"));
        assert!(!svg.contains("<?xml"));
    }
}
