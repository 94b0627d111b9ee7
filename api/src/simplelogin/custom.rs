//! Custom aliases: the server offers signed suffixes, the client picks a prefix.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use postern_domain::accounts::{self, NewAliasAddress};
use postern_domain::{DomainError, EmailAddress, suffix};
use postern_entity::user;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::serialize;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiUser;

#[derive(Deserialize)]
pub struct HostQuery {
    hostname: Option<String>,
}

/// `(suffix, signed_suffix)` for each alias domain, the user's default domain first.
pub(crate) fn suffixes(state: &AppState, user: &user::Model) -> Vec<(String, String)> {
    let now = chrono::Utc::now().timestamp();
    let settings = state.ctx.settings();
    let first = accounts::alias_domain_for(settings, user);
    let mut domains: Vec<&String> = settings.mail.alias_domains.iter().collect();
    domains.sort_by_key(|d| **d != first);
    domains
        .into_iter()
        .map(|d| {
            let s = accounts::random_suffix(d, &user.random_alias_suffix);
            let signed = suffix::sign(&state.suffix_key, &s, now);
            (s, signed)
        })
        .collect()
}

async fn can_create(state: &AppState, user: &user::Model) -> Result<bool, ApiError> {
    let Some(quota) = user.alias_quota else {
        return Ok(true);
    };
    let stats = postern_domain::listing::user_stats(state.ctx.db(), user.id).await?;
    Ok(stats.aliases < i64::from(quota))
}

/// The options body; the versions differ only in how a suffix is written.
async fn options(
    state: &AppState,
    user: &user::Model,
    hostname: Option<&str>,
    suffix: impl Fn(String, String) -> Value,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = suffixes(state, user)
        .into_iter()
        .map(|(s, signed)| suffix(s, signed))
        .collect();
    Ok(Json(json!({
        "can_create": can_create(state, user).await?,
        "prefix_suggestion": hostname.and_then(accounts::site_label).unwrap_or_default(),
        "suffixes": list,
    })))
}

/// `GET /api/v5/alias/options[?hostname=…]`.
#[utoipa::path(
    get,
    path = "/api/v5/alias/options",
    tag = "aliases",
    summary = "Signed suffixes for a custom alias",
    params(("hostname" = Option<String>, Query, description = "The site, for a prefix suggestion")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn options_v5(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(q): Query<HostQuery>,
) -> Result<Json<Value>, ApiError> {
    options(&state, &user, q.hostname.as_deref(), |s, signed| {
        json!({"suffix": s, "signed_suffix": signed, "is_custom": false, "is_premium": false})
    })
    .await
}

/// `GET /api/v4/alias/options` (legacy): suffixes as `[suffix, signed_suffix]` pairs.
#[utoipa::path(
    get,
    path = "/api/v4/alias/options",
    tag = "aliases",
    summary = "Signed suffixes (legacy pairs)",
    params(("hostname" = Option<String>, Query, description = "The site")),
    responses((status = 200, description = "Success"), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn options_v4(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(q): Query<HostQuery>,
) -> Result<Json<Value>, ApiError> {
    options(&state, &user, q.hostname.as_deref(), |s, signed| {
        json!([s, signed])
    })
    .await
}

/// `POST /api/v3/alias/custom/new`
/// `{"alias_prefix", "signed_suffix", "mailbox_ids", "note"?, "name"?}`.
#[utoipa::path(
    post,
    path = "/api/v3/alias/custom/new",
    tag = "aliases",
    summary = "Create a custom alias from a prefix and a signed suffix",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success", body = crate::openapi::Alias), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn new_v3(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    quota(&state, &user).await?;
    let body = super::json_object(&body)?;
    let (Some(prefix), Some(signed)) = (
        body.get("alias_prefix").and_then(Value::as_str),
        body.get("signed_suffix").and_then(Value::as_str),
    ) else {
        return Err(ApiError::bad_request(
            "request body does not follow the required format",
        ));
    };
    let prefix = custom_prefix(prefix)?;
    let ids = body
        .get("mailbox_ids")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| ApiError::bad_request("mailbox_ids must be an array of id"))?;
    let mailboxes = chosen_mailboxes(&state, &user, &ids).await?;
    let alias = create(
        &state,
        &user,
        &prefix,
        signed,
        &mailboxes,
        note_and_name(&body),
    )
    .await?;
    created(&state, alias).await
}

