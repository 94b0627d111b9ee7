use axum::Json;
use serde_json::{Value, json};

use crate::extract::ApiUser;

/// `GET /api/user_info`: clients call it to check a key.
pub async fn user_info(ApiUser(user): ApiUser) -> Json<Value> {
    Json(json!({
        "name": user.name.clone().unwrap_or_default(),
        // No plans here: a user without an alias quota has everything.
        "is_premium": user.alias_quota.is_none(),
        "email": user.email,
        "in_trial": false,
        "trial_end_timestamp": null,
        "max_alias_free_plan": user.alias_quota.unwrap_or(0),
        "connected_proton_address": null,
        "can_create_reverse_alias": true,
        "profile_picture_url": null,
    }))
}

/// `GET /api/stats`.
pub async fn stats(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, crate::error::ApiError> {
    let s = postern_domain::listing::user_stats(state.flow.db(), user.id).await?;
    Ok(Json(json!({
        "nb_alias": s.aliases,
        "nb_forward": s.forwards,
        "nb_reply": s.replies,
        "nb_block": s.blocks,
    })))
}
