//! Group commit: one writer task runs the writes of many concurrent sessions in one
//! transaction, so one fsync acknowledges them all.
//!
//! Each piece of work runs inside a SAVEPOINT of its own: when it fails, only its own writes
//! are rolled back and only its caller is told. Every caller learns the outcome only after
//! the commit that holds its writes (or learns that nothing was kept).

use std::sync::Arc;

use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::{DomainError, Result};

/// How many pieces of work one transaction takes at most.
const MAX_BATCH: usize = 256;

/// Called with the outcome of the commit that held the work.
type Settle = Box<dyn FnOnce(std::result::Result<(), Arc<DbErr>>) + Send>;
type Step = Box<dyn for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, Settle> + Send>;

/// The handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    steps: mpsc::UnboundedSender<Step>,
}

impl Writer {
    /// Starts the writer task on `db`.
    pub fn start(db: DatabaseConnection) -> Self {
        let (steps, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        Self { steps }
    }

    /// Runs `work` in the next group transaction; returns its result once that transaction
    /// is committed. An error means none of its writes were kept.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let step: Step = Box::new(move |txn| {
            Box::pin(async move {
                let result = in_savepoint(txn, work).await;
                Box::new(move |committed: std::result::Result<(), Arc<DbErr>>| {
                    let outcome = match (result, committed) {
                        (Err(e), _) => Err(e),
                        (Ok(value), Ok(())) => Ok(value),
                        (Ok(_), Err(e)) => Err(DomainError::Db(DbErr::Custom(format!(
                            "group commit failed: {e}"
                        )))),
                    };
                    let _ = tx.send(outcome);
                }) as Settle
            })
        });
        self.steps
            .send(step)
            .map_err(|_| DomainError::Unavailable("the database writer has stopped".into()))?;
        rx.await.map_err(|_| {
            DomainError::Unavailable("the database writer dropped the work unfinished".into())
        })?
    }
}

async fn in_savepoint<T, F>(txn: &DatabaseTransaction, work: F) -> Result<T>
where
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, Result<T>>,
{
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

async fn run(db: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<Step>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(step) => batch.push(step),
                Err(_) => break,
            }
        }
        // Dropping a step unrun tells its caller nothing was kept.
        let txn = match crate::db::begin_write(&db).await {
            Ok(txn) => txn,
            Err(e) => {
                tracing::error!(error = %e, work = batch.len(), "cannot start a write transaction");
                continue;
            }
        };
        let mut settles = Vec::with_capacity(batch.len());
        for step in batch {
            settles.push(step(&txn).await);
        }
        let committed = txn.commit().await.map_err(Arc::new);
        if let Err(e) = &committed {
            tracing::error!(error = %e, work = settles.len(), "group commit failed");
        }
        for settle in settles {
            settle(committed.clone());
        }
    }
}
