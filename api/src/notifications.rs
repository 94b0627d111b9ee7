//! What Postern tells its users: SimpleLogin's `/api/notifications` (a real list, paged, with
//! mark-read), `/api/bounces` (what came back, with the refused message kept for a while),
//! and the pages behind the one-click links of notification emails (`/act/…`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use postern_domain::action::Action;
use postern_domain::flow::{bounce, notice};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;
use crate::openapi::escape;

/// `GET /api/notifications?page=N` → `{"more": bool, "notifications": [...]}`, newest first.
#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "account",
    summary = "Notifications: bounces, disabled mailboxes, held messages, refused replies",
    params(("page" = u64, Query, description = "Page, from 0 (20 a page)")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page = crate::bounds::query_number(&params, "page", 0..=crate::bounds::MAX_PAGE, None)?;
    let (rows, more) = notice::list(state.ctx.db(), user.id, page).await?;
    let now = chrono::Utc::now();
    let items: Vec<Value> = rows
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "title": n.title,
                // SimpleLogin's clients show it as HTML.
                "message": format!("<p>{}</p>", escape(&n.message).replace('\n', "<br>")),
                "read": n.read,
                "created_at": humanize(now - n.created_at),
            })
        })
        .collect();
    Ok(Json(json!({"more": more, "notifications": items})))
}

/// `POST /api/notifications/:id/read` → `{"done": true}`; 403 for an id that is not theirs.
#[utoipa::path(
    post,
    path = "/api/notifications/{id}/read",
    tag = "account",
    summary = "Mark a notification read",
    params(("id" = i64, Path, description = "Notification id")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn mark_read(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = crate::bounds::path_id(&id)?;
    if notice::mark_read(state.ctx.db(), user.id, id).await? {
        Ok(Json(json!({"done": true})))
    } else {
        Err(ApiError::forbidden())
    }
}

/// `GET /api/bounces?page_id=N` → `{"bounces": [...]}`, newest first.
#[utoipa::path(
    get,
    path = "/api/bounces",
    tag = "account",
    summary = "Deliveries that came back or were refused, classified (hard, soft, complaint)",
    params(("page_id" = Option<u64>, Query, description = "Page, from 0 (20 a page; default 0)")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn bounces(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let page =
        crate::bounds::query_number(&params, "page_id", 0..=crate::bounds::MAX_PAGE, Some(0))?;
    let rows = bounce::list(state.ctx.db(), user.id, page).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "alias_id": b.alias_id,
                "phase": b.phase,
                "class": b.class,
                "recipient": b.rcpt,
                "status": b.status,
                "diagnostic": b.diagnostic,
                "remote_mta": b.remote_mta,
                "counts_toward_disabling": b.counts,
                "message_kept": b.message_id.is_some(),
                "creation_timestamp": b.created_at.timestamp(),
            })
        })
        .collect();
    Ok(Json(json!({"bounces": items})))
}

/// `GET /api/bounces/:id/message`: the report as received, refused original included
/// (`message/rfc822`, as an attachment).
#[utoipa::path(
    get,
    path = "/api/bounces/{id}/message",
    tag = "account",
    summary = "The refused message a bounce carried back (kept as long as the quarantine)",
    params(("id" = i64, Path, description = "Bounce id")),
    responses((status = 200, description = "The message", content_type = "message/rfc822"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn refused_message(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = crate::bounds::path_id(&id)?;
    let raw = bounce::refused_message(state.ctx.db(), user.id, id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"bounce-{id}.eml\""),
            ),
        ],
        raw,
    )
        .into_response())
}

fn page(status: StatusCode, body: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(format!(
            "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
             <title>Postern</title><body style=\"font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em\">{body}</body>"
        )),
    )
        .into_response()
}

fn invalid() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "<p>This link is invalid or has expired.</p>",
    )
}

