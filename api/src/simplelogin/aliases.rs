use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use postern_domain::accounts::{self, NewAliasAddress};
use postern_domain::listing::{self, AliasFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::serialize;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

#[derive(Deserialize)]
pub struct RandomQuery {
    hostname: Option<String>,
    mode: Option<String>,
}

/// `POST /api/alias/random/new[?hostname=…][&mode=word|uuid]`, body `{"note": …}` (optional).
/// This is the request of Bitwarden's and other password managers' username generators.
#[utoipa::path(
    post,
    path = "/api/alias/random/new",
    tag = "aliases",
    summary = "Create a random alias (the password managers' request)",
    params(("hostname" = Option<String>, Query, description = "Site the alias is for"), ("mode" = Option<String>, Query, description = "word or uuid")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success", body = crate::openapi::Alias), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn random_new(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(query): Query<RandomQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // SimpleLogin parses this body leniently: a missing or non-JSON body is no note.
    let note = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("note").and_then(Value::as_str).map(str::to_string));
    let alias = create_random(
        &state,
        &user,
        query.mode.as_deref(),
        query.hostname.as_deref(),
        note,
    )
    .await?;
    let mut object = serialize::aliases(state.ctx.db(), std::slice::from_ref(&alias))
        .await?
        .pop()
        .unwrap_or_default();
    object["alias"] = json!(alias.email);
    Ok((StatusCode::CREATED, Json(object)))
}

/// A random alias: from the site's name when `hostname` gives one, else words or a UUID
/// (`mode`, or the user's setting), on the user's default domain.
pub(crate) async fn create_random(
    state: &AppState,
    user: &postern_entity::user::Model,
    mode: Option<&str>,
    hostname: Option<&str>,
    note: Option<String>,
) -> Result<postern_entity::alias::Model, ApiError> {
    state.limit_alias_creation(user.id)?;
    let domain = || Some(accounts::alias_domain_for(state.ctx.settings(), user));
    let address = match (hostname.filter(|h| !h.trim().is_empty()), mode) {
        (Some(host), _) if accounts::site_label(host).is_some() => {
            NewAliasAddress::Website(host.to_string())
        }
        (_, None) if user.alias_generator == "uuid" => NewAliasAddress::RandomUuid(domain()),
        (_, None | Some("word")) => NewAliasAddress::RandomWords(domain()),
        (_, Some("uuid")) => NewAliasAddress::RandomUuid(domain()),
        (_, Some(other)) => {
            return Err(ApiError::bad_request(format!(
                "{other} must be either word or uuid"
            )));
        }
    };
    let txn = postern_domain::db::begin_write(state.ctx.db()).await?;
    let alias =
        accounts::create_alias(&txn, state.ctx.settings(), user, address, &[], note).await?;
    txn.commit()
        .await
        .map_err(postern_domain::DomainError::from)?;
    Ok(alias)
}

/// `GET|POST /api/v2/aliases?page_id=N[&pinned|&disabled|&enabled]`, body `{"query": …}`.
#[utoipa::path(
    get,
    path = "/api/v2/aliases",
    tag = "aliases",
    summary = "A page of aliases (also POST with a query body)",
    params(("page_id" = u64, Query, description = "Page, from 0"), ("pinned" = Option<String>, Query, description = "Only pinned"), ("enabled" = Option<String>, Query, description = "Only enabled"), ("disabled" = Option<String>, Query, description = "Only disabled")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let page = super::page_id(&params)?;
    let filter = if params.contains_key("pinned") {
        AliasFilter::Pinned
    } else if params.contains_key("disabled") {
        AliasFilter::Disabled
    } else if params.contains_key("enabled") {
        AliasFilter::Enabled
    } else {
        AliasFilter::All
    };
    let query = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string));
    let db = state.ctx.db();
    let page = listing::alias_page(db, user.id, page, filter, query.as_deref()).await?;
    Ok(Json(
        json!({ "aliases": serialize::aliases(db, &page).await? }),
    ))
}

