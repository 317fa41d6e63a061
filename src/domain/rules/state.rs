//! What the rules decide on: the state a batch may read or change, and the
//! events already decided before it.

use super::outcome::{Differs, Verdict};
use crate::domain::correction::CorrectionDetails;
use crate::domain::entry::EventKind;
use crate::domain::event::{EventContent, MovementEvent};
use crate::domain::movement::MovementState;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// An event already in the audit log (or earlier in this batch).
#[derive(Debug, Clone, PartialEq)]
pub struct PriorEvent {
    pub content: EventContent,
    /// A correction's details; `None` for a movement's half.
    pub correction: Option<Box<CorrectionDetails>>,
    pub verdict: Verdict,
    pub processed_at: DateTime<Utc>,
    /// Where an applied event stands in the audit log; `None` for a
    /// rejected one, and for one decided earlier in the same batch, whose
    /// number its write gives it.
    pub recorded: Option<Recorded>,
}

/// An applied audit entry's place and effect, as the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub seq: i64,
    pub delta: i64,
    pub stock_after: i64,
}

impl PriorEvent {
    /// Whether `e` is this event sent again. A correction's time is the
    /// request's, so a retry is the same correction whenever it comes.
    pub fn is_same(&self, e: &MovementEvent) -> bool {
        if e.content.kind.is_correction() {
            let (a, b) = (&self.content, &e.content);
            (a.kind, a.warehouse_id, a.product_id, a.quantity)
                == (b.kind, b.warehouse_id, b.product_id, b.quantity)
                && self.correction == e.correction
        } else {
            self.content == e.content
        }
    }

    /// What `e` changed against this event, which decided its key.
    pub(super) fn differs(&self, e: &MovementEvent) -> Differs {
        if e.content.kind.is_correction() {
            Differs::between_corrections(
                (&self.content, self.correction.as_deref()),
                (&e.content, e.correction.as_deref()),
            )
        } else {
            Differs::between(&self.content, &e.content)
        }
    }
}

/// Everything a batch may read or change, keyed the way the rules look it up.
/// Missing entries mean "nothing stored yet": zero stock, empty movement, no
/// prior events.
#[derive(Debug, Default, Clone)]
pub struct LedgerState {
    pub stock: HashMap<(Uuid, Uuid), i64>,
    pub movements: HashMap<Uuid, MovementState>,
    /// Keyed by `(id, kind.idempotency_kind())`.
    pub history: HashMap<(Uuid, EventKind), Vec<PriorEvent>>,
    /// For counts made against a basis: the stock of the pair `(w, p)`
    /// right after its last change at or before `seq`, keyed `(seq, w, p)`;
    /// missing means the pair had no change by then (0).
    pub basis: HashMap<(i64, Uuid, Uuid), i64>,
    /// What the batch decided: for each event (by its place in the batch)
    /// that keys the audit log's deciding index by a claim in place of its
    /// event, that claim (see [`claim`]). Empty for nearly every batch.
    pub claims: HashMap<usize, &'static str>,
}

impl LedgerState {
    /// The applied event that `e` sends again, if `e` is a duplicate: from
    /// the audit log, or from earlier in the batch.
    pub fn duplicated(&self, e: &MovementEvent) -> Option<&PriorEvent> {
        let c = &e.content;
        self.history
            .get(&(c.movement_id, c.kind.idempotency_kind()))?
            .iter()
            .find(|p| p.verdict == Verdict::Applied && p.is_same(e))
    }
}

/// Records `e` in the batch's history with its `verdict`, so later events
/// of the batch see it as decided.
pub(super) fn remember(
    state: &mut LedgerState,
    e: &MovementEvent,
    verdict: Verdict,
    now: DateTime<Utc>,
) {
    let c = &e.content;
    state
        .history
        .entry((c.movement_id, c.kind.idempotency_kind()))
        .or_default()
        .push(PriorEvent {
            content: *c,
            correction: e.correction.clone(),
            verdict,
            processed_at: now,
            recorded: None,
        });
}
