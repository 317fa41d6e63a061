//! Group commit for single events: concurrent webhook requests share one
//! ledger transaction.
//!
//! Requests queue on a channel; a committer task takes whatever has queued
//! while the previous transaction ran (up to a limit), applies it as one
//! batch in arrival order, and answers each request only after that batch
//! has committed. Under load the batches grow by themselves, so throughput
//! scales with concurrency while an idle service still commits at once.

use crate::domain::{MovementEvent, Outcome};
use crate::ledger::Ledger;
use crate::telemetry::{Metrics, Source};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

/// The verdict on one submitted event, sent after its batch committed.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub outcome: Outcome,
    pub processed_at: DateTime<Utc>,
}

/// The event's batch did not commit; nothing of it was applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("failed to apply the batch: {0}")]
    Failed(String),
    #[error("the service is shutting down")]
    ShuttingDown,
}

type Job = (MovementEvent, oneshot::Sender<Result<Receipt, CommitError>>);

#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committer task. It stops once every handle is dropped and
    /// the queue is drained.
    pub fn spawn(
        ledger: Ledger,
        metrics: Metrics,
        max_batch: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(max_batch * 4);
        let task = tokio::spawn(run(ledger, metrics, queue, max_batch));
        (GroupCommit { jobs }, task)
    }

    /// Applies one event, sharing the transaction with whatever else is
    /// queued, and waits for the commit.
    pub async fn submit(&self, event: MovementEvent) -> Result<Receipt, CommitError> {
        let (reply, receipt) = oneshot::channel();
        self.jobs
            .send((event, reply))
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        receipt.await.map_err(|_| CommitError::ShuttingDown)?
    }
}

async fn run(ledger: Ledger, metrics: Metrics, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut jobs, max_batch).await > 0 {
        let (events, replies): (Vec<MovementEvent>, Vec<_>) = jobs.drain(..).unzip();
        match ledger.apply(&events).await {
            Ok(applied) => {
                metrics.outcomes(Source::Webhook, &applied.outcomes);
                // zip would silently drop answers if the counts differed.
                debug_assert_eq!(
                    replies.len(),
                    applied.outcomes.len(),
                    "one outcome per event"
                );
                for (reply, outcome) in replies.into_iter().zip(applied.outcomes) {
                    // A caller that went away no longer needs its answer;
                    // its event is committed all the same.
                    let _ = reply.send(Ok(Receipt {
                        outcome,
                        processed_at: applied.processed_at,
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = events.len(), "webhook batch failed");
                let error = if is_unavailable(&e) {
                    CommitError::Unavailable(e.to_string())
                } else {
                    CommitError::Failed(e.to_string())
                };
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Errors that mean "PostgreSQL cannot be reached", as opposed to a bug.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
    ) || e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("57P") || c.starts_with("08"))
}
