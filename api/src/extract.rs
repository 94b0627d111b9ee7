//! Request extractors: the API-key user.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use postern_domain::accounts;
use postern_entity::user;

use crate::AppState;
use crate::error::ApiError;

/// The user of the API key in `Authentication: <key>` (SimpleLogin's clients) or
/// `Authorization: Bearer <key>` (addy.io's).
pub struct ApiUser(pub user::Model);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = presented_key(&parts.headers) else {
            return cookie_user(parts, state).await;
        };
        match accounts::user_by_api_key(state.ctx.db(), &key).await? {
            Some(user) if user.disabled => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Disabled account",
            )),
            Some(user) => Ok(ApiUser(user)),
            None => Err(ApiError::wrong_api_key()),
        }
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
async fn cookie_user(parts: &Parts, state: &AppState) -> Result<ApiUser, ApiError> {
    use axum::http::{Method, StatusCode};
    let allowed = parts.headers.contains_key("x-sl-allowcookies");
    let Some(token) = session_token(&parts.headers).filter(|_| allowed) else {
        return Err(ApiError::wrong_api_key());
    };
    let db = state.ctx.db();
    let Some(session) = postern_domain::auth::find_session(db, &token).await? else {
        return Err(ApiError::wrong_api_key());
    };
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !postern_domain::auth::csrf_matches(&session, presented) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "CSRF token missing or invalid",
            ));
        }
    }
    match accounts::find_user_by_id(db, session.user_id).await? {
        Some(user) if !user.disabled => Ok(ApiUser(user)),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "Disabled account")),
        None => Err(ApiError::wrong_api_key()),
    }
}
