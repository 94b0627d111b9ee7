//! `/api/quarantine`: the messages held back for the caller (see `postern_domain::quarantine`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

/// `GET /api/quarantine?page_id=N` → `{"quarantine": [...]}`, newest first, 20 a page.
#[utoipa::path(
    get,
    path = "/api/quarantine",
    tag = "quarantine",
    summary = "Messages held back (their sender's DMARC policy asks for quarantine)",
    params(("page_id" = u64, Query, description = "Page, from 0")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = crate::bounds::query_number(&params, "page_id", 0..=crate::bounds::MAX_PAGE, None)?;
    let held = postern_domain::quarantine::list(state.ctx.db(), user.id, page).await?;
    let items: Vec<Value> = held
        .iter()
        .map(|q| {
            json!({
                "id": q.id,
                "alias_id": q.alias_id,
                "sender": q.sender,
                "subject": q.subject,
                "reason": q.reason,
                "creation_timestamp": q.created_at.timestamp(),
            })
        })
        .collect();
    Ok(Json(json!({ "quarantine": items })))
}

/// `POST /api/quarantine/:id/release`: forwards the message now, marked, and takes it out.
#[utoipa::path(
    post,
    path = "/api/quarantine/{id}/release",
    tag = "quarantine",
    summary = "Release a held message: it is forwarded, with a warning",
    params(("id" = i64, Path, description = "Quarantine id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn release(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = crate::bounds::path_id(&id)?;
    postern_domain::quarantine::release(&state.ctx, user.id, id).await?;
    Ok(Json(json!({"released": true})))
}

/// `DELETE /api/quarantine/:id`: deletes a held message for good.
#[utoipa::path(
    delete,
    path = "/api/quarantine/{id}",
    tag = "quarantine",
    summary = "Delete a held message",
    params(("id" = i64, Path, description = "Quarantine id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = crate::bounds::path_id(&id)?;
    postern_domain::quarantine::delete(state.ctx.db(), user.id, id).await?;
    Ok(Json(json!({"deleted": true})))
}
