use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use postern_domain::{EmailAddress, accounts, listing};
use serde_json::{Value, json};

use super::serialize;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

/// `GET /api/aliases/:id/contacts?page_id=N`.
#[utoipa::path(
    get,
    path = "/api/aliases/{alias_id}/contacts",
    tag = "contacts",
    summary = "A page of an alias's contacts",
    params(("alias_id" = i64, Path, description = "Alias id"), ("page_id" = u64, Query, description = "Page, from 0")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let page = super::page_id(&params)?;
    let db = state.ctx.db();
    let alias = super::owned_alias(db, user.id, alias_id).await?;
    let contacts: Vec<Value> = listing::contact_page(db, alias.id, page)
        .await?
        .iter()
        .map(|(c, last)| serialize::contact(c, last.as_ref(), false))
        .collect();
    Ok(Json(json!({ "contacts": contacts })))
}

/// `POST /api/aliases/:id/contacts` `{"contact": "Name <addr>"}`: the reverse alias to write to
/// someone who never wrote first. 201 when new, 200 with `existed: true` otherwise.
#[utoipa::path(
    post,
    path = "/api/aliases/{alias_id}/contacts",
    tag = "contacts",
    summary = "Get a reverse alias to write to someone first",
    params(("alias_id" = i64, Path, description = "Alias id")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success", body = crate::openapi::Contact), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(alias_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let alias_id = super::parse_id(&alias_id)?;
    let body = super::json_object(&body)?;
    let raw = body
        .get("contact")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (contact, existed) = reverse_alias_for(&state, user.id, alias_id, raw).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(serialize::contact(&contact, None, existed))))
}

/// The contact (and so the reverse alias) for writing from alias `alias_id` to `raw`
/// (`Name <address>` or an address), created unless it exists; `true` when it existed.
pub(crate) async fn reverse_alias_for(
    state: &AppState,
    user_id: i64,
    alias_id: i64,
    raw: &str,
) -> Result<(postern_entity::contact::Model, bool), ApiError> {
    // New contacts are new people the account can write to: bounded, so an account
    // cannot be used as a spam relay.
    state.limit(
        &format!("contacts:{user_id}"),
        state.ctx.settings().limits.contacts_per_user_per_hour,
        crate::limit::HOUR,
    )?;
    let db = state.ctx.db();
    let alias = super::owned_alias(db, user_id, alias_id).await?;
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "Empty address is not a valid email address",
        ));
    }
    let (name, address) = split_name_addr(raw);
    let invalid = || ApiError::bad_request(format!("{address} is not a valid email address"));
    let address = EmailAddress::parse(address).map_err(|_| invalid())?;
    if accounts::is_our_domain(state.ctx.settings(), address.domain()) {
        return Err(invalid());
    }
    if let Some(existing) = accounts::find_contact(db, alias.id, address.as_str()).await? {
        return Ok((existing, true));
    }
    let txn = postern_domain::db::begin_write(db).await?;
    let contact = accounts::get_or_create_contact(
        &txn,
        state.ctx.settings(),
        state.ctx.reverse_alias_key(),
        &alias,
        address.as_str(),
        name,
    )
    .await?;
    txn.commit()
        .await
        .map_err(postern_domain::DomainError::from)?;
    Ok((contact, false))
}

/// `First Last <first@example.com>` → (`Some("First Last")`, `first@example.com`).
fn split_name_addr(raw: &str) -> (Option<&str>, &str) {
    match (raw.rfind('<'), raw.ends_with('>')) {
        (Some(open), true) => {
            let name = raw[..open].trim().trim_matches('"').trim();
            (
                (!name.is_empty()).then_some(name),
                &raw[open + 1..raw.len() - 1],
            )
        }
        _ => (None, raw),
    }
}

/// `DELETE /api/contacts/:id` → `{"deleted": true}`.
#[utoipa::path(
    delete,
    path = "/api/contacts/{contact_id}",
    tag = "contacts",
    summary = "Delete a contact",
    params(("contact_id" = i64, Path, description = "Contact id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(contact_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let contact_id = super::parse_id(&contact_id)?;
    let db = state.ctx.db();
    let contact = accounts::user_contact(db, user.id, contact_id)
        .await?
        .ok_or_else(ApiError::forbidden)?;
    accounts::delete_contact(db, contact).await?;
    Ok(Json(json!({ "deleted": true })))
}

/// `POST /api/contacts/:id/toggle` → `{"block_forward": <new state>}`.
#[utoipa::path(
    post,
    path = "/api/contacts/{contact_id}/toggle",
    tag = "contacts",
    summary = "Block or unblock a contact",
    params(("contact_id" = i64, Path, description = "Contact id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn toggle(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(contact_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let contact_id = super::parse_id(&contact_id)?;
    let contact = toggle_block(&state, user.id, contact_id).await?;
    Ok(Json(json!({ "block_forward": contact.blocked })))
}

/// Blocks the user's contact `contact_id`, or unblocks it.
pub(crate) async fn toggle_block(
    state: &AppState,
    user_id: i64,
    contact_id: i64,
) -> Result<postern_entity::contact::Model, ApiError> {
    let db = state.ctx.db();
    let contact = accounts::user_contact(db, user_id, contact_id)
        .await?
        .ok_or_else(ApiError::forbidden)?;
    Ok(accounts::toggle_contact_block(db, contact).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_and_address() {
        assert_eq!(
            super::split_name_addr("First Last <a@b.test>"),
            (Some("First Last"), "a@b.test")
        );
        assert_eq!(
            super::split_name_addr("\"Q\" <a@b.test>"),
            (Some("Q"), "a@b.test")
        );
        assert_eq!(super::split_name_addr("<a@b.test>"), (None, "a@b.test"));
        assert_eq!(super::split_name_addr("a@b.test"), (None, "a@b.test"));
    }
}
