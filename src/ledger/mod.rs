//! The ledger: stock, movements and the audit log in PostgreSQL.
//!
//! [`Ledger::apply`] is the one way events change state, for Kafka and the
//! webhook alike: one transaction per batch, retried on a transient conflict,
//! and followed by a cache refresh before the caller may acknowledge
//! anything.

mod apply;
pub mod reads;

pub use apply::Applied;

use crate::cache::{Cache, CacheEntry};
use crate::domain::MovementEvent;
use sqlx::PgPool;

/// How often a batch is retried when PostgreSQL reports a deadlock or a
/// serialization failure. The lock order makes both unexpected; the retry
/// keeps such an error from ever reaching a caller.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    cache: Cache,
}

impl Ledger {
    pub fn new(pool: PgPool, cache: Cache) -> Self {
        Ledger { pool, cache }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Applies `events` in order in one transaction and refreshes the cache
    /// entries it changed. When this returns `Ok`, the effects are durable
    /// and visible to every lookup.
    pub async fn apply(&self, events: &[MovementEvent]) -> Result<Applied, sqlx::Error> {
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
        self.cache.refresh(self.cache_entries(&applied)).await;
        Ok(applied)
    }

    fn cache_entries(&self, applied: &Applied) -> Vec<CacheEntry> {
        let stock = applied
            .stock
            .iter()
            .map(|&(w, p, quantity, version)| CacheEntry {
                key: self.cache.stock_key(w, p),
                version,
                payload: quantity.to_string(),
            });
        let movements = applied.movements.iter().filter_map(|(id, state, version)| {
            let view = state.view(*id)?;
            Some(CacheEntry {
                key: self.cache.movement_key(*id),
                version: *version,
                payload: serde_json::to_string(&view).ok()?,
            })
        });
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
