//! The ledger's handle, which every part of the service holds: its pools,
//! the cache, the stock it remembers and the tail of what it committed.
//! [`Ledger::apply`] is the one way events change state.

use super::apply::{self, Applied, Mode};
use super::horizon::{Foreign, Horizon};
use super::log::ChangeLog;
use super::remembered::RememberedStock;
use super::tail::LogTail;
use crate::cache::Cache;
use crate::domain::{MovementEvent, Outcome};
use crate::telemetry::Metrics;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Span;
use tracing::field::Empty;
use uuid::Uuid;

/// Optimistic attempts before a batch falls back to locking its rows. A
/// conflict needs a concurrent batch to change a row this one decided on
/// in the few milliseconds between its read and its write, so a second
/// conflict in a row means the rows are contended and locking is cheaper.
const OPTIMISTIC_ATTEMPTS: u32 = 2;

/// `READ_SCAN_LIMIT`'s default, for a ledger built without settings.
const DEFAULT_READ_SCAN: i64 = 100_000;

/// How many attempts a batch may take before its error reaches the caller.
///
/// Batches cannot deadlock each other (see [`apply`]), so what makes an
/// attempt fail is another transaction committing first: progress, not a
/// stall. A locking attempt holds every stock row and movement lock it
/// needs, so only an audit entry committed meanwhile for one of its
/// movements can beat it: one of the (at most two) entries that decide a
/// movement's halves, or a conflicting duplicate of one of its own events,
/// which it then finds and does not write again. So a locking batch fails
/// at most twice per movement plus once per event before it commits, and
/// the bound below is never the reason a batch fails. Past it, something
/// outside the ledger is at work (a deadlock with another program's
/// transaction, say), and the caller is told.
fn max_attempts(events: &[MovementEvent]) -> u32 {
    let movements: HashSet<Uuid> = events.iter().map(|e| e.content.movement_id).collect();
    let locking = 2 * movements.len() + events.len() + 1;
    OPTIMISTIC_ATTEMPTS + u32::try_from(locking).unwrap_or(u32::MAX - OPTIMISTIC_ATTEMPTS)
}

#[derive(Clone)]
pub struct Ledger {
    pub(super) pool: PgPool,
    /// The lookups' pool: the ledger's own unless [`Ledger::with_reads`]
    /// gives it one apart.
    pub(super) reads: PgPool,
    /// The most audit entries one lookup examines (`READ_SCAN_LIMIT`).
    pub(super) read_scan: i64,
    pub(super) cache: Cache,
    pub(super) metrics: Metrics,
    /// Shared by every clone: the Kafka workers and the webhook.
    pub(super) remembered: Arc<RememberedStock>,
    /// Notified after every commit, so the feed's horizon looks at once.
    pub(super) committed: Arc<Notify>,
    /// What this process committed lately, for the relay.
    pub(super) tail: LogTail,
}

impl Ledger {
    pub fn new(pool: PgPool, cache: Cache, metrics: Metrics) -> Self {
        Ledger {
            reads: pool.clone(),
            read_scan: DEFAULT_READ_SCAN,
            pool,
            cache,
            metrics,
            remembered: Arc::default(),
            committed: Arc::default(),
            tail: LogTail::default(),
        }
    }

    /// Reads the lookups (and the feed's pages) through `reads` instead of
    /// the pool it writes with, examining at most `scan` audit entries per
    /// read.
    pub fn with_reads(mut self, reads: PgPool, scan: u32) -> Self {
        self.reads = reads;
        self.read_scan = i64::from(scan);
        self
    }

    /// Starts keeping the change log's horizon until `stop` is cancelled,
    /// and returns the readers' handle on the log with the horizon's task.
    /// Every batch this ledger commits wakes the horizon at once.
    pub fn open_change_log(
        &self,
        foreign: Foreign,
        stop: CancellationToken,
    ) -> (ChangeLog, tokio::task::JoinHandle<()>) {
        let (horizon, task) = Horizon::spawn(
            self.pool.clone(),
            self.committed.clone(),
            self.metrics.clone(),
            foreign,
            stop,
        );
        let log = ChangeLog::new(
            self.pool.clone(),
            horizon,
            self.tail.clone(),
            self.read_scan,
        );
        (log, task)
    }

