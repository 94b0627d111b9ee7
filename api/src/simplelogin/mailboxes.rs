use axum::Json;
use axum::extract::State;
use postern_domain::listing;
use serde_json::{Value, json};

use super::serialize;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

/// `GET /api/mailboxes` (legacy): verified mailboxes only.
pub async fn verified(state: State<AppState>, user: ApiUser) -> Result<Json<Value>, ApiError> {
    mailboxes(state, user, true).await
}

/// `GET /api/v2/mailboxes`: every mailbox.
pub async fn all(state: State<AppState>, user: ApiUser) -> Result<Json<Value>, ApiError> {
    mailboxes(state, user, false).await
}

async fn mailboxes(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    verified_only: bool,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = listing::mailboxes_with_use(state.flow.db(), user.id)
        .await?
        .iter()
        .filter(|(m, _)| m.verified || !verified_only)
        .map(|(m, n)| serialize::mailbox(m, user.default_mailbox_id, *n))
        .collect();
    Ok(Json(json!({ "mailboxes": list })))
}
