//! One job at a time across workers: a lease row per job. Taking it is one conditional
//! UPDATE (free, expired, or already ours), which SQLite and PostgreSQL both apply
//! atomically, so of several workers sharing a database exactly one runs a job.

use postern_entity::job_lease;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use postern_domain::Result;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Takes the lease on `job` for `holder` until `ms` from now; false when another holds it.
pub async fn acquire(db: &impl ConnectionTrait, job: &str, holder: &str, ms: i64) -> Result<bool> {
    job_lease::Entity::insert(job_lease::ActiveModel {
        name: Set(job.to_string()),
        holder: Set(None),
        until: Set(0),
        last_run_at: Set(None),
        last_result: Set(None),
    })
    .on_conflict(
        OnConflict::column(job_lease::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let now = now_ms();
    let taken = job_lease::Entity::update_many()
        .col_expr(job_lease::Column::Holder, Expr::value(holder))
        .col_expr(job_lease::Column::Until, Expr::value(now + ms))
        .filter(job_lease::Column::Name.eq(job))
        // Only a free or expired lease: not even its own holder runs a job twice at once.
        .filter(job_lease::Column::Until.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(taken == 1)
}

/// Gives the lease back and records what the run did.
pub async fn release(
    db: &impl ConnectionTrait,
    job: &str,
    holder: &str,
    result: &str,
) -> Result<()> {
    job_lease::Entity::update_many()
        .col_expr(job_lease::Column::Until, Expr::value(0i64))
        .col_expr(
            job_lease::Column::LastRunAt,
            Expr::value(chrono::Utc::now()),
        )
        .col_expr(
            job_lease::Column::LastResult,
            Expr::value(result.chars().take(2000).collect::<String>()),
        )
        .filter(job_lease::Column::Name.eq(job))
        .filter(job_lease::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}

/// Frees the leases `holder` held when it stopped (a restarted worker runs its jobs again
/// at once instead of waiting for the leases to run out).
pub async fn release_own(db: &impl ConnectionTrait, holder: &str) -> Result<u64> {
    Ok(job_lease::Entity::update_many()
        .col_expr(job_lease::Column::Until, Expr::value(0i64))
        .filter(job_lease::Column::Holder.eq(holder))
        .filter(job_lease::Column::Until.gt(0i64))
        .exec(db)
        .await?
        .rows_affected)
}

/// Every job's last run and result.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<job_lease::Model>> {
    Ok(job_lease::Entity::find().all(db).await?)
}
