//! addy.io's alias endpoints (`/api/v1`), for the password managers and tools that speak them.
//! Same aliases and keys as the SimpleLogin API; the key comes as `Authorization: Bearer`.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use postern_domain::accounts::{self, NewAliasAddress};
use postern_domain::listing::{self, AliasStats};
use postern_domain::{DomainError, EmailAddress};
use postern_entity::{alias, mailbox};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/aliases", get(list).post(create))
        .route("/aliases/{id}", get(get_one).patch(update).delete(remove))
        .route("/active-aliases", post(activate))
        .route("/active-aliases/{id}", delete(deactivate))
        .route("/account-details", get(account_details))
        .route("/domain-options", get(domain_options))
}

/// `"2019-10-01 09:00:00"`, as Laravel serialises dates.
fn date(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn object(a: &alias::Model, stats: Option<&AliasStats>, mailboxes: &[mailbox::Model]) -> Value {
    let empty = AliasStats::default();
    let stats = stats.unwrap_or(&empty);
    let (local, domain) = a.email.rsplit_once('@').unwrap_or((a.email.as_str(), ""));
    json!({
        "id": a.id.to_string(),
        "user_id": a.user_id.to_string(),
        "aliasable_id": null,
        "aliasable_type": null,
        "local_part": local,
        "extension": null,
        "domain": domain,
        "email": a.email,
        "active": a.enabled,
        "description": a.note,
        "from_name": a.name,
        "attached_recipients_only": false,
        "emails_forwarded": stats.forwards,
        "emails_blocked": stats.blocks,
        "emails_replied": stats.replies,
        "emails_sent": 0,
        "recipients": mailboxes.iter().map(|m| json!({
            "id": m.id.to_string(),
            "email": m.email,
            "email_verified_at": if m.verified { Some(date(&m.created_at)) } else { None },
        })).collect::<Vec<_>>(),
        "created_at": date(&a.created_at),
        "updated_at": date(&a.created_at),
        "deleted_at": null,
    })
}

async fn objects(state: &AppState, aliases: &[alias::Model]) -> Result<Vec<Value>, ApiError> {
    let db = state.ctx.db();
    let ids: Vec<i64> = aliases.iter().map(|a| a.id).collect();
    let stats = listing::alias_stats(db, &ids).await?;
    let mut mailboxes = listing::alias_mailboxes(db, &ids).await?;
    Ok(aliases
        .iter()
        .map(|a| {
            object(
                a,
                stats.get(&a.id),
                &mailboxes.remove(&a.id).unwrap_or_default(),
            )
        })
        .collect())
}

async fn object_of(state: &AppState, alias: &alias::Model) -> Result<Value, ApiError> {
    Ok(objects(state, std::slice::from_ref(alias))
        .await?
        .pop()
        .unwrap_or_default())
}

async fn one(state: &AppState, user_id: i64, id: &str) -> Result<alias::Model, ApiError> {
    let id = crate::bounds::path_id(id)?;
    accounts::user_alias(state.ctx.db(), user_id, id)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `POST /api/v1/aliases` `{domain, description?, format?, local_part?}` → 201 `{"data": alias}`.
#[utoipa::path(
    post,
    path = "/api/v1/aliases",
    tag = "addy.io",
    summary = "Create an alias (addy.io)",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.limit_alias_creation(user.id)?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        crate::simplelogin::json_object(&body)?
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let settings = state.ctx.settings();
    let domain = text("domain").unwrap_or_else(|| settings.default_alias_domain().to_string());
    if !settings.mail.alias_domains.contains(&domain) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The selected domain is invalid.",
        ));
    }
    let address = match text("format").as_deref().unwrap_or("random_characters") {
        "random_characters" => NewAliasAddress::RandomCharacters(Some(domain)),
        "uuid" => NewAliasAddress::RandomUuid(Some(domain)),
        "random_words" => NewAliasAddress::RandomWords(Some(domain)),
        "custom" => {
            let local = text("local_part").unwrap_or_default();
            let address =
                EmailAddress::parse(&format!("{}@{domain}", local.trim())).map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The local part format is invalid.",
                    )
                })?;
            NewAliasAddress::Exact(address)
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The selected format is invalid.",
            ));
        }
    };
    let db = state.ctx.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let alias = accounts::create_alias(&txn, settings, &user, address, &[], text("description"))
        .await
        .map_err(|e| match e {
            DomainError::Conflict(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            other => other.into(),
        })?;
    txn.commit().await.map_err(DomainError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "data": object_of(&state, &alias).await? })),
    ))
}

