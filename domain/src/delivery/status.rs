//! "Delivered" statuses, committed many at a time.
//!
//! Every successful send ends in the same one-row update. Each one a step of its own in the
//! group-commit writer would cost a savepoint, an update and a release, one round trip each,
//! inside the one writer that ingest waits on too. Sends that finish while a batch is being
//! committed wait together for the next, which sets all of them with one statement.

use tokio::sync::{mpsc, oneshot};

use crate::pipeline::commit::Writer;
use crate::{DomainError, Result};

use super::queue;

/// How many statuses one statement sets at most.
const MAX_BATCH: usize = 512;

type Waiter = (i64, oneshot::Sender<Result<()>>);

/// The handle to the batching task; cheap to clone.
#[derive(Clone)]
pub struct Delivered {
    waiting: mpsc::UnboundedSender<Waiter>,
}

impl Delivered {
    /// Starts the task that commits statuses through `writer`.
    pub fn start(writer: Writer) -> Self {
        let (waiting, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, rx));
        Self { waiting }
    }

    /// Marks delivery `id` delivered; returns once the commit that holds it is done.
    pub async fn mark(&self, id: i64) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .send((id, tx))
            .map_err(|_| DomainError::Unavailable("the status writer has stopped".into()))?;
        rx.await.map_err(|_| {
            DomainError::Unavailable("the status writer dropped the status unwritten".into())
        })?
    }
}

async fn run(writer: Writer, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        let written = writer
            .write(move |txn| {
                let ids = ids.clone();
                Box::pin(async move { queue::mark_delivered_many(txn, &ids, None).await.map(drop) })
            })
            .await;
        let failure = written.as_ref().err().map(ToString::to_string);
        for (_, waiter) in batch {
            let _ = waiter.send(match &failure {
                None => Ok(()),
                Some(e) => Err(DomainError::Unavailable(format!(
                    "delivered status not committed: {e}"
                ))),
            });
        }
    }
}
