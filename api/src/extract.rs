//! Request extractors: who is calling (an API key or a browser session) and from where.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use postern_domain::{accounts, auth};
use postern_entity::{api_key, session, user};

use crate::AppState;
use crate::error::ApiError;

/// What a request authenticated with.
pub enum Credential {
    Key(api_key::Model),
    Session(session::Model),
}

/// The authenticated caller: the user and the key or session used.
pub struct Caller {
    pub user: user::Model,
    pub credential: Credential,
}

impl Caller {
    /// The sudo rule, in one place: the credential proved the password (or a TOTP code) within
    /// the last few minutes ([`auth::sudo_fresh`]). `440 Need sudo` otherwise.
    pub fn require_sudo(&self) -> Result<(), ApiError> {
        let proven_at = match &self.credential {
            Credential::Key(k) => k.sudo_at,
            Credential::Session(s) => s.sudo_at,
        };
        if auth::sudo_fresh(proven_at) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::from_u16(440).unwrap_or(StatusCode::FORBIDDEN),
                "Need sudo",
            ))
        }
    }

    pub fn key_id(&self) -> Option<i64> {
        match &self.credential {
            Credential::Key(k) => Some(k.id),
            Credential::Session(_) => None,
        }
    }

    pub fn session_id(&self) -> Option<i64> {
        match &self.credential {
            Credential::Session(s) => Some(s.id),
            Credential::Key(_) => None,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (user, credential) = match presented_key(&parts.headers) {
            Some(key) => {
                match accounts::user_by_api_key(state.ctx.db(), state.ctx.key_uses(), &key).await? {
                    Some((user, row)) => (user, Credential::Key(row)),
                    None => return Err(ApiError::wrong_api_key()),
                }
            }
            None => cookie_session(parts, state).await?,
        };
        if user.disabled {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "Disabled account"));
        }
        Ok(Caller { user, credential })
    }
}

/// The user of the API key in `Authentication: <key>` (SimpleLogin's clients) or
/// `Authorization: Bearer <key>` (addy.io's), or of a browser session that opted in.
pub struct ApiUser(pub user::Model);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ApiUser(
            Caller::from_request_parts(parts, state).await?.user,
        ))
    }
}

/// The API key a request presents, in either header form.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    header("authentication")
        .or_else(|| header("authorization").map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim()))
        .map(str::to_string)
}

pub const SESSION_COOKIE: &str = "postern_session";

/// `Set-Cookie` that ends the browser's session cookie.
pub fn cleared_session_cookie() -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_static(
        "postern_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
    )
}

/// The session token in the request's cookie, if any.
pub fn session_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// A browser session may call the API when the client asks for it with `X-Sl-Allowcookies`
/// (as SimpleLogin's browser extension does); writes must carry the session's CSRF token.
async fn cookie_session(
    parts: &Parts,
    state: &AppState,
) -> Result<(user::Model, Credential), ApiError> {
    let allowed = parts.headers.contains_key("x-sl-allowcookies");
    let Some(token) = session_token(&parts.headers).filter(|_| allowed) else {
        return Err(ApiError::wrong_api_key());
    };
    let db = state.ctx.db();
    let Some(session) = auth::find_session(db, &token).await? else {
        return Err(ApiError::wrong_api_key());
    };
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !auth::csrf_matches(&session, presented) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CSRF token missing or invalid",
            ));
        }
    }
    match accounts::find_user_by_id(db, session.user_id).await? {
        Some(user) => Ok((user, Credential::Session(session))),
        None => Err(ApiError::wrong_api_key()),
    }
}
