//! The dashboard (the aliases, searched, filtered and paged), creating aliases, and an
//! alias's own page: its activity, a chart of the last 30 days, and its contacts.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use postern_domain::accounts::{self, AliasUpdate};
use postern_domain::listing::{self, AliasCursor, AliasFilter, DayCount};
use postern_entity::activity::ActivityKind;
use serde::Deserialize;

use super::{Nav, WebError, WebUser, back_to, path_id, render, url_escape, when};
use crate::AppState;
use crate::simplelogin::{aliases as api_aliases, contacts as api_contacts, custom};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/aliases/random", post(create_random))
        .route("/aliases/custom", post(create_custom))
        .route("/aliases/{id}", get(alias_page))
        .route("/aliases/{id}/toggle", post(toggle))
        .route("/aliases/{id}/pin", post(pin))
        .route("/aliases/{id}/edit", post(edit))
        .route("/aliases/{id}/mailboxes", post(set_mailboxes))
        .route("/aliases/{id}/delete", get(delete_page).post(delete))
        .route("/aliases/{id}/contacts", post(new_contact))
        .route("/contacts/{id}/block", post(block_contact))
}

/// Aliases per dashboard page.
const PER_PAGE: u64 = 20;

/// One alias as the dashboard shows it.
struct Row {
    id: i64,
    email: String,
    enabled: bool,
    pinned: bool,
    name: String,
    note: String,
    mailboxes: Vec<String>,
    forwards: i64,
    blocks: i64,
    replies: i64,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    rows: Vec<Row>,
    q: &'a str,
    filter: &'a str,
    /// `(value, label)` of each filter.
    filters: &'static [(&'static str, &'static str)],
    next: Option<String>,
    paged: bool,
    first: String,
    /// Where a form on this page returns to.
    here: String,
    created: Option<String>,
    error: Option<&'a str>,
    suffixes: Vec<(String, String)>,
    mailboxes: Vec<(i64, String, bool)>,
    generator: &'a str,
}

const FILTERS: &[(&str, &str)] = &[
    ("all", "All"),
    ("enabled", "Enabled"),
    ("disabled", "Disabled"),
    ("pinned", "Pinned"),
];

#[derive(Deserialize, Default)]
struct DashboardQuery {
    q: Option<String>,
    filter: Option<String>,
    after: Option<String>,
    created: Option<i64>,
}

async fn dashboard(
    State(state): State<AppState>,
    user: WebUser,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, WebError> {
    dashboard_page(&state, &user, query, None).await
}

async fn dashboard_page(
    state: &AppState,
    user: &WebUser,
    query: DashboardQuery,
    error: Option<&str>,
) -> Result<Response, WebError> {
    let db = state.ctx.db();
    let q = query.q.as_deref().unwrap_or_default().trim();
    let (filter_name, filter) = match query.filter.as_deref() {
        Some("enabled") => ("enabled", AliasFilter::Enabled),
        Some("disabled") => ("disabled", AliasFilter::Disabled),
        Some("pinned") => ("pinned", AliasFilter::Pinned),
        _ => ("all", AliasFilter::All),
    };
    let after = query.after.as_deref().and_then(AliasCursor::decode);
    // One more than a page tells whether there is a next one.
    let mut aliases =
        listing::alias_page_after(db, user.id(), filter, Some(q), after, PER_PAGE + 1).await?;
    let more = aliases.len() as u64 > PER_PAGE;
    aliases.truncate(PER_PAGE as usize);
    let ids: Vec<i64> = aliases.iter().map(|a| a.id).collect();
    let stats = listing::alias_stats(db, &ids).await?;
    let mut boxes = listing::alias_mailboxes(db, &ids).await?;
    let base = format!("/dashboard?q={}&filter={filter_name}", url_escape(q));
    let next = more
        .then(|| aliases.last().map(AliasCursor::of))
        .flatten()
        .map(|c| format!("{base}&after={}", c.encode()));
    let here = match &query.after {
        Some(a) => format!("{base}&after={}", url_escape(a)),
        None => base.clone(),
    };
    let created = match query.created {
        Some(id) => accounts::user_alias(db, user.id(), id)
            .await?
            .map(|a| a.email),
        None => None,
    };
    let rows = aliases
        .into_iter()
        .map(|a| {
            let s = stats.get(&a.id).cloned().unwrap_or_default();
            Row {
                mailboxes: boxes
                    .remove(&a.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.email)
                    .collect(),
                id: a.id,
                email: a.email,
                enabled: a.enabled,
                pinned: a.pinned,
                name: a.name.unwrap_or_default(),
                note: a.note.unwrap_or_default(),
                forwards: s.forwards,
                blocks: s.blocks,
                replies: s.replies,
            }
        })
        .collect();
    let owner = &user.caller.user;
    let mailboxes = accounts::user_mailboxes(db, owner.id)
        .await?
        .into_iter()
        .filter(|m| m.verified)
        .map(|m| (m.id, m.email, Some(m.id) == owner.default_mailbox_id))
        .collect();
    let page = Dashboard {
        nav: Some(user.nav("aliases")),
        csrf: &user.csrf,
        rows,
        q,
        filter: filter_name,
        filters: FILTERS,
        next,
        paged: after.is_some(),
        first: base,
        here,
        created,
        error,
        suffixes: custom::suffixes(state, owner),
        mailboxes,
        generator: &owner.alias_generator,
    };
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, render(&page)).into_response())
}

