//! SimpleLogin's REST API, answered the way its clients (browser extension, Bitwarden and other
//! password-manager generators, Raycast, CLIs) expect: same paths, fields and errors.

pub(crate) mod aliases;
pub(crate) mod auth;
pub(crate) mod contacts;
pub(crate) mod custom;
pub(crate) mod mailboxes;
pub(crate) mod misc;
mod serialize;
pub(crate) mod user;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{delete, get, patch, post};
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;

/// Ids in paths are integers; anything else is no such endpoint, as in SimpleLogin.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    crate::bounds::path_id(raw)
}

pub use auth::{activate_confirm, activate_link, api_to_cookie};
pub use mailboxes::{verify_confirm as verify_mailbox_confirm, verify_link as verify_mailbox_link};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/user_info",
            get(user::user_info).patch(user::update_user_info),
        )
        .route("/auth/register", post(auth::register))
        .route("/auth/activate", post(auth::activate))
        .route("/auth/reactivate", post(auth::reactivate))
        .route("/auth/login", post(auth::login))
        .route("/auth/mfa", post(auth::mfa))
        .route("/auth/google", post(auth::social_login))
        .route("/auth/facebook", post(auth::social_login))
        .route("/mfa/setup", post(auth::mfa_setup))
        .route("/mfa/enable", post(auth::mfa_enable))
        .route("/mfa", delete(auth::mfa_disable))
        .route("/auth/forgot_password", post(auth::forgot_password))
        .route("/auth/reset_password", post(auth::reset_password))
        .route("/sudo", patch(auth::sudo))
        .route("/user", delete(auth::delete_user))
        .route("/user/password", patch(auth::change_password))
        .route("/api_key", post(auth::create_api_key))
        .route("/api_keys", get(auth::list_api_keys))
        .route("/api_keys/{id}", delete(auth::revoke_api_key))
        .route("/logout", get(auth::logout))
        .route("/csrf", get(auth::csrf))
        .route("/stats", get(user::stats))
        .route("/v5/alias/options", get(custom::options_v5))
        .route("/v4/alias/options", get(custom::options_v4))
        .route("/v3/alias/custom/new", post(custom::new_v3))
        .route("/v2/alias/custom/new", post(custom::new_v2))
        .route("/alias/random/new", post(aliases::random_new))
        .route("/v2/aliases", get(aliases::list).post(aliases::list))
        .route(
            "/aliases/{alias_id}",
            get(aliases::get_one)
                .patch(aliases::update)
                .put(aliases::update)
                .delete(aliases::delete),
        )
        .route("/aliases/{alias_id}/activities", get(aliases::activities))
        .route(
            "/aliases/{alias_id}/contacts",
            get(contacts::list).post(contacts::create),
        )
        .route("/contacts/{contact_id}", delete(contacts::delete))
        .route("/contacts/{contact_id}/toggle", post(contacts::toggle))
        .route("/aliases/{alias_id}/toggle", post(aliases::toggle))
        .route(
            "/mailboxes",
            get(mailboxes::verified).post(mailboxes::create),
        )
        .route(
            "/mailboxes/{id}",
            axum::routing::put(mailboxes::update).delete(mailboxes::delete),
        )
        .route("/notifications", get(crate::notifications::list))
        .route(
            "/notifications/{id}/read",
            post(crate::notifications::mark_read),
        )
        .route(
            "/setting/unlink_proton_account",
            delete(misc::unlink_proton),
        )
        .route("/user/cookie_token", get(auth::cookie_token))
        .route("/custom_domains", get(misc::custom_domains))
        .route("/custom_domains/{id}", patch(misc::custom_domain))
        .route("/custom_domains/{id}/trash", get(misc::custom_domain))
        .route("/setting", get(misc::setting).patch(misc::update_setting))
        .route("/aliases", get(misc::aliases_v1).post(misc::aliases_v1))
        .route("/v2/setting/domains", get(misc::domains_v2))
        .route("/setting/domains", get(misc::domains_v1))
        .route("/export/data", get(misc::export_data))
        .route("/export/aliases", get(misc::export_aliases))
        .route("/v2/mailboxes", get(mailboxes::all))
}

/// A JSON object body, with SimpleLogin's messages for what is wrong with it.
pub(crate) fn json_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body cannot be empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "request body does not follow the required format",
        )),
        Err(_) => Err(ApiError::bad_request("Bad Request")),
    }
}

/// The caller's alias `alias_id`; another user's answers exactly like a missing one.
pub(crate) async fn owned_alias(
    db: &impl sea_orm::ConnectionTrait,
    user_id: i64,
    alias_id: i64,
) -> Result<postern_entity::alias::Model, ApiError> {
    postern_domain::accounts::user_alias(db, user_id, alias_id)
        .await?
        .ok_or_else(ApiError::forbidden)
}

/// `page_id` from the query string, required by every paginated endpoint.
fn page_id(params: &std::collections::HashMap<String, String>) -> Result<u64, ApiError> {
    crate::bounds::query_number(params, "page_id", 0..=crate::bounds::MAX_PAGE, None)
}