    /// Applies `events` in order in one transaction and invalidates the
    /// cache entries of the rows it touched. When this returns `Ok`, the effects are durable
    /// and visible to every lookup.
    #[tracing::instrument(
        name = "batch",
        skip_all,
        fields(
            size = events.len(),
            applied = Empty,
            duplicates = Empty,
            rejected = Empty,
            attempts = Empty,
            duration_ms = Empty,
        )
    )]
    pub async fn apply(&self, events: &[MovementEvent]) -> Result<Applied, sqlx::Error> {
        let started = Instant::now();
        // Worked out only once an attempt has failed: most batches never need it.
        let mut bound = None;
        let mut attempt = 1;
        // Asked once: a batch whose changes were left out must not enter
        // the tail with its numbers alone.
        let tailed = self.tail.is_open();
        let mut applied = loop {
            let mode = match attempt {
                1 => Mode::Optimistic { recall: true },
                a if a <= OPTIMISTIC_ATTEMPTS => Mode::Optimistic { recall: false },
                _ => Mode::Locking,
            };
            match apply::apply_once(&self.pool, &self.remembered, events, mode, tailed).await {
                Ok(applied) => break applied,
                Err(e) => match transient(&e) {
                    Some(cause) if attempt < *bound.get_or_insert_with(|| max_attempts(events)) => {
                        self.metrics.batch_retry(cause);
                        tracing::debug!(error = %e, attempt, ?mode, "running the batch again");
                        attempt += 1;
                    }
                    _ => return Err(e),
                },
            }
        };
        self.metrics.batch(events.len(), started.elapsed());
        // Before the horizon looks, so that the relay finds the batch here.
        self.tail.append(std::mem::take(&mut applied.logged));
        self.committed.notify_one();
        self.cache.invalidate(self.cache_keys(&applied)).await;
        let span = Span::current();
        let mut counts = [0usize; 3];
        for outcome in &applied.outcomes {
            counts[match outcome {
                Outcome::Applied { .. } => 0,
                Outcome::Duplicate { .. } => 1,
                Outcome::Rejected { .. } => 2,
            }] += 1;
        }
        span.record("applied", counts[0]);
        span.record("duplicates", counts[1]);
        span.record("rejected", counts[2]);
        span.record("attempts", attempt);
        span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
        tracing::debug!("batch committed");
        Ok(applied)
    }

    /// The cache entries of every row the batch touched.
    fn cache_keys(&self, applied: &Applied) -> Vec<String> {
        let stock = applied
            .stock
            .iter()
            .map(|&(w, p)| self.cache.stock_key(w, p));
        let movements = applied
            .movements
            .iter()
            .map(|&id| self.cache.movement_key(id));
        stock.chain(movements).collect()
    }
}

/// Why running the batch again may succeed: the write statement found a
/// row changed since it was read (a serialization failure it raised
/// itself), a concurrent batch wrote an audit entry this one meant to
/// write (a unique violation on one of the log's keys), or a deadlock
/// (with a transaction outside the ledger: batches take their locks in one
/// order).
fn transient(e: &sqlx::Error) -> Option<&'static str> {
    let db = e.as_database_error()?;
    match db.code().as_deref() {
        Some("40001") => Some("conflict"),
        Some("23505") if db.constraint().is_some_and(|c| CREATED_KEYS.contains(&c)) => {
            Some("conflict")
        }
        Some("40P01") => Some("deadlock"),
        _ => None,
    }
}

/// The unique keys of audit entries a batch writes without `ON CONFLICT`
/// (which would cost a speculative insertion per row): whoever commits
/// first wins, and the batch that loses is run again on what was committed.
const CREATED_KEYS: [&str; 3] = [
    "event_log_decides",
    "event_log_decisive",
    "event_log_conflicts",
];