/// `GET /api/v1/aliases?page[number]=1&page[size]=20&filter[search]=…&filter[active]=true`.
#[utoipa::path(
    get,
    path = "/api/v1/aliases",
    tag = "addy.io",
    summary = "Aliases, paginated (addy.io)",
    params(("page[number]" = Option<u64>, Query, description = "From 1"), ("page[size]" = Option<u64>, Query, description = "Up to 100"), ("filter[search]" = Option<String>, Query, description = "Address contains"), ("filter[active]" = Option<bool>, Query, description = "Active only / inactive only")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let number = crate::bounds::query_number(
        &params,
        "page[number]",
        1..=crate::bounds::MAX_PAGE,
        Some(1),
    )?;
    let size = crate::bounds::query_number(&params, "page[size]", 1..=100, Some(20))?;
    let active = match params.get("filter[active]").map(String::as_str) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let search = params.get("filter[search]").map(String::as_str);
    let (page, total) =
        listing::alias_page_numbered(state.ctx.db(), user.id, number, size, active, search).await?;
    let last_page = total.div_ceil(size).max(1);
    let from = if page.is_empty() {
        None
    } else {
        Some((number - 1) * size + 1)
    };
    let to = from.map(|f| f + page.len() as u64 - 1);
    let link = |n: u64| format!("/api/v1/aliases?page[number]={n}&page[size]={size}");
    Ok(Json(json!({
        "data": objects(&state, &page).await?,
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": (number > 1).then(|| link(number - 1)),
            "next": (number < last_page).then(|| link(number + 1)),
        },
        "meta": {
            "current_page": number,
            "from": from,
            "last_page": last_page,
            "path": "/api/v1/aliases",
            "per_page": size,
            "to": to,
            "total": total,
        },
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases/{id}",
    tag = "addy.io",
    summary = "One alias (addy.io)",
    params(("id" = String, Path, description = "Alias id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alias = one(&state, user.id, &id).await?;
    Ok(Json(json!({ "data": object_of(&state, &alias).await? })))
}

/// `PATCH /api/v1/aliases/{id}` `{description?, from_name?}`.
#[utoipa::path(
    patch,
    path = "/api/v1/aliases/{id}",
    tag = "addy.io",
    summary = "Change description or from name (addy.io)",
    params(("id" = String, Path, description = "Alias id")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let alias = one(&state, user.id, &id).await?;
    let body = crate::simplelogin::json_object(&body)?;
    let field = |k: &str| match body.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The {k} must be a string."),
        )),
    };
    let update = accounts::AliasUpdate {
        note: field("description")?,
        name: field("from_name")?,
        ..Default::default()
    };
    let alias = accounts::update_alias(state.ctx.db(), alias, update).await?;
    Ok(Json(json!({ "data": object_of(&state, &alias).await? })))
}

/// `DELETE /api/v1/aliases/{id}` → 204; like SimpleLogin's delete, the address is never reused.
#[utoipa::path(
    delete,
    path = "/api/v1/aliases/{id}",
    tag = "addy.io",
    summary = "Delete an alias (addy.io)",
    params(("id" = String, Path, description = "Alias id")),
    responses((status = 204, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let alias = one(&state, user.id, &id).await?;
    let txn = postern_domain::db::begin_write(state.ctx.db()).await?;
    accounts::trash_alias(&txn, alias).await?;
    txn.commit().await.map_err(DomainError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/active-aliases` `{"id": …}` → `{"data": alias}`.
#[utoipa::path(
    post,
    path = "/api/v1/active-aliases",
    tag = "addy.io",
    summary = "Activate an alias (addy.io)",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn activate(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = crate::simplelogin::json_object(&body)?;
    let id = match body.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The id field is required.",
            ));
        }
    };
    let alias = one(&state, user.id, &id).await?;
    let alias = if alias.enabled {
        alias
    } else {
        accounts::toggle_alias(state.ctx.db(), alias).await?
    };
    Ok(Json(json!({ "data": object_of(&state, &alias).await? })))
}

/// `DELETE /api/v1/active-aliases/{id}` → 204.
#[utoipa::path(
    delete,
    path = "/api/v1/active-aliases/{id}",
    tag = "addy.io",
    summary = "Deactivate an alias (addy.io)",
    params(("id" = String, Path, description = "Alias id")),
    responses((status = 204, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let alias = one(&state, user.id, &id).await?;
    if alias.enabled {
        accounts::toggle_alias(state.ctx.db(), alias).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/account-details`.
#[utoipa::path(
    get,
    path = "/api/v1/account-details",
    tag = "addy.io",
    summary = "Account details (addy.io)",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn account_details(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, ApiError> {
    let stats = listing::user_stats(state.ctx.db(), user.id).await?;
    let username = user.email.split('@').next().unwrap_or_default().to_string();
    Ok(Json(json!({ "data": {
        "id": user.id.to_string(),
        "username": username,
        "from_name": user.name,
        "email_subject": null,
        "banner_location": "off",
        "bandwidth": 0,
        "username_count": 1,
        "username_limit": 1,
        "default_recipient_id": user.default_mailbox_id.map(|id| id.to_string()),
        "default_alias_domain": state.ctx.settings().default_alias_domain(),
        "default_alias_format": "random_characters",
        "subscription": null,
        "subscription_ends_at": null,
        "bandwidth_limit": 0,
        "recipient_count": postern_domain::accounts::user_mailboxes(state.ctx.db(), user.id).await?.len(),
        "active_domain_count": 0,
        "active_domain_limit": 0,
        "active_shared_domain_alias_count": stats.aliases,
        "active_shared_domain_alias_limit": user.alias_quota.unwrap_or(0),
        "total_emails_forwarded": stats.forwards,
        "total_emails_blocked": stats.blocks,
        "total_emails_replied": stats.replies,
        "total_emails_sent": 0,
        "created_at": date(&user.created_at),
        "updated_at": date(&user.created_at),
    }})))
}

/// `GET /api/v1/domain-options`.
#[utoipa::path(
    get,
    path = "/api/v1/domain-options",
    tag = "addy.io",
    summary = "Domains for new aliases (addy.io)",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub(crate) async fn domain_options(State(state): State<AppState>, _user: ApiUser) -> Json<Value> {
    let settings = state.ctx.settings();
    Json(json!({
        "data": settings.mail.alias_domains,
        "defaultAliasDomain": settings.default_alias_domain(),
        "defaultAliasFormat": "random_characters",
    }))
}
