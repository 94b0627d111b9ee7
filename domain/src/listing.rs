//! Read models for the API: pages of aliases with their counters, mailboxes with their use.
//!
//! Every query is scoped to one user; a page costs a fixed number of queries, whatever its size.

use std::collections::HashMap;

use postern_entity::activity::ActivityKind;
use postern_entity::{activity, alias, alias_mailbox, contact, mailbox};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::Result;

/// Items per page, as SimpleLogin's clients expect.
pub const PAGE_SIZE: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasFilter {
    All,
    Pinned,
    Enabled,
    Disabled,
}

/// One page (from 0) of the user's aliases, pinned first, newest first.
pub async fn alias_page(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: u64,
    filter: AliasFilter,
    query: Option<&str>,
) -> Result<Vec<alias::Model>> {
    Ok(
        aliases_of(db.get_database_backend(), user_id, filter, query)
            .order_by_desc(alias::Column::Pinned)
            .order_by_desc(alias::Column::Id)
            .offset(page.saturating_mul(PAGE_SIZE))
            .limit(PAGE_SIZE)
            .all(db)
            .await?,
    )
}

/// Where a page of aliases ends: the last alias shown, in the pinned-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasCursor {
    pub pinned: bool,
    pub id: i64,
}

impl AliasCursor {
    pub fn of(a: &alias::Model) -> Self {
        Self {
            pinned: a.pinned,
            id: a.id,
        }
    }