/// `GET /api/aliases/:id`.
#[utoipa::path(
    get,
    path = "/api/aliases/{alias_id}",
    tag = "aliases",
    summary = "One alias",
    params(("alias_id" = i64, Path, description = "Alias id")),
    responses((status = 200, description = "Success", body = crate::openapi::Alias), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn get_one(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let db = state.ctx.db();
    let alias = super::owned_alias(db, user.id, alias_id).await?;
    let object = serialize::aliases(db, std::slice::from_ref(&alias))
        .await?
        .pop()
        .unwrap_or_default();
    Ok(Json(object))
}

/// `POST /api/aliases/:id/toggle` → `{"enabled": <new state>}`.
#[utoipa::path(
    post,
    path = "/api/aliases/{alias_id}/toggle",
    tag = "aliases",
    summary = "Enable or disable an alias",
    params(("alias_id" = i64, Path, description = "Alias id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn toggle(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let alias = toggle_one(&state, user.id, alias_id).await?;
    Ok(Json(json!({ "enabled": alias.enabled })))
}

/// Enables the user's alias `alias_id`, or disables it.
pub(crate) async fn toggle_one(
    state: &AppState,
    user_id: i64,
    alias_id: i64,
) -> Result<postern_entity::alias::Model, ApiError> {
    let db = state.ctx.db();
    let alias = super::owned_alias(db, user_id, alias_id).await?;
    Ok(accounts::toggle_alias(db, alias).await?)
}

/// `PATCH|PUT /api/aliases/:id` with any of `note`, `name`, `pinned`, `mailbox_ids`,
/// `mailbox_id`, `disable_pgp` → `{"ok": true}`.
#[utoipa::path(
    patch,
    path = "/api/aliases/{alias_id}",
    tag = "aliases",
    summary = "Change note, name, pinned or mailboxes (also PUT)",
    params(("alias_id" = i64, Path, description = "Alias id")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let body = super::json_object(&body)?;
    let alias = super::owned_alias(state.ctx.db(), user.id, alias_id).await?;
    let mut update = accounts::AliasUpdate::default();
    if let Some(note) = body.get("note") {
        update.note = Some(optional_string(note, "note")?);
    }
    if let Some(name) = body.get("name") {
        update.name = Some(alias_name(optional_string(name, "name")?)?);
    }
    if let Some(pinned) = body.get("pinned") {
        update.pinned = Some(
            pinned
                .as_bool()
                .ok_or_else(|| ApiError::bad_request("pinned must be a boolean"))?,
        );
    }
    if let Some(ids) = body.get("mailbox_ids") {
        let ids = ids
            .as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| ApiError::bad_request("mailbox_ids must be an array of id"))?;
        update.mailbox_ids = Some(ids);
    } else if let Some(id) = body.get("mailbox_id") {
        let id = id
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("Invalid mailbox_id"))?;
        update.mailbox_ids = Some(vec![id]);
    }
    if body.get("disable_pgp").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::bad_request("disable_pgp must be a boolean"));
    }
    change(&state, alias, update).await?;
    Ok(Json(json!({ "ok": true })))
}

/// A display name for an alias: one line, at most 128 characters.
pub(crate) fn alias_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    let name = name.map(|n| n.replace(['\r', '\n'], ""));
    if name.as_ref().is_some_and(|n| n.chars().count() > 128) {
        return Err(ApiError::bad_request(
            "Name can't be longer than 128 characters",
        ));
    }
    Ok(name)
}

/// Applies `update` to an alias of the caller's.
pub(crate) async fn change(
    state: &AppState,
    alias: postern_entity::alias::Model,
    update: accounts::AliasUpdate,
) -> Result<postern_entity::alias::Model, ApiError> {
    let txn = postern_domain::db::begin_write(state.ctx.db()).await?;
    let alias = accounts::update_alias(&txn, alias, update).await?;
    txn.commit()
        .await
        .map_err(postern_domain::DomainError::from)?;
    Ok(alias)
}

fn optional_string(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::bad_request(format!("{field} must be a string"))),
    }
}

/// `DELETE /api/aliases/:id` → `{"deleted": true}`; the address can never be created again.
#[utoipa::path(
    delete,
    path = "/api/aliases/{alias_id}",
    tag = "aliases",
    summary = "Delete an alias; the address is never reused",
    params(("alias_id" = i64, Path, description = "Alias id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    trash(&state, user.id, alias_id).await?;
    Ok(Json(json!({ "deleted": true })))
}

/// Deletes the user's alias `alias_id`: to the trash, and its address is never given out
/// again.
pub(crate) async fn trash(state: &AppState, user_id: i64, alias_id: i64) -> Result<(), ApiError> {
    let db = state.ctx.db();
    let alias = super::owned_alias(db, user_id, alias_id).await?;
    let txn = postern_domain::db::begin_write(db).await?;
    accounts::trash_alias(&txn, alias).await?;
    txn.commit()
        .await
        .map_err(postern_domain::DomainError::from)?;
    Ok(())
}

/// `GET /api/aliases/:id/activities?page_id=N`.
#[utoipa::path(
    get,
    path = "/api/aliases/{alias_id}/activities",
    tag = "aliases",
    summary = "A page of an alias's activity",
    params(("alias_id" = i64, Path, description = "Alias id"), ("page_id" = u64, Query, description = "Page, from 0")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn activities(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let page = super::page_id(&params)?;
    let db = state.ctx.db();
    let alias = super::owned_alias(db, user.id, alias_id).await?;
    let rows = listing::activity_page(db, alias.id, page).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|(a, c)| {
            let contact = c.as_ref().map(|c| c.email.clone()).unwrap_or_default();
            let (action, from, to) = match a.kind.as_str() {
                "reply" => ("reply", alias.email.clone(), contact),
                "bounce" => ("bounced", contact, alias.email.clone()),
                other => (other, contact, alias.email.clone()),
            };
            json!({
                "action": action,
                "from": from,
                "to": to,
                "timestamp": a.created_at.timestamp(),
                "reverse_alias": c.as_ref().map(serialize::reverse_alias),
                "reverse_alias_address": c.as_ref().map(|c| c.reply_email.clone()),
            })
        })
        .collect();
    Ok(Json(json!({ "activities": list })))
}
