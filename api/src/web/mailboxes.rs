//! The mailboxes page: the addresses aliases forward to. Adding one emails it a verification
//! link; one can be made the default, re-enabled after bounces stopped it, or deleted with its
//! aliases moved to another. Every step is the JSON API's own (`simplelogin::mailboxes`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use postern_domain::{accounts, listing};
use serde::Deserialize;

use super::{CsrfForm, Nav, WebError, WebUser, back_to, path_id, render};
use crate::AppState;
use crate::error::ApiError;
use crate::simplelogin::mailboxes::{
    add_mailbox, count_mailbox_add, delete_mailbox, owned_mailbox,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mailboxes", get(list).post(add))
        .route("/mailboxes/{id}/default", post(make_default))
        .route("/mailboxes/{id}/enable", post(enable))
        .route("/mailboxes/{id}/delete", get(delete_page).post(delete))
}

/// A step's error to show on the page it came from, with its status; unknown-or-not-yours
/// ids and server faults get the error page instead.
pub(super) fn shown(e: ApiError) -> Result<(StatusCode, String), WebError> {
    let e = WebError::from(e);
    if e.status == StatusCode::NOT_FOUND || e.status.is_server_error() {
        Err(e)
    } else {
        Ok((e.status, e.message))
    }
}

/// `?done=…` after a change; only known values are shown, never the query's text.
#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

fn done_text(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "added" => {
            "Mailbox added. If this address can be used, a link to confirm it is on its way \
             there (valid for a day). Nothing is forwarded to it until it is confirmed."
        }
        "default" => "Default mailbox changed: new aliases forward to it.",
        "enabled" => "Forwarding to this mailbox is back on.",
        "deleted" => "Mailbox deleted.",
        _ => return None,
    })
}

struct MailboxRow {
    id: i64,
    email: String,
    verified: bool,
    default: bool,
    disabled: bool,
    aliases: i64,
}

#[derive(Template)]
#[template(path = "mailboxes.html")]
struct MailboxesPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    mailboxes: Vec<MailboxRow>,
    email: &'a str,
    done: Option<&'static str>,
    error: Option<&'a str>,
}

/// The list, with the add form holding `email`, and what just happened.
async fn list_page(
    state: &AppState,
    user: &WebUser,
    email: &str,
    done: Option<&'static str>,
    error: Option<(StatusCode, String)>,
) -> Result<Response, WebError> {
    let default_id = user.caller.user.default_mailbox_id;
    let mailboxes = listing::mailboxes_with_use(state.ctx.db(), user.id())
        .await?
        .into_iter()
        .map(|(m, aliases)| MailboxRow {
            id: m.id,
            default: Some(m.id) == default_id,
            email: m.email,
            verified: m.verified,
            disabled: m.disabled,
            aliases,
        })
        .collect();
    let (status, message) = match &error {
        Some((status, message)) => (*status, Some(message.as_str())),
        None => (StatusCode::OK, None),
    };
    let page = render(&MailboxesPage {
        nav: Some(user.nav("mailboxes")),
        csrf: &user.csrf,
        mailboxes,
        email,
        done,
        error: message,
    });
    Ok((status, page).into_response())
}

async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<DoneQuery>,
) -> Result<Response, WebError> {
    list_page(&state, &user, "", done_text(q.done.as_deref()), None).await
}

#[derive(Deserialize)]
struct AddForm {
    csrf: String,
    email: String,
}

/// `POST /mailboxes`: adds the mailbox and emails it the verification link.
async fn add(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<AddForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let email = form.email.trim();
    let added = match count_mailbox_add(&state, user.id()) {
        Ok(counted) => add_mailbox(&state, &user.caller.user, counted, email).await,
        Err(e) => Err(e),
    };
    match added {
        Ok(_) => Ok(back_to("/mailboxes?done=added")),
        Err(e) => list_page(&state, &user, email, None, Some(shown(e)?)).await,
    }
}

