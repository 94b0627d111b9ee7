//! What came in for the user to look at: the quarantine (messages held back, to release or
//! delete) and the notifications, with the recent bounces. The same per-user steps as
//! `/api/quarantine`, `/api/notifications` and `/api/bounces`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use postern_domain::accounts;
use postern_domain::flow::{bounce, notice};

use super::mailboxes::shown;
use super::{CsrfForm, Nav, WebError, WebUser, back_to, path_id, render, when};
use crate::AppState;
use crate::bounds::{MAX_PAGE, query_number};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/quarantine", get(quarantine))
        .route("/quarantine/{id}/release", post(release))
        .route("/quarantine/{id}/delete", post(delete))
        .route("/notifications", get(notifications))
        .route("/notifications/{id}/read", post(mark_read))
}

/// Items per page of the quarantine (the domain's page size).
const QUARANTINE_PAGE: usize = 20;

/// `?page=N&done=…`: the page, and what just happened (only known values are shown).
fn page_and_done(
    params: &HashMap<String, String>,
    known: &[(&str, &'static str)],
) -> Result<(u64, Option<&'static str>), WebError> {
    let page = query_number(params, "page", 0..=MAX_PAGE, Some(0))?;
    let done = params
        .get("done")
        .and_then(|d| known.iter().find(|(k, _)| k == d))
        .map(|(_, text)| *text);
    Ok((page, done))
}

/// The addresses of the user's aliases among `ids`; a deleted alias has none.
async fn alias_addresses(
    state: &AppState,
    user_id: i64,
    ids: Vec<i64>,
) -> Result<HashMap<i64, String>, WebError> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        if let Some(a) = accounts::user_alias(state.ctx.db(), user_id, id).await? {
            out.insert(id, a.email);
        }
    }
    Ok(out)
}

fn alias_label(addresses: &HashMap<i64, String>, id: Option<i64>) -> String {
    match id {
        Some(id) => addresses
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "(a deleted alias)".into()),
        None => String::new(),
    }
}

const QUARANTINE_DONE: &[(&str, &str)] = &[
    (
        "released",
        "Message released: it is on its way to the alias's mailboxes.",
    ),
    ("deleted", "Message deleted."),
];

struct HeldRow {
    id: i64,
    when: String,
    alias: String,
    sender: String,
    subject: String,
    reason: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct QuarantinePage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    items: Vec<HeldRow>,
    keep_days: u64,
    page: u64,
    more: bool,
    done: Option<&'static str>,
    error: Option<&'a str>,
}

async fn quarantine_page(
    state: &AppState,
    user: &WebUser,
    page: u64,
    done: Option<&'static str>,
    error: Option<(StatusCode, String)>,
) -> Result<Response, WebError> {
    let held = postern_domain::quarantine::list(state.ctx.db(), user.id(), page).await?;
    let aliases =
        alias_addresses(state, user.id(), held.iter().map(|q| q.alias_id).collect()).await?;
    let keep = state.ctx.settings().retention.quarantine;
    let keep_for = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
    let more = held.len() >= QUARANTINE_PAGE;
    let items = held
        .into_iter()
        .map(|q| HeldRow {
            id: q.id,
            when: when(q.created_at),
            alias: alias_label(&aliases, Some(q.alias_id)),
            subject: q
                .subject
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "(no subject)".into()),
            sender: q.sender,
            reason: q.reason,
            expires: when(q.created_at + keep_for),
        })
        .collect();
    let (status, message) = match &error {
        Some((status, message)) => (*status, Some(message.as_str())),
        None => (StatusCode::OK, None),
    };
    let page = render(&QuarantinePage {
        nav: Some(user.nav("quarantine")),
        csrf: &user.csrf,
        items,
        keep_days: keep.as_secs() / 86_400,
        page,
        more,
        done,
        error: message,
    });
    Ok((status, page).into_response())
}

async fn quarantine(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let (page, done) = page_and_done(&params, QUARANTINE_DONE)?;
    quarantine_page(&state, &user, page, done, None).await
}

/// `POST /quarantine/{id}/release`: what `POST /api/quarantine/{id}/release` does.
async fn release(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = path_id(&id)?;
    match postern_domain::quarantine::release(&state.ctx, user.id(), id).await {
        Ok(()) => Ok(back_to("/quarantine?done=released")),
        Err(e) => quarantine_page(&state, &user, 0, None, Some(shown(e.into())?)).await,
    }
}

/// `POST /quarantine/{id}/delete`: what `DELETE /api/quarantine/{id}` does.
async fn delete(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = path_id(&id)?;
    postern_domain::quarantine::delete(state.ctx.db(), user.id(), id).await?;
    Ok(back_to("/quarantine?done=deleted"))
}

struct NoticeRow {
    id: i64,
    title: String,
    lines: Vec<String>,
    when: String,
    read: bool,
}

struct BounceRow {
    when: String,
    alias: String,
    recipient: String,
    kind: &'static str,
    said: String,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    items: Vec<NoticeRow>,
    page: u64,
    more: bool,
    bounces: Vec<BounceRow>,
    done: Option<&'static str>,
}

/// What a bounce's class and phase mean, in words.
fn bounce_kind(class: &str, phase: &str) -> &'static str {
    match (class, phase) {
        ("complaint", _) => "Reported as spam",
        ("soft", "reply") => "Temporary failure (reply)",
        ("soft", _) => "Temporary failure",
        (_, "reply") => "Refused (reply)",
        _ => "Refused",
    }
}

async fn notifications(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let (page, done) = page_and_done(&params, &[("read", "Marked as read.")])?;
    let db = state.ctx.db();
    let (rows, more) = notice::list(db, user.id(), page).await?;
    let items = rows
        .into_iter()
        .map(|n| NoticeRow {
            id: n.id,
            lines: n.message.lines().map(str::to_string).collect(),
            title: n.title,
            when: when(n.created_at),
            read: n.read,
        })
        .collect();
    // The latest bounces, with the first page only.
    let bounces = if page == 0 {
        bounce::list(db, user.id(), 0).await?
    } else {
        Vec::new()
    };
    let alias_ids = bounces.iter().filter_map(|b| b.alias_id).collect();
    let aliases = alias_addresses(&state, user.id(), alias_ids).await?;
    let bounces = bounces
        .into_iter()
        .map(|b| BounceRow {
            when: when(b.created_at),
            alias: alias_label(&aliases, b.alias_id),
            kind: bounce_kind(&b.class, &b.phase),
            said: match (b.status, b.diagnostic) {
                (Some(s), Some(d)) if d.contains(s.as_str()) => d,
                (Some(s), Some(d)) => format!("{s} {d}"),
                (Some(s), None) => s,
                (None, Some(d)) => d,
                (None, None) => String::new(),
            },
            recipient: b.rcpt,
        })
        .collect();
    Ok(render(&NotificationsPage {
        nav: Some(user.nav("notifications")),
        csrf: &user.csrf,
        items,
        page,
        more,
        bounces,
        done,
    }))
}

/// `POST /notifications/{id}/read`: what `POST /api/notifications/{id}/read` does.
async fn mark_read(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = path_id(&id)?;
    if notice::mark_read(state.ctx.db(), user.id(), id).await? {
        Ok(back_to("/notifications?done=read"))
    } else {
        Err(WebError::not_found())
    }
}
