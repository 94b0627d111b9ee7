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
    let address = match (
        query.hostname.as_deref().filter(|h| !h.trim().is_empty()),
        query.mode.as_deref(),
    ) {
        (Some(host), _) if accounts::site_label(host).is_some() => {
            NewAliasAddress::Website(host.to_string())
        }
        (_, None | Some("word")) => NewAliasAddress::RandomWords,
        (_, Some("uuid")) => NewAliasAddress::RandomUuid,
        (_, Some(other)) => {
            return Err(ApiError::bad_request(format!(
                "{other} must be either word or uuid"
            )));
        }
    };
    let db = state.flow.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let alias =
        accounts::create_alias(&txn, state.flow.settings(), &user, address, &[], note).await?;
    txn.commit()
        .await
        .map_err(postern_domain::DomainError::from)?;
    let mut object = serialize::aliases(db, std::slice::from_ref(&alias))
        .await?
        .pop()
        .unwrap_or_default();
    object["alias"] = json!(alias.email);
    Ok((StatusCode::CREATED, Json(object)))
}

/// `GET|POST /api/v2/aliases?page_id=N[&pinned|&disabled|&enabled]`, body `{"query": …}`.
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let page = params
        .get("page_id")
        .and_then(|p| p.trim().parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("page_id must be provided in request query"))?;
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
    let db = state.flow.db();
    let page = listing::alias_page(db, user.id, page, filter, query.as_deref()).await?;
    Ok(Json(
        json!({ "aliases": serialize::aliases(db, &page).await? }),
    ))
}

/// `GET /api/aliases/:id`.
pub async fn get_one(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let db = state.flow.db();
    let alias = accounts::user_alias(db, user.id, alias_id)
        .await?
        .ok_or_else(ApiError::forbidden)?;
    let object = serialize::aliases(db, std::slice::from_ref(&alias))
        .await?
        .pop()
        .unwrap_or_default();
    Ok(Json(object))
}

/// `POST /api/aliases/:id/toggle` → `{"enabled": <new state>}`.
pub async fn toggle(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let db = state.flow.db();
    let alias = accounts::user_alias(db, user.id, alias_id)
        .await?
        .ok_or_else(ApiError::forbidden)?;
    let alias = accounts::toggle_alias(db, alias).await?;
    Ok(Json(json!({ "enabled": alias.enabled })))
}