#[derive(Deserialize)]
struct RandomForm {
    csrf: String,
    mode: Option<String>,
    note: Option<String>,
}

async fn create_random(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<RandomForm>,
) -> Result<Response, WebError> {
    user.check(&form.csrf)?;
    let note = form.note.filter(|n| !n.trim().is_empty());
    let made = match custom::quota(&state, &user.caller.user).await {
        Ok(()) => {
            api_aliases::create_random(&state, &user.caller.user, form.mode.as_deref(), None, note)
                .await
        }
        Err(e) => Err(e),
    };
    created(&state, &user, made).await
}

/// The custom form: a prefix, a signed suffix and mailbox ids, repeated `mailbox` fields.
async fn create_custom(
    State(state): State<AppState>,
    user: WebUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    user.check(field("csrf").unwrap_or_default())?;
    let ids: Vec<i64> = fields
        .iter()
        .filter(|(k, _)| k == "mailbox")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let owner = &user.caller.user;
    let made = async {
        custom::quota(&state, owner).await?;
        let prefix = custom::custom_prefix(field("prefix").unwrap_or_default())?;
        let mailboxes = custom::chosen_mailboxes(&state, owner, &ids).await?;
        let note = field("note").filter(|n| !n.trim().is_empty());
        custom::create(
            &state,
            owner,
            &prefix,
            field("suffix").unwrap_or_default(),
            &mailboxes,
            (note.map(str::to_string), None),
        )
        .await
    }
    .await;
    created(&state, &user, made).await
}

/// Back to the dashboard with the new alias shown ready to copy, or the reason there is none.
async fn created(
    state: &AppState,
    user: &WebUser,
    made: Result<postern_entity::alias::Model, crate::ApiError>,
) -> Result<Response, WebError> {
    match made {
        Ok(alias) => Ok(back_to(&format!("/dashboard?created={}", alias.id))),
        Err(e) => dashboard_page(state, user, DashboardQuery::default(), Some(&e.message)).await,
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    back: Option<String>,
}

/// Where a dashboard form returns: the page it was on.
fn back(form_back: Option<&str>, id: i64) -> String {
    match form_back {
        Some(p) if p.starts_with("/dashboard") || p.starts_with("/aliases/") => {
            super::local_path(Some(p))
        }
        _ => format!("/aliases/{id}"),
    }
}

async fn toggle(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    user.check(&form.csrf)?;
    api_aliases::toggle_one(&state, user.id(), id).await?;
    Ok(back_to(&back(form.back.as_deref(), id)))
}

async fn pin(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    user.check(&form.csrf)?;
    let alias = crate::simplelogin::owned_alias(state.ctx.db(), user.id(), id).await?;
    let update = AliasUpdate {
        pinned: Some(!alias.pinned),
        ..Default::default()
    };
    api_aliases::change(&state, alias, update).await?;
    Ok(back_to(&back(form.back.as_deref(), id)))
}

#[derive(Deserialize)]
struct EditForm {
    csrf: String,
    back: Option<String>,
    note: String,
    name: String,
}

async fn edit(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    user.check(&form.csrf)?;
    let alias = crate::simplelogin::owned_alias(state.ctx.db(), user.id(), id).await?;
    let blank_is_none = |s: String| Some(s).filter(|s| !s.trim().is_empty());
    let update = AliasUpdate {
        note: Some(blank_is_none(form.note)),
        name: Some(api_aliases::alias_name(blank_is_none(form.name))?),
        ..Default::default()
    };
    api_aliases::change(&state, alias, update).await?;
    Ok(back_to(&back(form.back.as_deref(), id)))
}

/// The alias's mailboxes, from repeated `mailbox` fields; at least one.
async fn set_mailboxes(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    user.check(csrf.unwrap_or_default())?;
    let ids: Vec<i64> = fields
        .iter()
        .filter(|(k, _)| k == "mailbox")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let alias = crate::simplelogin::owned_alias(state.ctx.db(), user.id(), id).await?;
    let update = AliasUpdate {
        mailbox_ids: Some(ids),
        ..Default::default()
    };
    match api_aliases::change(&state, alias, update).await {
        Ok(_) => Ok(back_to(&format!("/aliases/{id}"))),
        Err(e) => alias_view(&state, &user, id, AliasQuery::default(), Some(&e.message)).await,
    }
}

#[derive(Template)]
#[template(path = "alias_delete.html")]
struct DeletePage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    id: i64,
    email: &'a str,
}

