//! Group commit for single events: concurrent webhook requests share one
//! ledger transaction.
//!
//! Requests queue on a channel; a committer task takes whatever has queued
//! while the previous transaction ran (up to a limit), applies it as one
//! batch in arrival order, and answers each request only after that batch
//! has committed. Under load the batches grow by themselves, so throughput
//! scales with concurrency while an idle service still commits at once.

use crate::domain::{MovementEvent, Outcome};
use crate::ledger::log::Change;
use crate::ledger::{Applied, Ledger};
use crate::telemetry::{Metrics, Source};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

/// The verdict on one submitted event, sent after its batch committed.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub outcome: Outcome,
    pub processed_at: DateTime<Utc>,
    /// For a correction or a closing: the committed change it made, or for
    /// a duplicate the one that decided it.
    pub change: Option<Change>,
    /// Its pair's stock as its batch left it.
    pub stock: i64,
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

type Reply<T> = oneshot::Sender<Result<T, CommitError>>;

/// What one caller submitted: an event, or events that must be decided
/// side by side in one batch (the entries of one reversal).
enum Job {
    One(MovementEvent, Reply<Receipt>),
    Together(Vec<MovementEvent>, Reply<Vec<Receipt>>),
}

/// Where a job's answer goes once its batch committed.
enum Answer {
    One(Reply<Receipt>),
    Together(usize, Reply<Vec<Receipt>>),
}

impl Answer {
    fn send(self, receipts: &mut impl Iterator<Item = Receipt>) {
        // A caller that went away no longer needs its answer; its events
        // are committed all the same.
        match self {
            Answer::One(reply) => {
                if let Some(receipt) = receipts.next() {
                    let _ = reply.send(Ok(receipt));
                }
            }
            Answer::Together(n, reply) => {
                let _ = reply.send(Ok(receipts.take(n).collect()));
            }
        }
    }

    fn fail(self, error: CommitError) {
        match self {
            Answer::One(reply) => drop(reply.send(Err(error))),
            Answer::Together(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

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
            .send(Job::One(event, reply))
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        receipt.await.map_err(|_| CommitError::ShuttingDown)?
    }

    /// Applies `events` next to each other in one batch (shared with
    /// whatever else is queued), and waits for the commit: a receipt per
    /// event, in order.
    pub async fn submit_together(
        &self,
        events: Vec<MovementEvent>,
    ) -> Result<Vec<Receipt>, CommitError> {
        let (reply, receipts) = oneshot::channel();
        self.jobs
            .send(Job::Together(events, reply))
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        receipts.await.map_err(|_| CommitError::ShuttingDown)?
    }
}

async fn run(ledger: Ledger, metrics: Metrics, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut jobs, max_batch).await > 0 {
        let mut events = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            match job {
                Job::One(event, reply) => {
                    events.push(event);
                    replies.push(Answer::One(reply));
                }
                Job::Together(group, reply) => {
                    replies.push(Answer::Together(group.len(), reply));
                    events.extend(group);
                }
            }
        }
        match ledger.apply(&events).await {
            Ok(applied) => {
                metrics.outcomes(Source::Webhook, &applied.outcomes);
                debug_assert_eq!(
                    events.len(),
                    applied.outcomes.len(),
                    "one outcome per event"
                );
                let mut receipts = receipts(&events, applied);
                for reply in replies {
                    reply.send(&mut receipts);
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
                    reply.fail(error.clone());
                }
            }
        }
    }
}

/// A receipt per event of a committed batch, in order.
fn receipts(events: &[MovementEvent], applied: Applied) -> impl Iterator<Item = Receipt> + '_ {
    let processed_at = applied.processed_at;
    let mut changes = applied.changes.into_iter();
    let quantities = applied.quantities;
    events
        .iter()
        .zip(applied.outcomes)
        .map(move |(event, outcome)| Receipt {
            outcome,
            processed_at,
            change: changes.next().flatten(),
            stock: quantities
                .get(&(event.content.warehouse_id, event.content.product_id))
                .copied()
                .unwrap_or(0),
        })
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
