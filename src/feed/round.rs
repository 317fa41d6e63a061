//! What one round of the relay publishes: the next changes after its
//! position, from the ledger's tail while that holds every number, else
//! from the log, each completed with what its alerts depend on.

use super::levels::Levels;
use crate::ledger::log::{Change, ChangeLog, LoggedChange};
use crate::telemetry::Metrics;
use anyhow::Context;

/// Changes read and published per round: large enough to keep the
/// producer's batches full and the rounds few under a full ingest, small
/// enough that a retry repeats little.
pub const CHUNK: i64 = 5_000;

/// A change as the relay publishes it: with what its alerts depend on.
#[derive(Debug, Clone)]
pub struct RelayedChange {
    pub change: Change,
    /// The pair's low-stock level in force when the change was numbered.
    pub level: Option<i64>,
    /// Whether the pair had no change before this one.
    pub first_change: bool,
}

/// The next changes after `position`, up to `horizon`, and the position
/// they take the relay to: from the tail while it holds every number
/// after `position`, else from the log, up to where the tail holds
/// numbers again.
pub async fn read(
    log: &ChangeLog,
    levels: &Levels,
    metrics: &Metrics,
    position: i64,
    horizon: i64,
) -> anyhow::Result<(Vec<RelayedChange>, i64)> {
    let run = log.tail().take(position, horizon, CHUNK as usize);
    if run.through > position {
        metrics.feed_read("tail", run.changes.len());
        let chunk = complete(log, levels, run.changes)
            .await
            .context("Failed to look up the levels of stock changes")?;
        return Ok((chunk, run.through));
    }
    let end = log
        .tail()
        .next_held(position)
        .map_or(horizon, |held| (held - 1).min(horizon));
    let logged = log
        .logged(position, end, CHUNK)
        .await
        .context("Failed to read stock changes")?;
    let chunk = complete(log, levels, logged)
        .await
        .context("Failed to read stock changes")?;
    metrics.feed_read("log", chunk.len());
    // Fewer than a chunk: nothing else is committed up to `end`, and the
    // position may skip what is not a change.
    let next = match chunk.last() {
        Some(last) if chunk.len() as i64 == CHUNK => last.change.seq,
        _ => end,
    };
    Ok((chunk, next))
}

/// Changes as the relay publishes them, with what their alerts depend on
/// that the ledger cannot know: the levels in effect, and whether a change
/// from 0 is its pair's first.
async fn complete(
    log: &ChangeLog,
    levels: &Levels,
    changes: Vec<LoggedChange>,
) -> Result<Vec<RelayedChange>, sqlx::Error> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let first = log.first_changes(&changes).await?;
    let numbered = changes
        .iter()
        .map(|t| (t.change.seq, t.change.warehouse_id, t.change.product_id));
    let levels = levels.in_force_at(numbered).await?;
    Ok(changes
        .into_iter()
        .map(|t| {
            let c = t.change;
            RelayedChange {
                level: levels.get(&c.seq).copied(),
                first_change: first.contains(&c.seq),
                change: c,
            }
        })
        .collect())
}
