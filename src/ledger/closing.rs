//! Closing a movement early, a reversal or a write-off, asked against the
//! movement as PostgreSQL holds it: the closing is expanded into entries
//! from the halves read, applied as one batch, and answered from the
//! batch's receipts, with nothing read back.

use super::handle::Ledger;
use super::reads::{ClosingEntry, movements};
use crate::domain::{
    Closing, Differs, Halves, MovementClosing, MovementView, Outcome, Quantity, RejectReason,
};
use crate::telemetry::Source;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How often a closing is asked again when a half of its movement was
/// applied between reading the movement and deciding: a movement has two
/// halves, so twice is enough, and once more is a margin.
const ATTEMPTS: usize = 3;

/// What became of a closing.
#[derive(Debug)]
pub enum Closed {
    /// Applied now, or before (`duplicate`): its entries, and the movement
    /// as it now stands.
    Done {
        duplicate: bool,
        entries: Vec<ClosingEntry>,
        movement: Box<MovementView>,
    },
    /// Refused; nothing is recorded.
    Refused {
        reason: RejectReason,
        differs: Differs,
    },
    /// No half of the movement has been applied.
    NotFound,
}

impl Ledger {
    /// Applies `closing` to the movement `movement_id` as it stands, again
    /// if a half of it was applied meanwhile. `source` is the audit log's
    /// `source` for its entries, made `now`.
    pub async fn close(
        &self,
        closing: &Closing,
        movement_id: Uuid,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Closed, sqlx::Error> {
        for _ in 0..ATTEMPTS {
            let Some(view) = movements::movement(&self.reads, movement_id).await? else {
                return Ok(Closed::NotFound);
            };
            let entries = closing.entries(&halves(&view), source, now);
            if entries.is_empty() {
                // A write-off of a movement whose departure is unseen.
                return Ok(refused(
                    RejectReason::MovementNotInTransit,
                    Differs::default(),
                ));
            }
            let applied = self.apply(&entries).await?;
            self.metrics.outcomes(Source::Webhook, &applied.outcomes);
            let duplicate = match applied.outcomes.first() {
                Some(Outcome::Applied { .. }) => false,
                Some(Outcome::Duplicate { .. }) => true,
                Some(Outcome::Rejected {
                    reason: RejectReason::MovementChanged,
                    ..
                }) => continue,
                Some(Outcome::Rejected {
                    reason: RejectReason::MovementNotFound,
                    ..
                }) => return Ok(Closed::NotFound),
                Some(&Outcome::Rejected {
                    reason, differs, ..
                }) => return Ok(refused(reason, differs)),
                None => unreachable!("a closing has an entry"),
            };
            let closed: Vec<ClosingEntry> = entries
                .iter()
                .zip(applied.changes)
                .filter_map(|(e, change)| {
                    let c = change?;
                    Some(ClosingEntry {
                        seq: c.seq,
                        warehouse_id: c.warehouse_id,
                        reverses: e.correction.as_ref().and_then(|d| d.reverses),
                        delta: c.delta,
                        stock_after: c.quantity,
                        applied_at: c.changed_at,
                    })
                })
                .collect();
            let applied_at = closed
                .first()
                .map_or(applied.processed_at, |c| c.applied_at);
            let movement = match MovementClosing::from_details(&closing.details, applied_at) {
                Some(done) => view.closed(closing.kind, done),
                None => view,
            };
            return Ok(Closed::Done {
                duplicate,
                entries: closed,
                movement: Box::new(movement),
            });
        }
        Ok(refused(RejectReason::MovementChanged, Differs::default()))
    }
}

fn refused(reason: RejectReason, differs: Differs) -> Closed {
    Closed::Refused { reason, differs }
}

/// The movement's applied halves as a closing is asked against them.
fn halves(movement: &MovementView) -> Halves {
    let side = |warehouse: Option<Uuid>, quantity: Option<i32>| {
        Some((warehouse?, Quantity::parse(i64::from(quantity?)).ok()?))
    };
    Halves {
        movement_id: movement.movement_id,
        product_id: movement.product_id,
        departure: side(movement.source_warehouse_id, movement.departure_quantity),
        arrival: side(movement.destination_warehouse_id, movement.arrival_quantity),
    }
}
