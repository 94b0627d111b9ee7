//! Read endpoints for features that have no data yet (custom domains) and the domain list
//! and exports.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use postern_domain::accounts;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

/// `GET /api/custom_domains`: custom domains are not supported yet, so a user has none.
#[utoipa::path(
    get,
    path = "/api/custom_domains",
    tag = "domains",
    summary = "Custom domains of the user",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn custom_domains(_user: ApiUser) -> Json<Value> {
    Json(json!({"custom_domains": []}))
}

/// `GET /api/v2/setting/domains`.
#[utoipa::path(
    get,
    path = "/api/v2/setting/domains",
    tag = "domains",
    summary = "Domains aliases can be created on",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn domains_v2(State(state): State<AppState>, _user: ApiUser) -> Json<Value> {
    let list: Vec<Value> = state
        .ctx
        .settings()
        .mail
        .alias_domains
        .iter()
        .map(|d| json!({"domain": d, "is_custom": false}))
        .collect();
    Json(Value::Array(list))
}

/// `GET /api/setting/domains` (legacy): `[[is_ours, domain], …]`.
#[utoipa::path(
    get,
    path = "/api/setting/domains",
    tag = "domains",
    summary = "Domains (legacy pairs)",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn domains_v1(State(state): State<AppState>, _user: ApiUser) -> Json<Value> {
    let list: Vec<Value> = state
        .ctx
        .settings()
        .mail
        .alias_domains
        .iter()
        .map(|d| json!([true, d]))
        .collect();
    Json(Value::Array(list))
}

/// `GET /api/export/data`.
#[utoipa::path(
    get,
    path = "/api/export/data",
    tag = "account",
    summary = "Export account data as JSON",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn export_data(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, ApiError> {
    let aliases: Vec<Value> = accounts::list_aliases(state.ctx.db(), user.id)
        .await?
        .iter()
        .map(|a| json!({"email": a.email, "enabled": a.enabled}))
        .collect();
    Ok(Json(json!({
        "email": user.email,
        "name": user.name.clone().unwrap_or_default(),
        "aliases": aliases,
        "apps": [],
        "custom_domains": [],
    })))
}

/// `GET /api/export/aliases`: CSV `alias,note,enabled,mailboxes`.
#[utoipa::path(
    get,
    path = "/api/export/aliases",
    tag = "account",
    summary = "Export aliases as CSV",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn export_aliases(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<impl IntoResponse, ApiError> {
    let db = state.ctx.db();
    let aliases = accounts::list_aliases(db, user.id).await?;
    let ids: Vec<i64> = aliases.iter().map(|a| a.id).collect();
    let mut mailboxes = postern_domain::listing::alias_mailboxes(db, &ids).await?;
    let mut csv = String::from("alias,note,enabled,mailboxes\r\n");
    for a in &aliases {
        let boxes: Vec<String> = mailboxes
            .remove(&a.id)
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.email)
            .collect();
        csv.push_str(&format!(
            "{},{},{},{}\r\n",
            csv_field(&a.email),
            csv_field(a.note.as_deref().unwrap_or_default()),
            if a.enabled { "True" } else { "False" },
            csv_field(&boxes.join(" "))
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=aliases.csv",
            ),
        ],
        csv,
    ))
}

fn csv_field(s: &str) -> String {
    // A leading formula character is neutralised so spreadsheets do not run it.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A user's settings as the API and the settings page show them: the sender format read
/// back through its parser (an unknown one shows as the default) and the domain new random
/// aliases actually go on.
pub(crate) struct CurrentSettings<'a> {
    pub alias_generator: &'a str,
    pub notification: bool,
    pub random_alias_default_domain: String,
    pub sender_format: &'static str,
    pub random_alias_suffix: &'a str,
    pub block_behaviour: &'a str,
    pub dmarc_quarantine: &'a str,
    /// In points (`7.5`); `None` when off.
    pub spam_threshold: Option<f64>,
}

pub(crate) fn current_settings<'a>(
    state: &AppState,
    u: &'a postern_entity::user::Model,
) -> CurrentSettings<'a> {
    CurrentSettings {
        alias_generator: &u.alias_generator,
        notification: u.notification,
        random_alias_default_domain: accounts::alias_domain_for(state.ctx.settings(), u),
        sender_format: postern_domain::rewrite::SenderFormat::parse(&u.sender_format)
            .unwrap_or_default()
            .as_str(),
        random_alias_suffix: &u.random_alias_suffix,
        block_behaviour: &u.block_behaviour,
        dmarc_quarantine: &u.dmarc_quarantine,
        spam_threshold: u.spam_threshold.map(|t| f64::from(t) / 10.0),
    }
}