/// `POST /api/v2/alias/custom/new` (legacy) `{"alias_prefix", "signed_suffix", "note"?}`:
/// to the default mailbox.
#[utoipa::path(
    post,
    path = "/api/v2/alias/custom/new",
    tag = "aliases",
    summary = "Create a custom alias (legacy, default mailbox)",
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 201, description = "Success", body = crate::openapi::Alias), (status = "4XX", description = "An error", body = crate::openapi::ErrorBody)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn new_v2(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    quota(&state, &user).await?;
    let body = super::json_object(&body)?;
    let prefix = body
        .get("alias_prefix")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("invalid value for alias_prefix"))?;
    let signed = body
        .get("signed_suffix")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("invalid value for signed_suffix"))?;
    let prefix = clean_prefix(prefix);
    if prefix.is_empty() {
        return Err(ApiError::bad_request("invalid value for alias_prefix"));
    }
    let alias = create(&state, &user, &prefix, signed, &[], note_and_name(&body)).await?;
    created(&state, alias).await
}

pub(crate) async fn quota(state: &AppState, user: &user::Model) -> Result<(), ApiError> {
    if can_create(state, user).await? {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "You have reached the limitation of your account with the maximum of {} aliases",
            user.alias_quota.unwrap_or(0)
        )))
    }
}

/// Lowercase, no spaces, `[a-z0-9_.-]` only (others become `_`), at most 64 characters.
fn clean_prefix(prefix: &str) -> String {
    prefix
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// A custom prefix as typed (v3 and the web page): cleaned, 1 to 40 characters.
pub(crate) fn custom_prefix(raw: &str) -> Result<String, ApiError> {
    let prefix = clean_prefix(raw);
    if prefix.is_empty() || prefix.len() > 40 {
        return Err(ApiError::bad_request(
            "alias prefix invalid format or too long",
        ));
    }
    Ok(prefix)
}

/// The user's verified mailboxes with these ids; at least one.
pub(crate) async fn chosen_mailboxes(
    state: &AppState,
    user: &user::Model,
    ids: &[i64],
) -> Result<Vec<EmailAddress>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "At least one mailbox must be selected",
        ));
    }
    let owned = accounts::user_mailboxes(state.ctx.db(), user.id).await?;
    let mut mailboxes = Vec::new();
    for id in ids {
        let m = owned
            .iter()
            .find(|m| m.id == *id && m.verified)
            .ok_or_else(|| ApiError::bad_request("Errors with Mailbox"))?;
        mailboxes.push(
            EmailAddress::parse(&m.email)
                .map_err(|_| ApiError::bad_request("Errors with Mailbox"))?,
        );
    }
    Ok(mailboxes)
}

fn note_and_name(body: &Map<String, Value>) -> (Option<String>, Option<String>) {
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    (field("note"), field("name"))
}

/// `201` with the new alias as SimpleLogin serialises it.
async fn created(
    state: &AppState,
    alias: postern_entity::alias::Model,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut object = serialize::aliases(state.ctx.db(), std::slice::from_ref(&alias))
        .await?
        .pop()
        .unwrap_or_default();
    object["alias"] = json!(alias.email);
    Ok((StatusCode::CREATED, Json(object)))
}

/// Creates `prefix` + the suffix `signed` vouches for, to `mailboxes` (none: the default).
pub(crate) async fn create(
    state: &AppState,
    user: &user::Model,
    prefix: &str,
    signed: &str,
    mailboxes: &[EmailAddress],
    (note, name): (Option<String>, Option<String>),
) -> Result<postern_entity::alias::Model, ApiError> {
    state.limit_alias_creation(user.id)?;
    let suffix = suffix::verify(&state.suffix_key, signed, chrono::Utc::now().timestamp())
        .map_err(|e| match e {
            suffix::SuffixError::Expired => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            suffix::SuffixError::Tampered => ApiError::bad_request(e.to_string()),
        })?;
    let domain = suffix.rsplit('@').next().unwrap_or_default();
    if !suffix.starts_with('.')
        || !state
            .ctx
            .settings()
            .mail
            .alias_domains
            .iter()
            .any(|d| d == domain)
    {
        return Err(ApiError::bad_request("wrong alias prefix or suffix"));
    }
    let full = format!("{prefix}{suffix}");
    if full.contains("..") {
        return Err(ApiError::bad_request(
            "2 consecutive dot signs aren't allowed in an email address",
        ));
    }
    let address =
        EmailAddress::parse(&full).map_err(|_| ApiError::bad_request("Email alias is invalid"))?;
    let db = state.ctx.db();
    let txn = postern_domain::db::begin_write(db).await?;
    let created = accounts::create_alias(
        &txn,
        state.ctx.settings(),
        user,
        NewAliasAddress::Exact(address),
        mailboxes,
        note,
    )
    .await;
    let alias = match created {
        Ok(alias) => alias,
        Err(DomainError::Conflict(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("alias {full} already exists"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let alias = match name {
        Some(name) => {
            let update = accounts::AliasUpdate {
                name: Some(Some(
                    name.replace(['\r', '\n'], "").chars().take(128).collect(),
                )),
                ..Default::default()
            };
            accounts::update_alias(&txn, alias, update).await?
        }
        None => alias,
    };
    txn.commit().await.map_err(DomainError::from)?;
    Ok(alias)
}
