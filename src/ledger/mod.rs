//! The ledger: stock, movements and the audit log in PostgreSQL.
//!
//! [`Ledger::apply`] is the one way events change state, for Kafka and the
//! webhook alike: one transaction per batch, retried on a transient conflict,
//! and followed by a cache invalidation before the caller may acknowledge
//! anything.

mod apply;
pub mod reads;
pub mod verify;

pub use apply::Applied;

use crate::cache::Cache;
use crate::domain::{MovementEvent, Outcome};
use crate::telemetry::Metrics;
use sqlx::PgPool;
use std::time::Instant;
use tracing::Span;
use tracing::field::Empty;

/// How often a batch is retried when PostgreSQL reports a deadlock or a
/// serialization failure. The lock order makes both unexpected; the retry
/// keeps such an error from ever reaching a caller.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    cache: Cache,
    metrics: Metrics,
}

impl Ledger {
    pub fn new(pool: PgPool, cache: Cache, metrics: Metrics) -> Self {
        Ledger {
            pool,
            cache,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
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
        let mut attempt = 1;
        let applied = loop {
            let mut tx = self.pool.begin().await?;
            match apply::apply_in_transaction(&mut tx, events).await {
                Ok(applied) => {
                    tx.commit().await?;
                    break applied;
                }
                Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => {
                    tracing::warn!(error = %e, attempt, "retrying batch after a transient conflict");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        self.metrics.batch(events.len(), started.elapsed());
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

/// Deadlock detected or serialization failure.
fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("40P01") | Some("40001")
    )
}
