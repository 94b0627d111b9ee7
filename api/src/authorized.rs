//! `/api/mailboxes/:id/authorized_addresses`: addresses allowed to send as a mailbox through
//! reverse aliases (SimpleLogin keeps these in its dashboard). Adding one lets that address
//! write as the user, so it needs sudo; listing and removing do not.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use postern_domain::{EmailAddress, accounts};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;

async fn mailbox_of(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<postern_entity::mailbox::Model, ApiError> {
    let id = crate::bounds::path_id(id)?;
    accounts::user_mailbox(state.ctx.db(), caller.user.id, id)
        .await?
        .ok_or_else(ApiError::forbidden)
}

fn item(a: &postern_entity::authorized_address::Model) -> Value {
    json!({"id": a.id, "email": a.email, "creation_timestamp": a.created_at.timestamp()})
}

/// `GET /api/mailboxes/:id/authorized_addresses` → `{"authorized_addresses": [...]}`.
#[utoipa::path(
    get,
    path = "/api/mailboxes/{id}/authorized_addresses",
    tag = "mailboxes",
    summary = "Addresses allowed to send as this mailbox through reverse aliases",
    params(("id" = i64, Path, description = "Mailbox id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = mailbox_of(&state, &caller, &id).await?;
    let rows = accounts::list_authorized(state.ctx.db(), &m).await?;
    Ok(Json(
        json!({"authorized_addresses": rows.iter().map(item).collect::<Vec<_>>()}),
    ))
}

/// `POST /api/mailboxes/:id/authorized_addresses` `{"email"}` (sudo) → 201 the address.
#[utoipa::path(
    post,
    path = "/api/mailboxes/{id}/authorized_addresses",
    tag = "mailboxes",
    summary = "Allow an address to send as this mailbox (needs sudo)",
    params(("id" = i64, Path, description = "Mailbox id")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_sudo()?;
    let m = mailbox_of(&state, &caller, &id).await?;
    let body = crate::simplelogin::json_object(&body)?;
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("email is required"))?;
    let email = EmailAddress::parse(email)
        .map_err(|_| ApiError::bad_request(format!("{email} is not an email address")))?;
    let saved =
        accounts::authorize_address(state.ctx.db(), state.ctx.settings(), &m, &email).await?;
    Ok((StatusCode::CREATED, Json(item(&saved))))
}

/// `DELETE /api/mailboxes/:id/authorized_addresses/:address_id` → `{"deleted": true}`.
#[utoipa::path(
    delete,
    path = "/api/mailboxes/{id}/authorized_addresses/{address_id}",
    tag = "mailboxes",
    summary = "Stop an address from sending as this mailbox",
    params(("id" = i64, Path, description = "Mailbox id"), ("address_id" = i64, Path, description = "Authorised address id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, address_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let m = mailbox_of(&state, &caller, &id).await?;
    let address_id = crate::bounds::path_id(&address_id)?;
    if accounts::unauthorize_address(state.ctx.db(), &m, address_id).await? {
        Ok(Json(json!({"deleted": true})))
    } else {
        Err(ApiError::forbidden())
    }
}
