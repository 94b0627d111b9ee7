//! SimpleLogin's REST API, answered the way its clients (browser extension, Bitwarden and other
//! password-manager generators, Raycast, CLIs) expect: same paths, fields and errors.

mod aliases;
mod mailboxes;
mod serialize;
mod user;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;
use crate::error::ApiError;

/// Ids in paths are integers; anything else is no such endpoint, as in SimpleLogin.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user_info", get(user::user_info))
        .route("/alias/random/new", post(aliases::random_new))
        .route("/v2/aliases", get(aliases::list).post(aliases::list))
        .route("/aliases/{alias_id}", get(aliases::get_one))
        .route("/aliases/{alias_id}/toggle", post(aliases::toggle))
        .route("/mailboxes", get(mailboxes::verified))
        .route("/v2/mailboxes", get(mailboxes::all))
}
