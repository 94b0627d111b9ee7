use axum::Json;
use axum::extract::State;
use postern_domain::listing;
use postern_entity::{mailbox, user};
use serde_json::{Value, json};

use super::serialize;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

/// `GET /api/mailboxes` (legacy): verified mailboxes only.
#[utoipa::path(
    get,
    path = "/api/mailboxes",
    tag = "mailboxes",
    summary = "Verified mailboxes (legacy)",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn verified(state: State<AppState>, user: ApiUser) -> Result<Json<Value>, ApiError> {
    mailboxes(state, user, true).await
}

/// `GET /api/v2/mailboxes`: every mailbox.
#[utoipa::path(
    get,
    path = "/api/v2/mailboxes",
    tag = "mailboxes",
    summary = "All mailboxes",
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn all(state: State<AppState>, user: ApiUser) -> Result<Json<Value>, ApiError> {
    mailboxes(state, user, false).await
}

async fn mailboxes(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    verified_only: bool,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = listing::mailboxes_with_use(state.ctx.db(), user.id)
        .await?
        .iter()
        .filter(|(m, _)| m.verified || !verified_only)
        .map(|(m, n)| serialize::mailbox(m, user.default_mailbox_id, *n))
        .collect();
    Ok(Json(json!({ "mailboxes": list })))
}

/// `POST /api/mailboxes` `{"email"}` → 201 unverified mailbox; a verification link is emailed.
/// The answer is the same whether or not another account uses the address; the email to the
/// address says which.
#[utoipa::path(
    post,
    path = "/api/mailboxes",
    tag = "mailboxes",
    summary = "Add a mailbox; a verification link is emailed to it",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success", body = crate::openapi::Mailbox), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let counted = count_mailbox_add(&state, user.id)?;
    let body = super::json_object(&body)?;
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("Invalid email"))?;
    let mailbox = add_mailbox(&state, &user, counted, email).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(serialize::mailbox(&mailbox, user.default_mailbox_id, 0)),
    ))
}

/// Proof that adding a mailbox was counted against the caller's rate limit: [`add_mailbox`]
/// takes one, so no caller can skip the count.
pub(crate) struct MailboxAddCounted(());

/// Counts one mailbox addition by `user_id`: `429` past the per-minute limit. The API counts
/// before it reads the body, so malformed requests count too.
pub(crate) fn count_mailbox_add(
    state: &AppState,
    user_id: i64,
) -> Result<MailboxAddCounted, ApiError> {
    state.per_minute(&format!("mailbox:{user_id}"), |l| l.alias_per_minute)?;
    Ok(MailboxAddCounted(()))
}