/// `GET /act/:token`: the page of a link in a notification email. It changes nothing (mail
/// scanners follow links): an action asks to confirm with a POST; the refused message is
/// shown as text.
#[utoipa::path(
    get,
    path = "/act/{token}",
    tag = "account",
    summary = "The page of a one-click link from a notification email",
    params(("token" = String, Path, description = "From the email")),
    responses((status = 200, description = "A page"), (status = 400, description = "Invalid or expired link")),
)]
pub async fn action_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(action) = Action::verify(state.ctx.action_key(), &token, chrono::Utc::now()) else {
        return invalid();
    };
    let db = state.ctx.db();
    if let Action::ViewBounce(id) = action {
        return match postern_domain::action::refused_message(db, id).await {
            Ok(raw) => {
                let text = String::from_utf8_lossy(&raw[..raw.len().min(256 * 1024)]);
                page(
                    StatusCode::OK,
                    &format!(
                        "<h1>The refused message</h1><pre style=\"white-space:pre-wrap\">{}</pre>",
                        escape(&text)
                    ),
                )
            }
            Err(_) => page(
                StatusCode::NOT_FOUND,
                "<p>This message is no longer kept.</p>",
            ),
        };
    }
    match postern_domain::action::describe(db, action).await {
        Ok(what) => page(
            StatusCode::OK,
            &format!(
                "<form method=post><p>{}</p><button type=submit>{}</button></form>",
                escape(&what),
                escape(action.label())
            ),
        ),
        Err(_) => page(StatusCode::NOT_FOUND, "<p>This no longer exists.</p>"),
    }
}

/// `POST /act/:token`: does what the link offers.
#[utoipa::path(
    post,
    path = "/act/{token}",
    tag = "account",
    summary = "Confirm a one-click action (disable an alias, block a sender)",
    params(("token" = String, Path, description = "From the email")),
    responses((status = 200, description = "Done"), (status = 400, description = "Invalid or expired link")),
)]
pub async fn action_confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(action) =
        Action::verify(state.ctx.action_key(), &token, chrono::Utc::now()).filter(|a| a.changes())
    else {
        return invalid();
    };
    match postern_domain::action::perform(state.ctx.db(), action).await {
        Ok(done) => page(StatusCode::OK, &format!("<p>{}</p>", escape(&done))),
        Err(_) => page(StatusCode::NOT_FOUND, "<p>This no longer exists.</p>"),
    }
}

/// SimpleLogin shows when as words ("2 minutes ago").
fn humanize(age: chrono::Duration) -> String {
    let s = age.num_seconds().max(0);
    let plural = |n: i64, unit: &str| format!("{n} {unit}s ago");
    match s {
        0..10 => "just now".into(),
        10..45 => "seconds ago".into(),
        45..90 => "a minute ago".into(),
        90..2_700 => plural((s + 30) / 60, "minute"),
        2_700..5_400 => "an hour ago".into(),
        5_400..79_200 => plural((s + 1_800) / 3_600, "hour"),
        79_200..129_600 => "a day ago".into(),
        129_600..2_592_000 => plural((s + 43_200) / 86_400, "day"),
        2_592_000..3_888_000 => "a month ago".into(),
        3_888_000..31_536_000 => plural((s + 1_296_000) / 2_592_000, "month"),
        31_536_000..47_304_000 => "a year ago".into(),
        _ => plural((s + 15_768_000) / 31_536_000, "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::humanize;
    use chrono::Duration;

    #[test]
    fn ages_read_like_simplelogin() {
        assert_eq!(humanize(Duration::seconds(3)), "just now");
        assert_eq!(humanize(Duration::seconds(60)), "a minute ago");
        assert_eq!(humanize(Duration::seconds(150)), "3 minutes ago");
        assert_eq!(humanize(Duration::hours(5)), "5 hours ago");
        assert_eq!(humanize(Duration::days(3)), "3 days ago");
        assert_eq!(humanize(Duration::days(800)), "2 years ago");
        assert_eq!(humanize(Duration::seconds(-5)), "just now");
    }
}