fn setting_object(state: &AppState, u: &postern_entity::user::Model) -> Value {
    let s = current_settings(state, u);
    json!({
        "alias_generator": s.alias_generator,
        "notification": s.notification,
        "random_alias_default_domain": s.random_alias_default_domain,
        "sender_format": s.sender_format,
        "random_alias_suffix": s.random_alias_suffix,
        "block_behaviour": s.block_behaviour,
        "dmarc_quarantine": s.dmarc_quarantine,
        "spam_threshold": s.spam_threshold,
    })
}

/// `GET /api/setting`.
#[utoipa::path(
    get,
    path = "/api/setting",
    tag = "account",
    summary = "The user's settings",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn setting(State(state): State<AppState>, ApiUser(user): ApiUser) -> Json<Value> {
    Json(setting_object(&state, &user))
}

/// `PATCH /api/setting` with any of the fields of `GET /api/setting`.
#[utoipa::path(
    patch,
    path = "/api/setting",
    tag = "account",
    summary = "Change settings",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn update_setting(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = super::json_object(&body)?;
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match body.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_request(format!("Invalid {k}"))),
        }
    };
    let update = accounts::SettingsUpdate {
        alias_generator: text("alias_generator")?,
        sender_format: text("sender_format")?,
        random_alias_suffix: text("random_alias_suffix")?,
        notification: match body.get("notification") {
            None => None,
            Some(v) => Some(
                v.as_bool()
                    .ok_or_else(|| ApiError::bad_request("Invalid notification"))?,
            ),
        },
        default_alias_domain: text("random_alias_default_domain")?,
        block_behaviour: text("block_behaviour")?,
        dmarc_quarantine: text("dmarc_quarantine")?,
        spam_threshold: match body.get("spam_threshold") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(v) => Some(Some(
                v.as_f64()
                    .and_then(accounts::parse_spam_threshold)
                    .ok_or_else(|| ApiError::bad_request("Invalid spam_threshold"))?,
            )),
        },
    };
    let user =
        accounts::update_settings(state.ctx.db(), state.ctx.settings(), user, update).await?;
    Ok(Json(setting_object(&state, &user)))
}

/// `GET|POST /api/aliases?page_id=N` (deprecated v1 list), body `{"query"}`.
#[utoipa::path(
    get,
    path = "/api/aliases",
    tag = "aliases",
    summary = "A page of aliases (deprecated v1 shape)",
    params(("page_id" = u64, Query, description = "Page, from 0")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn aliases_v1(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let page = super::page_id(&params)?;
    let query = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string));
    let db = state.ctx.db();
    let aliases = postern_domain::listing::alias_page(
        db,
        user.id,
        page,
        postern_domain::listing::AliasFilter::All,
        query.as_deref(),
    )
    .await?;
    let ids: Vec<i64> = aliases.iter().map(|a| a.id).collect();
    let stats = postern_domain::listing::alias_stats(db, &ids).await?;
    let list: Vec<Value> = aliases
        .iter()
        .map(|a| {
            let s = stats.get(&a.id).cloned().unwrap_or_default();
            json!({
                "id": a.id,
                "email": a.email,
                "creation_date": super::serialize::date(&a.created_at),
                "creation_timestamp": a.created_at.timestamp(),
                "enabled": a.enabled,
                "note": a.note,
                "nb_forward": s.forwards,
                "nb_block": s.blocks,
                "nb_reply": s.replies,
            })
        })
        .collect();
    Ok(Json(json!({"aliases": list})))
}

/// `PATCH /api/custom_domains/:id` and `GET …/trash`: custom domains do not exist yet, so
/// every id is unknown.
#[utoipa::path(
    patch,
    path = "/api/custom_domains/{custom_domain_id}",
    tag = "domains",
    summary = "Change a custom domain (none exist yet)",
    params(("custom_domain_id" = i64, Path, description = "Domain id")),
    responses((status = 403, description = "No such domain", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn custom_domain(_user: ApiUser) -> ApiError {
    ApiError::forbidden()
}

/// `DELETE /api/setting/unlink_proton_account`: Postern has no Proton sign-in to unlink.
#[utoipa::path(
    delete,
    path = "/api/setting/unlink_proton_account",
    tag = "account",
    summary = "Unlink a Proton account (never linked here)",
    responses((status = 400, description = "Nothing to unlink", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn unlink_proton(_user: ApiUser) -> ApiError {
    ApiError::bad_request("The account cannot be unlinked")
}
