use axum::Json;
use serde_json::{Value, json};

use crate::extract::ApiUser;

/// `GET /api/user_info`: clients call it to check a key.
#[utoipa::path(
    get,
    path = "/api/user_info",
    tag = "account",
    summary = "The user of the API key",
    responses((status = 200, description = "Success", body = crate::openapi::UserInfo), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn user_info(ApiUser(user): ApiUser) -> Json<Value> {
    Json(user_object(&user))
}

/// `PATCH /api/user_info` `{name}` → the user-info object.
#[utoipa::path(
    patch,
    path = "/api/user_info",
    tag = "account",
    summary = "Change the display name",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success", body = crate::openapi::UserInfo), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn update_user_info(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    ApiUser(user): ApiUser,
    body: axum::body::Bytes,
) -> Result<Json<Value>, crate::error::ApiError> {
    use sea_orm::{ActiveModelTrait, Set};
    let body = super::json_object(&body)?;
    let mut active: postern_entity::user::ActiveModel = user.into();
    if let Some(name) = body.get("name") {
        let name = match name {
            Value::Null => None,
            Value::String(s) => Some(
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(128)
                    .collect::<String>(),
            ),
            _ => return Err(crate::error::ApiError::bad_request("name must be a string")),
        };
        active.name = Set(name);
    }
    if body.get("profile_picture").is_some_and(|p| !p.is_null()) {
        return Err(crate::error::ApiError::bad_request(
            "Unsupported image format",
        ));
    }
    let user = active
        .update(state.ctx.db())
        .await
        .map_err(postern_domain::DomainError::from)?;
    Ok(Json(user_object(&user)))
}

fn user_object(user: &postern_entity::user::Model) -> Value {
    json!({
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
    })
}

/// `GET /api/stats`.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "account",
    summary = "Totals of aliases and activity",
    responses((status = 200, description = "Success", body = crate::openapi::Stats), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn stats(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    ApiUser(user): ApiUser,
) -> Result<Json<Value>, crate::error::ApiError> {
    let s = postern_domain::listing::user_stats(state.ctx.db(), user.id).await?;
    Ok(Json(json!({
        "nb_alias": s.aliases,
        "nb_forward": s.forwards,
        "nb_reply": s.replies,
        "nb_block": s.blocks,
    })))
}