    /// `p<0|1>-<id>`, as it travels in a page's link.
    pub fn encode(&self) -> String {
        format!("p{}-{}", u8::from(self.pinned), self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (pinned, id) = s.strip_prefix('p')?.split_once('-')?;
        Some(Self {
            pinned: match pinned {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            id: id.parse().ok()?,
        })
    }
}

/// Up to `limit` of the user's aliases after `after` (pinned first, newest first). Seeks by
/// the index instead of skipping rows, so the thousandth page costs what the first does.
pub async fn alias_page_after(
    db: &impl ConnectionTrait,
    user_id: i64,
    filter: AliasFilter,
    query: Option<&str>,
    after: Option<AliasCursor>,
    limit: u64,
) -> Result<Vec<alias::Model>> {
    let mut select = aliases_of(db.get_database_backend(), user_id, filter, query);
    if let Some(c) = after {
        let older = alias::Column::Id.lt(c.id);
        select = select.filter(if c.pinned {
            Condition::any().add(alias::Column::Pinned.eq(false)).add(
                Condition::all()
                    .add(alias::Column::Pinned.eq(true))
                    .add(older),
            )
        } else {
            Condition::all()
                .add(alias::Column::Pinned.eq(false))
                .add(older)
        });
    }
    Ok(select
        .order_by_desc(alias::Column::Pinned)
        .order_by_desc(alias::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The user's aliases (not in the trash) that pass `filter` and contain `query` in their
/// address, note or name, whatever the case. SQLite's `LIKE` ignores ASCII case by itself
/// (and its `lower()` only folds ASCII anyway): no function per row there, which halves a
/// search over 100,000 aliases. Elsewhere both sides are lowered.
fn aliases_of(
    backend: sea_orm::DatabaseBackend,
    user_id: i64,
    filter: AliasFilter,
    query: Option<&str>,
) -> sea_orm::Select<alias::Entity> {
    use sea_orm::sea_query::LikeExpr;
    let mut select = alias::Entity::find()
        .filter(alias::Column::UserId.eq(user_id))
        .filter(alias::Column::DeletedAt.is_null());
    select = match filter {
        AliasFilter::All => select,
        AliasFilter::Pinned => select.filter(alias::Column::Pinned.eq(true)),
        AliasFilter::Enabled => select.filter(alias::Column::Enabled.eq(true)),
        AliasFilter::Disabled => select.filter(alias::Column::Enabled.eq(false)),
    };
    if let Some(q) = query.map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
        let like = |col: alias::Column| {
            let pattern = LikeExpr::new(pattern.clone()).escape('\\');
            match backend {
                sea_orm::DatabaseBackend::Sqlite => Expr::col(col).like(pattern),
                _ => Expr::expr(Func::lower(Expr::col(col))).like(pattern),
            }
        };
        select = select.filter(
            Condition::any()
                .add(like(alias::Column::Email))
                .add(like(alias::Column::Note))
                .add(like(alias::Column::Name)),
        );
    }
    select
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// An alias's activity counters and its latest activity.
#[derive(Debug, Clone, Default)]
pub struct AliasStats {
    pub forwards: i64,
    pub blocks: i64,
    pub replies: i64,
    pub latest: Option<(activity::Model, Option<contact::Model>)>,
}

pub async fn alias_stats(
    db: &impl ConnectionTrait,
    alias_ids: &[i64],
) -> Result<HashMap<i64, AliasStats>> {
    let mut stats: HashMap<i64, AliasStats> = HashMap::new();
    if alias_ids.is_empty() {
        return Ok(stats);
    }
    let counts: Vec<(i64, String, i64)> = activity::Entity::find()
        .select_only()
        .column(activity::Column::AliasId)
        .column(activity::Column::Kind)
        .column_as(activity::Column::Id.count(), "n")
        .filter(activity::Column::AliasId.is_in(alias_ids.to_vec()))
        .group_by(activity::Column::AliasId)
        .group_by(activity::Column::Kind)
        .into_tuple()
        .all(db)
        .await?;
    // Counts of pruned activity, kept on the alias.
    let pruned: Vec<(i64, i64, i64, i64)> = alias::Entity::find()
        .select_only()
        .column(alias::Column::Id)
        .column(alias::Column::PrunedForwards)
        .column(alias::Column::PrunedBlocks)
        .column(alias::Column::PrunedReplies)
        .filter(alias::Column::Id.is_in(alias_ids.to_vec()))
        .into_tuple()
        .all(db)
        .await?;
    for (alias_id, forwards, blocks, replies) in pruned {
        let s = stats.entry(alias_id).or_default();
        s.forwards += forwards;
        s.blocks += blocks;
        s.replies += replies;
    }
    for (alias_id, kind, n) in counts {
        let s = stats.entry(alias_id).or_default();
        match kind.as_str() {
            // A forward that bounced was recorded as a forward when it was accepted.
            "forward" => s.forwards += n,
            "block" => s.blocks += n,
            "reply" => s.replies += n,
            _ => {}
        }
    }
    let latest_ids: Vec<i64> = activity::Entity::find()
        .select_only()
        .column_as(activity::Column::Id.max(), "id")
        .filter(activity::Column::AliasId.is_in(alias_ids.to_vec()))
        .filter(activity::Column::Kind.is_in(["forward", "reply", "block", "bounce"]))
        .group_by(activity::Column::AliasId)
        .into_tuple()
        .all(db)
        .await?;
    if latest_ids.is_empty() {
        return Ok(stats);
    }
    let latest = activity::Entity::find()
        .filter(activity::Column::Id.is_in(latest_ids))
        .all(db)
        .await?;
    let contact_ids: Vec<i64> = latest.iter().filter_map(|a| a.contact_id).collect();
    let contacts: HashMap<i64, contact::Model> = if contact_ids.is_empty() {
        HashMap::new()
    } else {
        contact::Entity::find()
            .filter(contact::Column::Id.is_in(contact_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect()
    };
    for a in latest {
        let contact = a.contact_id.and_then(|id| contacts.get(&id).cloned());
        let alias_id = a.alias_id;
        stats.entry(alias_id).or_default().latest = Some((a, contact));
    }
    Ok(stats)
}

/// The mailboxes of each alias, by alias id, sorted by address.
pub async fn alias_mailboxes(
    db: &impl ConnectionTrait,
    alias_ids: &[i64],
) -> Result<HashMap<i64, Vec<mailbox::Model>>> {
    let mut out: HashMap<i64, Vec<mailbox::Model>> = HashMap::new();
    if alias_ids.is_empty() {
        return Ok(out);
    }
    let links = alias_mailbox::Entity::find()
        .filter(alias_mailbox::Column::AliasId.is_in(alias_ids.to_vec()))
        .all(db)
        .await?;
    let ids: Vec<i64> = links.iter().map(|l| l.mailbox_id).collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let mailboxes: HashMap<i64, mailbox::Model> = mailbox::Entity::find()
        .filter(mailbox::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    for link in links {
        if let Some(m) = mailboxes.get(&link.mailbox_id) {
            out.entry(link.alias_id).or_default().push(m.clone());
        }
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| a.email.cmp(&b.email));
    }
    Ok(out)
}

/// The user's mailboxes with how many aliases use each.
pub async fn mailboxes_with_use(
    db: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Vec<(mailbox::Model, i64)>> {
    let mailboxes = crate::accounts::user_mailboxes(db, user_id).await?;
    let ids: Vec<i64> = mailboxes.iter().map(|m| m.id).collect();
    let counts: HashMap<i64, i64> = if ids.is_empty() {
        HashMap::new()
    } else {
        alias_mailbox::Entity::find()
            .select_only()
            .column(alias_mailbox::Column::MailboxId)
            .column_as(alias_mailbox::Column::AliasId.count(), "n")
            .filter(alias_mailbox::Column::MailboxId.is_in(ids))
            .group_by(alias_mailbox::Column::MailboxId)
            .into_tuple::<(i64, i64)>()
            .all(db)
            .await?
            .into_iter()
            .collect()
    };
    Ok(mailboxes
        .into_iter()
        .map(|m| {
            let n = counts.get(&m.id).copied().unwrap_or(0);
            (m, n)
        })
        .collect())
}

/// The kinds of activity SimpleLogin's clients know.
pub const SIMPLELOGIN_ACTIVITY: &[ActivityKind] = &[
    ActivityKind::Forward,
    ActivityKind::Reply,
    ActivityKind::Block,
    ActivityKind::Bounce,
];

/// One page of an alias's activity (forward, reply, block, bounce), newest first, with contacts.
pub async fn activity_page(
    db: &impl ConnectionTrait,
    alias_id: i64,
    page: u64,
) -> Result<Vec<(activity::Model, Option<contact::Model>)>> {
    activity_page_of(db, alias_id, page, SIMPLELOGIN_ACTIVITY).await
}

/// One page of an alias's activity of `kinds`, newest first, with contacts.
pub async fn activity_page_of(
    db: &impl ConnectionTrait,
    alias_id: i64,
    page: u64,
    kinds: &[ActivityKind],
) -> Result<Vec<(activity::Model, Option<contact::Model>)>> {
    let rows = activity::Entity::find()
        .filter(activity::Column::AliasId.eq(alias_id))
        .filter(activity::Column::Kind.is_in(kinds.iter().map(|k| k.as_str())))
        .order_by_desc(activity::Column::Id)
        .offset(page.saturating_mul(PAGE_SIZE))
        .limit(PAGE_SIZE)
        .all(db)
        .await?;
    let ids: Vec<i64> = rows.iter().filter_map(|a| a.contact_id).collect();
    let contacts: HashMap<i64, contact::Model> = if ids.is_empty() {
        HashMap::new()
    } else {
        contact::Entity::find()
            .filter(contact::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|a| {
            let c = a.contact_id.and_then(|id| contacts.get(&id).cloned());
            (a, c)
        })
        .collect())
}

/// One page of an alias's contacts, newest first, each with the time of the owner's last reply.
pub async fn contact_page(
    db: &impl ConnectionTrait,
    alias_id: i64,
    page: u64,
) -> Result<Vec<(contact::Model, Option<chrono::DateTime<chrono::Utc>>)>> {
    let contacts = contact::Entity::find()
        .filter(contact::Column::AliasId.eq(alias_id))
        .order_by_desc(contact::Column::Id)
        .offset(page.saturating_mul(PAGE_SIZE))
        .limit(PAGE_SIZE)
        .all(db)
        .await?;
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let last_reply = last_replies(db, &ids).await?;
    Ok(contacts
        .into_iter()
        .map(|c| {
            let at = last_reply.get(&c.id).copied();
            (c, at)
        })
        .collect())
}

/// When the owner last replied to each contact.
pub async fn last_replies(
    db: &impl ConnectionTrait,
    contact_ids: &[i64],
) -> Result<HashMap<i64, chrono::DateTime<chrono::Utc>>> {
    if contact_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let latest: Vec<i64> = activity::Entity::find()
        .select_only()
        .column_as(activity::Column::Id.max(), "id")
        .filter(activity::Column::ContactId.is_in(contact_ids.to_vec()))
        .filter(activity::Column::Kind.eq("reply"))
        .group_by(activity::Column::ContactId)
        .into_tuple()
        .all(db)
        .await?;
    if latest.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(activity::Entity::find()
        .filter(activity::Column::Id.is_in(latest))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|a| a.contact_id.map(|c| (c, a.created_at)))
        .collect())
}

/// The user's totals: aliases, and forwards, replies and blocks over all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserStats {
    pub aliases: i64,
    pub forwards: i64,
    pub replies: i64,
    pub blocks: i64,
}

pub async fn user_stats(db: &impl ConnectionTrait, user_id: i64) -> Result<UserStats> {
    use sea_orm::PaginatorTrait;
    let aliases = alias::Entity::find()
        .filter(alias::Column::UserId.eq(user_id))
        .filter(alias::Column::DeletedAt.is_null())
        .count(db)
        .await?;
    let counts: Vec<(String, i64)> = activity::Entity::find()
        .select_only()
        .column(activity::Column::Kind)
        .column_as(activity::Column::Id.count(), "n")
        .filter(activity::Column::UserId.eq(user_id))
        .group_by(activity::Column::Kind)
        .into_tuple()
        .all(db)
        .await?;
    // PostgreSQL sums bigints as numeric: cast back.
    let sum = |c: &str| Expr::cust(format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)"));
    let pruned: Option<(i64, i64, i64)> = alias::Entity::find()
        .select_only()
        .column_as(sum("pruned_forwards"), "f")
        .column_as(sum("pruned_blocks"), "b")
        .column_as(sum("pruned_replies"), "r")
        .filter(alias::Column::UserId.eq(user_id))
        .into_tuple()
        .one(db)
        .await?;
    let (forwards, blocks, replies) = pruned.unwrap_or_default();
    let mut stats = UserStats {
        aliases: i64::try_from(aliases).unwrap_or(i64::MAX),
        forwards,
        blocks,
        replies,
    };
    for (kind, n) in counts {
        match kind.as_str() {
            "forward" => stats.forwards += n,
            "reply" => stats.replies += n,
            "block" => stats.blocks += n,
            _ => {}
        }
    }
    Ok(stats)
}

/// addy.io's paging: page `number` (from 1) of `size`, optionally only active or inactive
/// aliases and those whose address contains `search`; with the total count.
pub async fn alias_page_numbered(
    db: &impl ConnectionTrait,
    user_id: i64,
    number: u64,
    size: u64,
    active: Option<bool>,
    search: Option<&str>,
) -> Result<(Vec<alias::Model>, u64)> {
    use sea_orm::PaginatorTrait;
    let mut select = alias::Entity::find()
        .filter(alias::Column::UserId.eq(user_id))
        .filter(alias::Column::DeletedAt.is_null());
    if let Some(active) = active {
        select = select.filter(alias::Column::Enabled.eq(active));
    }
    if let Some(search) = search
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
    {
        select = select.filter(alias::Column::Email.contains(search));
    }
    let total = select.clone().count(db).await?;
    let page = select
        .order_by_desc(alias::Column::Id)
        .offset(number.saturating_sub(1).saturating_mul(size))
        .limit(size)
        .all(db)
        .await?;
    Ok((page, total))
}

/// One day of an alias's activity, for its chart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayCount {
    pub day: chrono::NaiveDate,
    pub forwards: u32,
    pub blocks: u32,
    pub replies: u32,
}

/// The alias's forwards, blocks and replies per day (UTC) over the last `days` days, oldest
/// first, today included; days without activity count zero.
pub async fn daily_activity(
    db: &impl ConnectionTrait,
    alias_id: i64,
    days: u32,
    today: chrono::NaiveDate,
) -> Result<Vec<DayCount>> {
    let days = Ord::max(days, 1);
    let first = today - chrono::Duration::days(i64::from(days) - 1);
    let since = first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    // Counted by the database, a row per day and kind: a flooded alias has millions of rows.
    let day = Expr::cust("CAST(date(created_at) AS TEXT)");
    let rows: Vec<(ActivityKind, String, i64)> = activity::Entity::find()
        .select_only()
        .column(activity::Column::Kind)
        .column_as(day.clone(), "day")
        .column_as(activity::Column::Id.count(), "n")
        .filter(activity::Column::AliasId.eq(alias_id))
        .filter(activity::Column::CreatedAt.gte(since))
        .filter(activity::Column::Kind.is_in(["forward", "block", "reply"]))
        .group_by(activity::Column::Kind)
        .group_by(day)
        .into_tuple()
        .all(db)
        .await?;
    let mut out: Vec<DayCount> = (0..days)
        .map(|i| DayCount {
            day: first + chrono::Duration::days(i64::from(i)),
            ..Default::default()
        })
        .collect();
    for (kind, day, n) in rows {
        let Ok(day) =
            chrono::NaiveDate::parse_from_str(day.get(..10).unwrap_or_default(), "%Y-%m-%d")
        else {
            continue;
        };
        let Ok(i) = usize::try_from((day - first).num_days()) else {
            continue;
        };
        let Some(d) = out.get_mut(i) else { continue };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match kind {
            ActivityKind::Forward => d.forwards += n,
            ActivityKind::Block => d.blocks += n,
            ActivityKind::Reply => d.replies += n,
            _ => {}
        }
    }
    Ok(out)
}