async fn delete_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    let alias = crate::simplelogin::owned_alias(state.ctx.db(), user.id(), id).await?;
    Ok(render(&DeletePage {
        nav: Some(user.nav("aliases")),
        csrf: &user.csrf,
        id,
        email: &alias.email,
    }))
}

async fn delete(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    user.check(&form.csrf)?;
    api_aliases::trash(&state, user.id(), id).await?;
    Ok(back_to("/dashboard"))
}

/// One line of an alias's activity.
struct Event {
    what: &'static str,
    who: String,
    when: String,
    detail: String,
}

struct ContactRow {
    id: i64,
    email: String,
    reverse_alias: String,
    blocked: bool,
    last_reply: String,
}

/// The bars of the 30-day chart, laid out here so the template only draws them.
struct Bar {
    x: u32,
    y: u32,
    height: u32,
    label: String,
}

#[derive(Template)]
#[template(path = "alias.html")]
struct AliasPage<'a> {
    nav: Option<Nav>,
    csrf: &'a str,
    id: i64,
    email: &'a str,
    enabled: bool,
    pinned: bool,
    name: &'a str,
    note: &'a str,
    mailboxes: Vec<String>,
    /// Every verified mailbox of the owner: (id, address, forwards this alias there).
    choices: Vec<(i64, String, bool)>,
    forwards: i64,
    blocks: i64,
    replies: i64,
    bars: Vec<Bar>,
    peak: u32,
    chart_summary: String,
    events: Vec<Event>,
    page: u64,
    more: bool,
    contacts: Vec<ContactRow>,
    contacts_page: u64,
    more_contacts: bool,
    /// The reverse alias just made for "send a new email".
    made: Option<(String, String)>,
    error: Option<&'a str>,
    here: String,
}

#[derive(Deserialize, Default)]
struct AliasQuery {
    page: Option<u64>,
    /// The page of contacts, from 0.
    contacts: Option<u64>,
    contact: Option<i64>,
}

async fn alias_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(query): Query<AliasQuery>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    alias_view(&state, &user, id, query, None).await
}

const SHOWN_KINDS: &[ActivityKind] = &[
    ActivityKind::Forward,
    ActivityKind::Reply,
    ActivityKind::Block,
    ActivityKind::Bounce,
    ActivityKind::Quarantined,
    ActivityKind::Refused,
];

