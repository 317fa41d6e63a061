//! What a batch's corrections and closings answer with: the committed
//! change each one made, or for a duplicate the change that decided it, so
//! that their handlers answer without reading the log back.
//!
//! Worked out only for a batch that holds a correction or a closing: a
//! batch of movements answers with its outcomes alone, as before.

use crate::domain::{LedgerState, MovementEvent, Outcome, Recorded};
use crate::ledger::change::{Change, LoggedChange};
use chrono::{DateTime, Utc};

/// Where an event's answer finds its change, as the rules decided it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// No change: refused, a movement's half, or nothing found.
    None,
    /// Its own entry, which this batch writes.
    Own,
    /// The entry it duplicates, already in the log.
    Logged(Recorded, DateTime<Utc>),
    /// The entry of an earlier event of this batch, which it duplicates.
    Earlier(usize),
}

/// Whether any event of the batch asks for its change.
pub(super) fn wanted(events: &[MovementEvent]) -> bool {
    events.iter().any(|e| e.content.kind.is_correction())
}

/// Where each event's change comes from, given the state the rules left
/// (whose history holds both the log's entries and the batch's own).
pub(super) fn sources(
    events: &[MovementEvent],
    outcomes: &[Outcome],
    state: &LedgerState,
) -> Vec<Source> {
    let mut sources = Vec::with_capacity(events.len());
    for (k, (e, outcome)) in events.iter().zip(outcomes).enumerate() {
        let source = match outcome {
            _ if !e.content.kind.is_correction() => Source::None,
            Outcome::Applied { .. } => Source::Own,
            Outcome::Duplicate { processed_at, .. } => match state.duplicated(e) {
                Some(prior) => match prior.recorded {
                    Some(recorded) => Source::Logged(recorded, *processed_at),
                    None => earlier(events, outcomes, k).map_or(Source::None, Source::Earlier),
                },
                None => Source::None,
            },
            Outcome::Rejected { .. } => Source::None,
        };
        sources.push(source);
    }
    sources
}

/// The earlier event of the batch, applied, that event `k` sends again.
fn earlier(events: &[MovementEvent], outcomes: &[Outcome], k: usize) -> Option<usize> {
    let e = &events[k];
    (0..k).rev().find(|&j| {
        matches!(outcomes[j], Outcome::Applied { .. })
            && events[j].content.movement_id == e.content.movement_id
            && events[j].content.kind == e.content.kind
            && events[j].content.warehouse_id == e.content.warehouse_id
            && events[j].correction == e.correction
    })
}

/// Each event's change, given the batch's `logged` changes (in `seq`
/// order) and the numbers its entries `taken`: the entry at place `p`
/// among the recorded took the `p`-th number.
pub(super) fn changes(
    events: &[MovementEvent],
    outcomes: &[Outcome],
    sources: &[Source],
    logged: &[LoggedChange],
    taken: &[i64],
) -> Vec<Option<Change>> {
    let mut changes: Vec<Option<Change>> = Vec::with_capacity(events.len());
    let mut place = 0;
    for (k, (e, outcome)) in events.iter().zip(outcomes).enumerate() {
        let own = outcome.is_recorded().then(|| {
            place += 1;
            taken[place - 1]
        });
        let change = match sources[k] {
            Source::None => None,
            Source::Own => own.and_then(|seq| {
                let i = logged.binary_search_by_key(&seq, |l| l.change.seq).ok()?;
                Some(logged[i].change.clone())
            }),
            Source::Logged(recorded, at) => Some(Change {
                seq: recorded.seq,
                warehouse_id: e.content.warehouse_id,
                product_id: e.content.product_id,
                delta: recorded.delta,
                quantity: recorded.stock_after,
                movement_id: e.content.movement_id,
                event: e.content.kind,
                message_id: e.message_id.clone(),
                changed_at: at,
            }),
            Source::Earlier(j) => changes[j].clone(),
        };
        changes.push(change);
    }
    debug_assert_eq!(place, taken.len(), "a number per recorded event");
    changes
}
