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
            return Err(ApiError::wrong_api_key());
        };
        match accounts::user_by_api_key(state.flow.db(), &key).await? {
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
