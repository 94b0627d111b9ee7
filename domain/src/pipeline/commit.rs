//! Group commit: one writer task runs the writes of many concurrent sessions in one
//! transaction, so one fsync acknowledges them all.
//!
//! One session's bad data must fail only that session. Most work is *repeatable*
//! ([`Writer::write`]): a closure that only writes through the transaction it is given, so it
//! can run again after a rollback. A batch of such work runs straight through, with no
//! SAVEPOINTs (two round trips fewer per session, the difference on PostgreSQL). When one
//! piece fails, the batch is rolled back and run again with a SAVEPOINT around each piece, so
//! only the failing piece's writes are undone and only its caller is told. Work that can run
//! only once ([`Writer::write_once`], e.g. one holding a large message it hands over rather
//! than copies) always gets its own SAVEPOINT when it shares a batch. Every caller learns the
//! outcome only after the commit that holds its writes (or learns that nothing was kept).

use std::sync::Arc;

use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::{DomainError, Result};

/// How many pieces of work one transaction takes at most.
const MAX_BATCH: usize = 256;

type Work<T> = Box<dyn for<'t> FnMut(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T>> + Send>;

/// One caller's work, its result once run, and where its outcome goes.
struct Job<T> {
    work: Work<T>,
    repeatable: bool,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

/// A [`Job`] of any result type, as the writer task holds it.
trait Step: Send {
    fn repeatable(&self) -> bool;
    /// Runs the work in `txn` (inside a SAVEPOINT of its own when `isolated`) and keeps its
    /// result; returns whether it succeeded.
    fn run<'t>(&'t mut self, txn: &'t DatabaseTransaction, isolated: bool) -> BoxFuture<'t, bool>;
    /// Tells the caller, given the outcome of the commit that held the work.
    fn settle(self: Box<Self>, committed: std::result::Result<(), Arc<DbErr>>);
}

impl<T: Send + 'static> Step for Job<T> {
    fn repeatable(&self) -> bool {
        self.repeatable
    }

    fn run<'t>(&'t mut self, txn: &'t DatabaseTransaction, isolated: bool) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let result = if isolated {
                in_savepoint(txn, &mut self.work).await
            } else {
                (self.work)(txn).await
            };
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn settle(self: Box<Self>, committed: std::result::Result<(), Arc<DbErr>>) {
        let outcome = match (self.result, committed) {
            (None, _) => Err(DomainError::Unavailable(
                "the database writer dropped the work unfinished".into(),
            )),
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) => Err(DomainError::Db(DbErr::Custom(format!(
                "group commit failed: {e}"
            )))),
        };
        let _ = self.reply.send(outcome);
    }
}

/// The handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    steps: mpsc::UnboundedSender<Box<dyn Step>>,
}

impl Writer {
    /// Starts the writer task on `db`.
    pub fn start(db: DatabaseConnection) -> Self {
        let (steps, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        Self { steps }
    }

    /// Runs `work` in the next group transaction; returns its result once that transaction
    /// is committed. An error means none of its writes were kept. `work` may run more than
    /// once (after a rollback caused by another caller's failure), so it must write only
    /// through the transaction it is given.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        self.submit(Box::new(work), true).await
    }

    /// As [`write`](Self::write), for work that can run only once (it consumes what it
    /// captured). It gets a SAVEPOINT of its own, so it costs two round trips more.
    pub async fn write_once<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let mut work = Some(work);
        let once: Work<T> = Box::new(move |txn| match work.take() {
            Some(work) => work(txn),
            None => Box::pin(async {
                Err(DomainError::Unavailable(
                    "one-time database work run twice".into(),
                ))
            }),
        });
        self.submit(once, false).await
    }

    async fn submit<T: Send + 'static>(&self, work: Work<T>, repeatable: bool) -> Result<T> {
        let (reply, rx) = oneshot::channel::<Result<T>>();
        let job = Job {
            work,
            repeatable,
            result: None,
            reply,
        };
        self.steps
            .send(Box::new(job))
            .map_err(|_| DomainError::Unavailable("the database writer has stopped".into()))?;
        rx.await.map_err(|_| {
            DomainError::Unavailable("the database writer dropped the work unfinished".into())
        })?
    }
}

async fn in_savepoint<T>(txn: &DatabaseTransaction, work: &mut Work<T>) -> Result<T> {
    let savepoint = txn.begin().await?;
    match work(&savepoint).await {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = savepoint.rollback().await {
                tracing::warn!(error = %rollback, "rollback to savepoint failed");
            }
            Err(e)
        }
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<Box<dyn Step>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(step) => batch.push(step),
                Err(_) => break,
            }
        }
        // Work alone in its transaction needs no SAVEPOINT either: its failure rolls back
        // only its own writes, and its own error is its answer.
        let straight = batch.len() == 1 || batch.iter().all(|s| s.repeatable());
        let mut committed = None;
        if straight {
            committed = pass(&db, &mut batch, false).await;
            if committed.is_none() && batch.len() == 1 {
                committed = Some(Ok(()));
            }
        }
        // Otherwise (or after a failure) each piece in a SAVEPOINT of its own; this pass
        // always runs every piece, so it always has an outcome.
        let committed = match committed {
            Some(committed) => committed,
            None => pass(&db, &mut batch, true).await.unwrap_or(Ok(())),
        };
        if let Err(e) = &committed {
            tracing::error!(error = %e, work = batch.len(), "group commit failed");
        }
        for step in batch {
            step.settle(committed.clone());
        }
    }
}

/// Runs every step of `batch` in one transaction and commits it; returns how the
/// transaction ended. Straight (not `isolated`), the first failure rolls everything back and
/// stops: `None`.
async fn pass(
    db: &DatabaseConnection,
    batch: &mut [Box<dyn Step>],
    isolated: bool,
) -> Option<std::result::Result<(), Arc<DbErr>>> {
    let txn = match crate::db::begin_write(db).await {
        Ok(txn) => txn,
        Err(e) => {
            tracing::error!(error = %e, work = batch.len(), "cannot start a write transaction");
            return Some(Err(Arc::new(DbErr::Custom(e.to_string()))));
        }
    };
    for step in batch.iter_mut() {
        if !step.run(&txn, isolated).await && !isolated {
            if let Err(e) = txn.rollback().await {
                tracing::warn!(error = %e, "rollback of a failed group failed");
            }
            return None;
        }
    }
    Some(txn.commit().await.map_err(Arc::new))
}