/// `POST /mailboxes/{id}/default`: what `PUT /api/mailboxes/{id} {"default": true}` does.
async fn make_default(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = path_id(&id)?;
    let db = state.ctx.db();
    let mailbox = owned_mailbox(db, user.id(), id).await?;
    match accounts::set_default_mailbox(db, user.caller.user.clone(), &mailbox).await {
        Ok(()) => Ok(back_to("/mailboxes?done=default")),
        Err(e) => list_page(&state, &user, "", None, Some(shown(e.into())?)).await,
    }
}

/// `POST /mailboxes/{id}/enable`: what `PUT /api/mailboxes/{id} {"disabled": false}` does.
async fn enable(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = path_id(&id)?;
    let db = state.ctx.db();
    let mailbox = owned_mailbox(db, user.id(), id).await?;
    accounts::set_mailbox_disabled(db, &mailbox, false).await?;
    Ok(back_to("/mailboxes?done=enabled"))
}

struct Target {
    id: i64,
    email: String,
    default: bool,
}

#[derive(Template)]
#[template(path = "mailboxes_delete.html")]
struct DeletePage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    id: i64,
    email: &'a str,
    aliases: i64,
    is_default: bool,
    /// The user's other verified mailboxes, the default one first.
    targets: Vec<Target>,
    error: Option<&'a str>,
}

/// The confirmation page of deleting mailbox `id`.
async fn confirm_page(
    state: &AppState,
    user: &WebUser,
    id: i64,
    error: Option<(StatusCode, String)>,
) -> Result<Response, WebError> {
    let default_id = user.caller.user.default_mailbox_id;
    let all = listing::mailboxes_with_use(state.ctx.db(), user.id()).await?;
    let Some((mailbox, aliases)) = all.iter().find(|(m, _)| m.id == id) else {
        return Err(WebError::not_found());
    };
    let mut targets: Vec<Target> = all
        .iter()
        .filter(|(m, _)| m.id != id && m.verified)
        .map(|(m, _)| Target {
            id: m.id,
            email: m.email.clone(),
            default: Some(m.id) == default_id,
        })
        .collect();
    targets.sort_by_key(|t| !t.default);
    let is_default = Some(id) == default_id;
    let (status, message) = match error {
        Some((status, message)) => (status, Some(message)),
        None if is_default => (
            StatusCode::BAD_REQUEST,
            Some(
                "This is your default mailbox, so it cannot be deleted: make another \
                 mailbox the default first."
                    .to_string(),
            ),
        ),
        None => (StatusCode::OK, None),
    };
    let page = render(&DeletePage {
        nav: Some(user.nav("mailboxes")),
        csrf: &user.csrf,
        id,
        email: &mailbox.email,
        aliases: *aliases,
        is_default,
        targets,
        error: message.as_deref(),
    });
    Ok((status, page).into_response())
}

async fn delete_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    confirm_page(&state, &user, id, None).await
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    /// Another mailbox's id, or `-1`: move the aliases nowhere (as in the API).
    transfer_to: Option<String>,
}

/// `POST /mailboxes/{id}/delete`: what `DELETE /api/mailboxes/{id}` does.
async fn delete(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let id = path_id(&id)?;
    // Required, so a form without the choice never deletes aliases.
    let transfer = match form.transfer_to.as_deref().map(|t| t.trim().parse::<i64>()) {
        Some(Ok(n)) => (n >= 0).then_some(n),
        _ => {
            let error = (
                StatusCode::BAD_REQUEST,
                "Choose where its aliases go.".into(),
            );
            return confirm_page(&state, &user, id, Some(error)).await;
        }
    };
    match delete_mailbox(&state, &user.caller.user, id, transfer).await {
        Ok(()) => Ok(back_to("/mailboxes?done=deleted")),
        Err(e) => confirm_page(&state, &user, id, Some(shown(e)?)).await,
    }
}