/// Adds `email` as an unverified mailbox of `user` and emails the address a verification link
/// (valid a day). When the address is already another account's mailbox, the email says it
/// cannot be added instead, and the caller is answered exactly the same: nothing about anyone
/// else is revealed. Only the caller's own duplicate is refused.
pub(crate) async fn add_mailbox(
    state: &AppState,
    user: &user::Model,
    _counted: MailboxAddCounted,
    email: &str,
) -> Result<mailbox::Model, ApiError> {
    use postern_domain::{DomainError, EmailAddress, accounts, auth};
    let email = EmailAddress::parse(email)
        .map_err(|_| ApiError::bad_request("Invalid email: This email address is not valid"))?;
    let settings = state.ctx.settings();
    if accounts::is_our_domain(settings, email.domain()) {
        return Err(ApiError::bad_request(
            "Invalid email: This email is a domain of this server",
        ));
    }
    let db = state.ctx.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let pending = match accounts::add_unverified_mailbox(&txn, settings, user, &email).await {
        Ok(m) => m,
        // The caller's own mailbox: nothing about anyone else is revealed.
        Err(DomainError::Conflict(_)) => return Err(ApiError::bad_request("Email already used")),
        Err(e) => return Err(e.into()),
    };
    let mailbox = pending.mailbox;
    let issued = if pending.taken {
        None
    } else {
        Some(
            auth::issue_token(
                &txn,
                user.id,
                &format!("mailbox:{}", mailbox.id),
                false,
                chrono::Duration::days(1),
            )
            .await?,
        )
    };
    txn.commit().await.map_err(DomainError::from)?;
    let text = match issued {
        Some(issued) => {
            let link = format!(
                "{}/mailbox/verify?token={}",
                settings.http.public_url, issued.token
            );
            format!(
                "{} asked to receive the mail of their Postern aliases at this address.\n\n\
                 If that was you, confirm it by opening this link within a day:\n{link}\n\n\
                 Otherwise ignore this email: nothing will be sent here.",
                user.email
            )
        }
        None => format!(
            "{} asked to receive the mail of their Postern aliases at this address, but it is \
             already the mailbox of a Postern account, so it cannot be added to another one. \
             Nothing was changed, and nothing will be sent here for them.",
            user.email
        ),
    };
    state
        .ctx
        .send_notice(
            user.id,
            mailbox.email.as_str(),
            "Confirm your mailbox",
            &text,
        )
        .await?;
    Ok(mailbox)
}

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /mailbox/verify?token=…`: the link in the verification email opens a page that
/// confirms with a POST (mail scanners follow links; they do not press buttons).
#[utoipa::path(
    get,
    path = "/mailbox/verify",
    tag = "mailboxes",
    summary = "The page of the emailed mailbox link (confirms with a POST)",
    params(("token" = String, Query, description = "From the email")),
    responses((status = 200, description = "A page with a confirm button"), (status = 400, description = "Not a valid link")),
)]
pub async fn verify_link(
    axum::extract::Query(q): axum::extract::Query<TokenQuery>,
) -> (axum::http::StatusCode, axum::response::Html<String>) {
    super::auth::confirm_page(
        "/mailbox/verify",
        q.token.as_deref(),
        "Confirm that this address receives the mail of your Postern aliases.",
    )
}

/// `POST /mailbox/verify` (form `token=…`): verifies the mailbox of the emailed link.
#[utoipa::path(
    post,
    path = "/mailbox/verify",
    tag = "mailboxes",
    summary = "Verify a mailbox with the emailed link",
    responses((status = 200, description = "Verified"), (status = 400, description = "Invalid or expired link")),
)]
pub async fn verify_confirm(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, axum::response::Html<String>), ApiError> {
    use axum::http::StatusCode;
    use postern_domain::{DomainError, accounts, auth};
    let db = state.ctx.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let mut outcome = None;
    if let Some(token) = super::auth::form_token(&body)
        && let Some((user_id, purpose)) =
            auth::redeem_token_with_purpose(&txn, "mailbox:", &token).await?
        && let Some(id) = purpose
            .strip_prefix("mailbox:")
            .and_then(|i| i.parse().ok())
        && let Some(m) = accounts::user_mailbox(&txn, user_id, id).await?
    {
        outcome = Some(accounts::verify_mailbox(&txn, m).await);
    }
    let (status, text) = match outcome {
        Some(Ok(_)) => {
            txn.commit().await.map_err(DomainError::from)?;
            (StatusCode::OK, "Your mailbox is confirmed.")
        }
        Some(Err(DomainError::Conflict(_))) => (
            StatusCode::CONFLICT,
            "This address became the mailbox of another Postern account first; it cannot be \
             added to this one.",
        ),
        Some(Err(e)) => return Err(e.into()),
        None => (
            StatusCode::BAD_REQUEST,
            "This link is invalid or has expired.",
        ),
    };
    Ok((
        status,
        axum::response::Html(format!(
            "<!doctype html><meta charset=utf-8><title>Postern</title><p>{text}</p>"
        )),
    ))
}

/// `PUT /api/mailboxes/:id` `{"default": true}` → `{"updated": true}`.
#[utoipa::path(
    put,
    path = "/api/mailboxes/{id}",
    tag = "mailboxes",
    summary = "Make a mailbox the default",
    params(("id" = i64, Path, description = "Mailbox id")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    use postern_domain::accounts;
    let id = super::parse_id(&id)?;
    let db = state.ctx.db();
    let mailbox = owned_mailbox(db, user.id, id).await?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        super::json_object(&body)?
    };
    if body.get("email").is_some() {
        return Err(ApiError::bad_request(
            "Changing a mailbox's address is not supported: add the new address as a mailbox",
        ));
    }
    if body.get("default").and_then(Value::as_bool) == Some(true) {
        accounts::set_default_mailbox(db, user, &mailbox).await?;
    }
    // Forwarding stopped after repeated bounces resumes when the owner says the mailbox works.
    match body.get("disabled") {
        None => {}
        Some(Value::Bool(disabled)) => {
            accounts::set_mailbox_disabled(db, &mailbox, *disabled).await?;
        }
        Some(_) => return Err(ApiError::bad_request("disabled must be true or false")),
    }
    Ok(Json(json!({"updated": true})))
}

/// `DELETE /api/mailboxes/:id` `{"transfer_aliases_to": id | -1}` → `{"deleted": true}`.
#[utoipa::path(
    delete,
    path = "/api/mailboxes/{id}",
    tag = "mailboxes",
    summary = "Delete a mailbox, moving its aliases",
    params(("id" = i64, Path, description = "Mailbox id")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = super::parse_id(&id)?;
    let transfer = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("transfer_aliases_to").and_then(Value::as_i64))
        .filter(|id| *id >= 0);
    delete_mailbox(&state, &user, id, transfer).await?;
    Ok(Json(json!({"deleted": true})))
}

/// One of the caller's mailboxes by id; another user's answers exactly like a missing one
/// (`403 Forbidden`), so ids cannot be probed.
pub(crate) async fn owned_mailbox(
    db: &impl sea_orm::ConnectionTrait,
    user_id: i64,
    id: i64,
) -> Result<mailbox::Model, ApiError> {
    postern_domain::accounts::user_mailbox(db, user_id, id)
        .await?
        .ok_or_else(ApiError::forbidden)
}

/// Deletes one of `user`'s mailboxes (never the default one). Its aliases move to
/// `transfer_to`, another of the user's verified mailboxes; without one, the aliases that
/// forwarded only to it are deleted for good (those with another mailbox keep that one).
pub(crate) async fn delete_mailbox(
    state: &AppState,
    user: &user::Model,
    id: i64,
    transfer_to: Option<i64>,
) -> Result<(), ApiError> {
    use postern_domain::{DomainError, accounts};
    let db = state.ctx.db();
    let mailbox = owned_mailbox(db, user.id, id).await?;
    let txn = postern_domain::db::begin_write(db).await?;
    accounts::delete_mailbox(&txn, user, mailbox, transfer_to).await?;
    txn.commit().await.map_err(DomainError::from)?;
    Ok(())
}
