//! The OpenAPI 3.1 document of the whole API, generated from the handlers' annotations, and a
//! plain HTML page that lists it for people.

#![allow(dead_code)] // schema types exist for the document; the handlers build the same JSON

use axum::Json;
use axum::response::Html;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{"error": "<message for the user>"}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct MailboxRef {
    pub id: i64,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct LatestContact {
    pub email: String,
    pub name: Option<String>,
    pub reverse_alias: String,
}

#[derive(Serialize, ToSchema)]
pub struct LatestActivity {
    pub timestamp: i64,
    /// `forward`, `reply`, `block` or `bounced`.
    pub action: String,
    pub contact: Option<LatestContact>,
}

/// SimpleLogin's alias object.
#[derive(Serialize, ToSchema)]
pub struct Alias {
    pub id: i64,
    pub email: String,
    /// `"2020-04-06 17:57:14+00:00"`.
    pub creation_date: String,
    pub creation_timestamp: i64,
    pub enabled: bool,
    pub note: Option<String>,
    pub name: Option<String>,
    pub nb_forward: i64,
    pub nb_block: i64,
    pub nb_reply: i64,
    pub mailbox: Option<MailboxRef>,
    pub mailboxes: Vec<MailboxRef>,
    pub support_pgp: bool,
    pub disable_pgp: bool,
    pub latest_activity: Option<LatestActivity>,
    pub pinned: bool,
}

/// SimpleLogin's contact object.
#[derive(Serialize, ToSchema)]
pub struct Contact {
    pub id: i64,
    pub contact: String,
    pub creation_date: String,
    pub creation_timestamp: i64,
    pub last_email_sent_date: Option<String>,
    pub last_email_sent_timestamp: Option<i64>,
    pub reverse_alias: String,
    pub reverse_alias_address: String,
    pub existed: bool,
    pub block_forward: bool,
}

/// SimpleLogin's mailbox object.
#[derive(Serialize, ToSchema)]
pub struct Mailbox {
    pub id: i64,
    pub email: String,
    pub verified: bool,
    pub default: bool,
    pub creation_timestamp: i64,
    pub nb_alias: i64,
}

/// SimpleLogin's user-info object.
#[derive(Serialize, ToSchema)]
pub struct UserInfo {
    pub name: String,
    pub is_premium: bool,
    pub email: String,
    pub in_trial: bool,
    pub trial_end_timestamp: Option<i64>,
    pub max_alias_free_plan: i64,
    pub connected_proton_address: Option<String>,
    pub can_create_reverse_alias: bool,
    pub profile_picture_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Suffix {
    pub suffix: String,
    /// Opaque; valid for ten minutes.
    pub signed_suffix: String,
    pub is_custom: bool,
    pub is_premium: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub nb_alias: i64,
    pub nb_forward: i64,
    pub nb_reply: i64,
    pub nb_block: i64,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Authentication"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Postern API", description = "SimpleLogin-compatible REST API and addy.io-compatible alias endpoints."),
    modifiers(&Security),
    components(schemas(ErrorBody, Alias, Contact, Mailbox, UserInfo, Suffix, Stats, MailboxRef, LatestActivity, LatestContact)),
    paths(
        crate::simplelogin::user::user_info,
        crate::simplelogin::user::update_user_info,
        crate::simplelogin::user::stats,
        crate::simplelogin::auth::register,
        crate::simplelogin::auth::activate,
        crate::simplelogin::auth::activate_link,
        crate::simplelogin::auth::activate_confirm,
        crate::simplelogin::auth::reactivate,
        crate::simplelogin::auth::login,
        crate::simplelogin::auth::mfa,
        crate::simplelogin::auth::forgot_password,
        crate::simplelogin::auth::reset_password,
        crate::simplelogin::auth::sudo,
        crate::simplelogin::auth::delete_user,
        crate::simplelogin::auth::create_api_key,
        crate::simplelogin::auth::list_api_keys,
        crate::simplelogin::auth::revoke_api_key,
        crate::simplelogin::auth::logout,
        crate::simplelogin::auth::csrf,
        crate::simplelogin::auth::change_password,
        crate::simplelogin::custom::options_v5,
        crate::simplelogin::custom::options_v4,
        crate::simplelogin::custom::new_v3,
        crate::simplelogin::custom::new_v2,
        crate::simplelogin::aliases::random_new,
        crate::simplelogin::aliases::list,
        crate::simplelogin::aliases::get_one,
        crate::simplelogin::aliases::update,
        crate::simplelogin::aliases::delete,
        crate::simplelogin::aliases::toggle,
        crate::simplelogin::aliases::activities,
        crate::simplelogin::contacts::list,
        crate::simplelogin::contacts::create,
        crate::simplelogin::contacts::delete,
        crate::simplelogin::contacts::toggle,
        crate::simplelogin::mailboxes::verified,
        crate::simplelogin::mailboxes::all,
        crate::simplelogin::mailboxes::create,
        crate::simplelogin::mailboxes::verify_link,
        crate::simplelogin::mailboxes::verify_confirm,
        crate::simplelogin::mailboxes::update,
        crate::simplelogin::mailboxes::delete,
        crate::authorized::list,
        crate::authorized::add,
        crate::authorized::remove,
        crate::notifications::list,
        crate::notifications::mark_read,
        crate::notifications::bounces,
        crate::notifications::refused_message,
        crate::notifications::action_page,
        crate::notifications::action_confirm,
        crate::quarantine::list,
        crate::quarantine::release,
        crate::quarantine::delete,
        crate::simplelogin::misc::custom_domains,
        crate::simplelogin::misc::domains_v2,
        crate::simplelogin::misc::domains_v1,
        crate::simplelogin::misc::export_data,
        crate::simplelogin::misc::export_aliases,
        crate::simplelogin::misc::setting,
        crate::simplelogin::misc::update_setting,
        crate::simplelogin::misc::aliases_v1,
        crate::simplelogin::misc::custom_domain,
        crate::simplelogin::misc::unlink_proton,
        crate::simplelogin::auth::cookie_token,
        crate::simplelogin::auth::api_to_cookie,
        crate::simplelogin::auth::mfa_setup,
        crate::simplelogin::auth::mfa_enable,
        crate::simplelogin::auth::mfa_disable,
        crate::simplelogin::auth::social_login,
        crate::addy::create,
        crate::addy::list,
        crate::addy::get_one,
        crate::addy::update,
        crate::addy::remove,
        crate::addy::activate,
        crate::addy::deactivate,
        crate::addy::account_details,
        crate::addy::domain_options,
    )
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// `GET /api/docs`: the document as a readable page (no scripts, nothing fetched).
pub async fn page() -> Html<String> {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut rows = String::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                let summary = op["summary"].as_str().unwrap_or_default();
                let tag = op["tags"][0].as_str().unwrap_or_default();
                rows.push_str(&format!(
                    "<tr><td>{}</td><td><code>{} {}</code></td><td>{}</td></tr>\n",
                    escape(tag),
                    escape(&method.to_uppercase()),
                    escape(path),
                    escape(summary)
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Postern API</title>\
         <style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}td{{padding:.2em .6em;border-bottom:1px solid #ddd}}</style>\
         </head><body><h1>Postern API</h1><p>Authenticate with <code>Authentication: &lt;api key&gt;</code> \
         (or <code>Authorization: Bearer &lt;api key&gt;</code>). Errors are <code>{{\"error\": \"…\"}}</code>. \
         The machine-readable document is <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>\
         <table>{rows}</table></body></html>"
    ))
}

/// Text made safe to place in HTML, inside elements and quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
