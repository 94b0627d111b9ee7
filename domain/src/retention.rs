//! What is kept, and for how long (`[retention]`): one pass prunes everything past its time.
//! Per-alias counters survive: pruned activity is added to the alias's stored counts first.

use postern_entity::delivery::DeliveryStatus;
use postern_entity::{
    account_token, activity, alias, bounce, delivery, notification, quarantine, session,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::Result;
use crate::context::Context;
use crate::delivery::queue;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub activities: u64,
    pub quarantined: u64,
    pub bounces: u64,
    pub deliveries: u64,
    pub messages: u64,
    pub sessions: u64,
    pub tokens: u64,
    pub notifications: u64,
    pub unverified_mailboxes: u64,
    pub unactivated_accounts: u64,
    pub auth_attempts: u64,
    /// Aliases purged from the trash.
    pub trashed_aliases: u64,
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pruned {} activities, {} quarantined, {} bounces, {} deliveries, {} messages, \
             {} sessions, {} tokens, {} notifications, {} unverified mailboxes, {} unactivated \
             accounts, {} sign-in attempts, {} aliases from the trash",
            self.activities,
            self.quarantined,
            self.bounces,
            self.deliveries,
            self.messages,
            self.sessions,
            self.tokens,
            self.notifications,
            self.unverified_mailboxes,
            self.unactivated_accounts,
            self.auth_attempts,
            self.trashed_aliases
        )
    }
}

/// Stored messages deleted per transaction.
const PURGE_BATCH: u64 = 500;

fn ago(d: std::time::Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(3650))
}

/// Prunes everything past its retention, a few short write transactions in turn (each
/// consistent on its own) rather than one long one that would hold up incoming mail.
pub async fn prune(ctx: &Context) -> Result<Pruned> {
    let settings = ctx.settings().clone();
    let mut done = Pruned::default();
    let r = &settings.retention;

    let trashed = alias::Entity::find()
        .filter(alias::Column::DeletedAt.lt(ago(r.trash)))
        .all(ctx.db())
        .await?;
    for a in trashed {
        let txn = crate::db::begin_write(ctx.db()).await?;
        crate::accounts::purge_alias(&txn, a).await?;
        txn.commit().await?;
        done.trashed_aliases += 1;
    }
    // The counters and the rows they count change together.
    let txn = crate::db::begin_write(ctx.db()).await?;
    done.activities = prune_activity(&txn, ago(r.activity)).await?;
    txn.commit().await?;

    let txn = crate::db::begin_write(ctx.db()).await?;
    done.quarantined = quarantine::Entity::delete_many()
        .filter(quarantine::Column::CreatedAt.lt(ago(r.quarantine)))
        .exec(&txn)
        .await?
        .rows_affected;
    // The refused message goes with the quarantine's retention; the bounce itself stays a
    // week at least, since the thresholds that disable a mailbox count a week of them.
    bounce::Entity::update_many()
        .col_expr(bounce::Column::MessageId, Expr::value(Option::<i64>::None))
        .filter(bounce::Column::CreatedAt.lt(ago(r.quarantine)))
        .filter(bounce::Column::MessageId.is_not_null())
        .exec(&txn)
        .await?;
    let bounce_keep = r.quarantine.max(std::time::Duration::from_secs(8 * 86_400));
    done.bounces = bounce::Entity::delete_many()
        .filter(bounce::Column::CreatedAt.lt(ago(bounce_keep)))
        .exec(&txn)
        .await?
        .rows_affected;
    // A finished delivery is what its VERP address names: kept while that address is valid.
    done.deliveries = delivery::Entity::delete_many()
        .filter(delivery::Column::Status.ne(DeliveryStatus::Queued))
        .filter(delivery::Column::CreatedAt.lt(ago(r.bounce_address)))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    done.messages = purge_delivered(ctx).await?;

    let txn = crate::db::begin_write(ctx.db()).await?;
    let now = chrono::Utc::now();
    done.sessions = session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lt(now))
        .exec(&txn)
        .await?
        .rows_affected;
    done.tokens = account_token::Entity::delete_many()
        .filter(account_token::Column::ExpiresAt.lt(now))
        .exec(&txn)
        .await?
        .rows_affected;
    done.notifications = notification::Entity::delete_many()
        .filter(notification::Column::CreatedAt.lt(ago(r.notifications)))
        .exec(&txn)
        .await?
        .rows_affected;
    let (mailboxes, accounts) =
        crate::accounts::purge_unverified(&txn, settings.accounts.unverified_lifetime).await?;
    done.unverified_mailboxes = mailboxes;
    done.unactivated_accounts = accounts;
    done.auth_attempts = crate::auth::purge_attempts(&txn, chrono::Duration::days(1)).await?;
    txn.commit().await?;
    if done != Pruned::default() {
        crate::cache::invalidate();
    }
    Ok(done)
}

/// Deletes the stored messages nothing needs any more (every delivery finished, nothing
/// quarantined or refused refers to them); returns how many. Mail is private: its body is
/// kept only while it may still be sent. The worker's `purge` job runs this every minute, and
/// each retention pass runs it too.
///
/// A batch per transaction: a backlog of mail is gigabytes, and one transaction deleting it
/// would hold every incoming message's commit.
pub async fn purge_delivered(ctx: &Context) -> Result<u64> {
    let mut purged = 0;
    loop {
        let txn = crate::db::begin_write(ctx.db()).await?;
        let batch = queue::purge_finished_messages(&txn, PURGE_BATCH).await?;
        txn.commit().await?;
        purged += batch;
        if batch < PURGE_BATCH {
            return Ok(purged);
        }
    }
}

/// Adds the counts of activity older than `cutoff` to each alias's stored counters, then
/// deletes it.
async fn prune_activity(
    db: &impl ConnectionTrait,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let counts: Vec<(i64, String, i64)> = activity::Entity::find()
        .select_only()
        .column(activity::Column::AliasId)
        .column(activity::Column::Kind)
        .column_as(activity::Column::Id.count(), "n")
        .filter(activity::Column::CreatedAt.lt(cutoff))
        .group_by(activity::Column::AliasId)
        .group_by(activity::Column::Kind)
        .into_tuple()
        .all(db)
        .await?;
    for (alias_id, kind, n) in counts {
        // As the live counts: a bounce was counted as its forward when that was accepted.
        let column = match kind.as_str() {
            "forward" => alias::Column::PrunedForwards,
            "block" => alias::Column::PrunedBlocks,
            "reply" => alias::Column::PrunedReplies,
            _ => continue,
        };
        alias::Entity::update_many()
            .col_expr(column, Expr::col(column).add(n))
            .filter(alias::Column::Id.eq(alias_id))
            .exec(db)
            .await?;
    }
    Ok(activity::Entity::delete_many()
        .filter(activity::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}
