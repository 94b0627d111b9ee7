//! Read endpoints for features that have no data yet (notifications, custom domains) and the
//! domain list and exports.

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

/// `GET /api/notifications?page=N`: Postern tells owners by email, so the list is empty.
#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "account",
    summary = "Notifications (owners are told by email; always empty)",
    params(("page" = u64, Query, description = "Page, from 0")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn notifications(
    _user: ApiUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    params
        .get("page")
        .and_then(|p| p.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("page must be provided in request query"))?;
    Ok(Json(json!({"more": false, "notifications": []})))
}

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
        .flow
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
        .flow
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
    let aliases: Vec<Value> = accounts::list_aliases(state.flow.db(), user.id)
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
    let db = state.flow.db();
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
