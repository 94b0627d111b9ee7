//! The web UI: server-rendered pages for people, calling the same steps as the JSON API.
//!
//! Every page is plain HTML with forms that work without JavaScript; `app.js` only adds
//! copy buttons. Every form carries a CSRF token: the session's once logged in, a
//! double-submit cookie before. Assets are compiled in and served from here: nothing is
//! loaded from another host.

mod account;
mod aliases;
mod inbox;
mod mailboxes;
mod settings;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use postern_domain::{DomainError, accounts, auth};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, Credential, session_token};

/// The pages, under `/` (the API keeps `/api`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/assets/{name}", get(asset))
        .merge(account::routes())
        .merge(aliases::routes())
        .merge(mailboxes::routes())
        .merge(settings::routes())
        .merge(inbox::routes())
        .layer(axum::middleware::map_response(security_headers))
}

/// `/`: the dashboard once logged in, the login page otherwise.
async fn home(user: Option<WebUser>) -> Redirect {
    match user {
        Some(_) => Redirect::to("/dashboard"),
        None => Redirect::to("/login"),
    }
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'";

async fn security_headers(response: Response) -> Response {
    harden(response)
}

/// Headers every page carries: scripts only from here, never framed, never cached.
fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

const STYLESHEET: &str = include_str!("../../assets/app.css");
const SCRIPT: &str = include_str!("../../assets/app.js");

/// `/assets/{name}`: the stylesheet and the script, cached for a day.
async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return WebError::not_found().into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// A form that carries nothing but its CSRF token (a button).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// An id from a page's path; anything else is a page that does not exist.
pub fn path_id(raw: &str) -> Result<i64, WebError> {
    crate::bounds::path_id(raw).map_err(|_| WebError::not_found())
}

/// What the layout shows of the logged-in person: who, the CSRF token its forms carry, and
/// which section is open.
pub struct Nav {
    pub email: String,
    pub csrf: String,
    pub section: &'static str,
}

/// A logged-in browser session. Pages that need one send anyone else to the login page.
pub struct WebUser {
    pub caller: Caller,
    pub csrf: String,
}

impl WebUser {
    pub fn id(&self) -> i64 {
        self.caller.user.id
    }

    pub fn nav(&self, section: &'static str) -> Nav {
        Nav {
            email: self.caller.user.email.clone(),
            csrf: self.csrf.clone(),
            section,
        }
    }

    /// A form's token must be this session's.
    pub fn check(&self, presented: &str) -> Result<(), WebError> {
        if same_secret(presented, &self.csrf) {
            Ok(())
        } else {
            Err(WebError::csrf())
        }
    }
}

fn same_secret(a: &str, b: &str) -> bool {
    !b.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .filter(|p| *p != "/" && parts.method == axum::http::Method::GET)
                .map(|p| format!("/login?next={}", url_escape(p)))
                .unwrap_or_else(|| "/login".to_string());
            Redirect::to(&next).into_response()
        };
        let Some(token) = session_token(&parts.headers) else {
            return Err(to_login());
        };
        let db = state.ctx.db();
        let session = match auth::find_session(db, &token).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(WebError::from(e).into_response()),
        };
        let user = match accounts::find_user_by_id(db, session.user_id).await {
            Ok(Some(u)) if !u.disabled => u,
            Ok(_) => return Err(to_login()),
            Err(e) => return Err(WebError::from(e).into_response()),
        };
        let csrf = session.csrf_token.clone();
        Ok(WebUser {
            caller: Caller {
                user,
                credential: Credential::Session(session),
            },
            csrf,
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for WebUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <WebUser as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// The double-submit token of the forms shown before login (sign-up, login, reset): a random
/// value in a cookie that the form must repeat. With `SameSite=Lax`, another site can
/// neither read nor send it.
pub struct FormToken {
    pub value: String,
    /// Set when the cookie is new.
    set_cookie: Option<HeaderValue>,
}

const FORM_COOKIE: &str = "postern_form";

impl FormToken {
    pub fn of(headers: &HeaderMap, secure: bool) -> Self {
        if let Some(value) = cookie(headers, FORM_COOKIE).filter(|v| v.len() == 32) {
            return Self {
                value,
                set_cookie: None,
            };
        }
        use rand::Rng;
        let value: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let secure = if secure { "; Secure" } else { "" };
        let set_cookie = HeaderValue::from_str(&format!(
            "{FORM_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"
        ))
        .ok();
        Self { value, set_cookie }
    }

    /// A form posted before login must repeat the cookie's token.
    pub fn check(headers: &HeaderMap, presented: &str) -> Result<(), WebError> {
        match cookie(headers, FORM_COOKIE) {
            Some(value) if same_secret(presented, &value) => Ok(()),
            _ => Err(WebError::csrf()),
        }
    }

    /// The page, with the cookie when it is new.
    pub fn respond(self, status: StatusCode, page: Response) -> Response {
        let mut response = (status, page).into_response();
        if let Some(c) = self.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
        response
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Whether cookies must be `Secure`: the service is reached over https.
pub fn https(state: &AppState) -> bool {
    state.ctx.settings().http.public_url.starts_with("https://")
}

/// Renders a template; a template that fails to render is a bug, answered with a 500.
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.")
                .into_response()
        }
    }
}

/// After a form's change, back to a page (303, so a reload does not post again).
pub fn back_to(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// A path inside this site to return to after a step (login, sudo); anything else is `/`.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines inside a URL, so "/\t/evil" would become
        // "//evil": another site. No control characters, no backslash, one leading slash.
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.bytes().any(|b| b < 0x20 || b == 0x7f) =>
        {
            p.to_string()
        }
        _ => "/dashboard".to_string(),
    }
}

/// Percent-encodes a query value.
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A page that says what went wrong, with the status that fits.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "This page does not exist, or is not yours.",
        )
    }

    fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired. Go back, reload the page and try again.",
        )
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav>,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            nav: None,
            title,
            message: &self.message,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>Error</title>".to_string());
        harden((self.status, Html(body)).into_response())
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        // "Forbidden" is how the API says unknown-or-not-yours.
        if e.status == StatusCode::FORBIDDEN && e.message == "Forbidden" {
            return Self::not_found();
        }
        Self::new(e.status, e.message)
    }
}

impl From<DomainError> for WebError {
    fn from(e: DomainError) -> Self {
        ApiError::from(e).into()
    }
}

/// Formats a time for a page, in UTC.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