async fn alias_view(
    state: &AppState,
    user: &WebUser,
    id: i64,
    query: AliasQuery,
    error: Option<&str>,
) -> Result<Response, WebError> {
    let db = state.ctx.db();
    let alias = crate::simplelogin::owned_alias(db, user.id(), id).await?;
    let page = query.page.unwrap_or(0).min(crate::bounds::MAX_PAGE);
    let stats = listing::alias_stats(db, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    let linked = listing::alias_mailboxes(db, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    let choices = accounts::user_mailboxes(db, user.id())
        .await?
        .into_iter()
        .filter(|m| m.verified)
        .map(|m| {
            let on = linked.iter().any(|l| l.id == m.id);
            (m.id, m.email, on)
        })
        .collect();
    let mailboxes = linked.into_iter().map(|m| m.email).collect();
    let today = chrono::Utc::now().date_naive();
    let days = listing::daily_activity(db, id, 30, today).await?;
    let (bars, peak) = chart(&days);
    let total: u32 = days.iter().map(|d| d.forwards + d.blocks + d.replies).sum();
    let rows = listing::activity_page_of(db, id, page, SHOWN_KINDS).await?;
    let more = rows.len() as u64 >= listing::PAGE_SIZE;
    let events = rows
        .into_iter()
        .map(|(a, c)| Event {
            what: match a.kind {
                ActivityKind::Forward => "Forwarded",
                ActivityKind::Reply => "Replied",
                ActivityKind::Block => "Blocked",
                ActivityKind::Bounce => "Bounced",
                ActivityKind::Quarantined => "Quarantined",
                ActivityKind::Refused => "Reply refused",
                ActivityKind::Loop => "Loop",
                ActivityKind::AutoReply => "Automatic reply",
            },
            who: c.map(|c| c.email).unwrap_or_default(),
            when: when(a.created_at),
            detail: a.detail.unwrap_or_default(),
        })
        .collect();
    let contacts_page = query.contacts.unwrap_or(0).min(crate::bounds::MAX_PAGE);
    let contacts = listing::contact_page(db, id, contacts_page)
        .await?
        .into_iter()
        .map(|(c, last)| ContactRow {
            id: c.id,
            reverse_alias: c.reply_email.clone(),
            email: c.email,
            blocked: c.blocked,
            last_reply: last.map(when).unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    let more_contacts = contacts.len() as u64 >= listing::PAGE_SIZE;
    let made = match query.contact {
        Some(cid) => accounts::user_contact(db, user.id(), cid)
            .await?
            .filter(|c| c.alias_id == id)
            .map(|c| (c.email, c.reply_email)),
        None => None,
    };
    let view = AliasPage {
        nav: Some(user.nav("aliases")),
        csrf: &user.csrf,
        id,
        email: &alias.email,
        enabled: alias.enabled,
        pinned: alias.pinned,
        name: alias.name.as_deref().unwrap_or_default(),
        note: alias.note.as_deref().unwrap_or_default(),
        mailboxes,
        choices,
        forwards: stats.forwards,
        blocks: stats.blocks,
        replies: stats.replies,
        bars,
        peak,
        chart_summary: format!("{total} messages in the last 30 days"),
        events,
        page,
        more,
        contacts,
        contacts_page,
        more_contacts,
        made,
        error,
        here: format!("/aliases/{id}?page={page}&contacts={contacts_page}"),
    };
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, render(&view)).into_response())
}

/// Chart geometry: 30 bars in a 600×120 box, scaled to the busiest day.
fn chart(days: &[DayCount]) -> (Vec<Bar>, u32) {
    const HEIGHT: u32 = 100;
    const STEP: u32 = 20;
    let totals: Vec<u32> = days
        .iter()
        .map(|d| d.forwards + d.blocks + d.replies)
        .collect();
    let peak = totals.iter().copied().max().unwrap_or(0);
    let bars = days
        .iter()
        .zip(&totals)
        .enumerate()
        .map(|(i, (d, &n))| {
            let height = (n * HEIGHT).checked_div(peak).unwrap_or(0);
            Bar {
                x: u32::try_from(i).unwrap_or(0) * STEP + 2,
                y: HEIGHT - height + 5,
                height,
                label: format!(
                    "{}: {} forwarded, {} blocked, {} replied",
                    d.day, d.forwards, d.blocks, d.replies
                ),
            }
        })
        .collect();
    (bars, peak)
}

#[derive(Deserialize)]
struct ContactForm {
    csrf: String,
    contact: String,
}

/// "Send a new email from this alias": the reverse alias to write to.
async fn new_contact(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<ContactForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    user.check(&form.csrf)?;
    match api_contacts::reverse_alias_for(&state, user.id(), id, &form.contact).await {
        Ok((contact, _)) => Ok(back_to(&format!("/aliases/{id}?contact={}", contact.id))),
        Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => Err(e.into()),
        Err(e) => alias_view(&state, &user, id, AliasQuery::default(), Some(&e.message)).await,
    }
}

async fn block_contact(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id)?;
    user.check(&form.csrf)?;
    let contact = api_contacts::toggle_block(&state, user.id(), id).await?;
    Ok(back_to(&back(form.back.as_deref(), contact.alias_id)))
}
