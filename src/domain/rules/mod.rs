//! The ledger rules, as a pure function over in-memory state.
//!
//! The ledger reads exactly the state a batch can touch, hands it to
//! [`apply_batch`], and writes back what changed (checking that what it
//! read still holds). Keeping the rules free of
//! I/O means they can be unit-tested exhaustively, benchmarked on their own,
//! and reasoned about as "events applied one by one, in order".

pub mod claim;
mod closings;
mod outcome;
mod state;

pub use outcome::{Differs, Outcome, RejectReason, Verdict};
use state::remember;
pub use state::{LedgerState, PriorEvent, Recorded};

use super::entry::EventKind;
use super::event::MovementEvent;
use super::movement::Side;
use chrono::{DateTime, Utc};

/// Applies `events` in order to `state`, exactly as if they arrived one by
/// one, and returns one outcome per event, in order. `now` is the
/// processing time recorded for the events it applies.
///
/// A reversal is one entry per half it reverses, and those entries come
/// together (the same movement and `reversal_id`, one after the other):
/// they are decided together, all or none.
pub fn apply_batch(
    state: &mut LedgerState,
    events: &[MovementEvent],
    now: DateTime<Utc>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(events.len());
    let mut rest = events;
    while let Some(first) = rest.first() {
        let place = outcomes.len();
        if first.content.kind == EventKind::Reversal {
            // A reversal has an entry per half: a second entry for the
            // same half begins the same reversal sent again.
            let n = 1 + rest.get(1).is_some_and(|e| same_reversal(first, e)) as usize;
            let (group, after) = rest.split_at(n);
            outcomes.extend(closings::reverse(state, group, place, now));
            rest = after;
        } else {
            let outcome = apply_one(state, first, now);
            if let Outcome::Rejected {
                reason: RejectReason::MovementReversed,
                replayed: false,
                ..
            } = outcome
            {
                state.claims.insert(place, claim::late(first.content.kind));
            }
            outcomes.push(outcome);
            rest = &rest[1..];
        }
    }
    outcomes
}

/// Whether `e` is the entry for the other half of the reversal `first`
/// begins.
fn same_reversal(first: &MovementEvent, e: &MovementEvent) -> bool {
    let id = |e: &MovementEvent| e.correction.as_ref().and_then(|d| d.reversal_id);
    let half = |e: &MovementEvent| e.correction.as_ref().and_then(|d| d.reverses);
    e.content.kind == EventKind::Reversal
        && e.content.movement_id == first.content.movement_id
        && id(e) == id(first)
        && half(e) != half(first)
}

fn apply_one(state: &mut LedgerState, event: &MovementEvent, now: DateTime<Utc>) -> Outcome {
    if event.content.kind == EventKind::WriteOff {
        return closings::write_off(state, event, now);
    }
    // Idempotency first: a key seen before decides the outcome on its own.
    if let Some(outcome) = replay(state, event, now) {
        return outcome;
    }
    if event.content.kind.is_correction() {
        return correct(state, event, now);
    }
    let e = &event.content;
    let movement = state.movements.get(&e.movement_id);
    if movement.is_some_and(|m| m.reversal.is_some()) {
        return reject(state, event, RejectReason::MovementReversed, now);
    }
    if movement.is_some_and(|m| !m.accepts(e)) {
        return reject(state, event, RejectReason::MovementMismatch, now);
    }

    let pair = (e.warehouse_id, e.product_id);
    let current = state.stock.get(&pair).copied().unwrap_or(0);
    let q = i64::from(e.quantity.get());
    let after = match e.kind {
        EventKind::Departure if current >= q => current - q,
        EventKind::Departure => return reject(state, event, RejectReason::InsufficientStock, now),
        _ => match current.checked_add(q) {
            Some(after) => after,
            None => return reject(state, event, RejectReason::StockOverflow, now),
        },
    };

    state.stock.insert(pair, after);
    state
        .movements
        .entry(e.movement_id)
        .or_default()
        .record(e.kind, e.product_id, Side::of(e));
    remember(state, event, Verdict::Applied, now);
    Outcome::Applied { stock_after: after }
}

/// A count or an adjustment: refused if the stock is not the one it
/// expects, or if it would take the stock below 0; else applied now, on
/// top of everything before it. A count against a basis corrects by what
/// it found minus the stock right after the basis ("keep the difference"),
/// so changes made since the basis stay; without one it sets the stock.
fn correct(state: &mut LedgerState, event: &MovementEvent, now: DateTime<Utc>) -> Outcome {
    let e = &event.content;
    let pair = (e.warehouse_id, e.product_id);
    let current = state.stock.get(&pair).copied().unwrap_or(0);
    let details = event.correction.as_deref();
    if details
        .and_then(|d| d.expected_quantity)
        .is_some_and(|expected| expected != current)
    {
        return reject(state, event, RejectReason::StaleQuantity, now);
    }
    let q = i64::from(e.quantity.get());
    let after = match (e.kind, details.and_then(|d| d.basis_seq)) {
        (EventKind::Count, Some(seq)) => {
            let basis = state
                .basis
                .get(&(seq, pair.0, pair.1))
                .copied()
                .unwrap_or(0);
            current.checked_add(q - basis)
        }
        (EventKind::Count, None) => Some(q),
        _ => current.checked_add(q),
    };
    match after {
        None => reject(state, event, RejectReason::StockOverflow, now),
        Some(after) if after < 0 => reject(state, event, RejectReason::InsufficientStock, now),
        Some(after) => {
            state.stock.insert(pair, after);
            remember(state, event, Verdict::Applied, now);
            Outcome::Applied { stock_after: after }
        }
    }
}

/// The outcome of an event whose key was decided before: the same event
/// again is a duplicate (or the same refusal), other content a conflicting
/// duplicate. `None` for a key never seen.
fn replay(state: &mut LedgerState, event: &MovementEvent, now: DateTime<Utc>) -> Option<Outcome> {
    let e = &event.content;
    let prior = state
        .history
        .get(&(e.movement_id, e.kind.idempotency_kind()))?;
    // What a conflicting duplicate differs from: the entry that decided
    // the key (applied or refused for a reason of its own).
    // Only a conflict pays for it, not the common duplicate.
    let differs = || {
        prior
            .iter()
            .find(|p| p.verdict != Verdict::Rejected(RejectReason::ConflictingDuplicate))
            .map(|decided| decided.differs(event))
            .unwrap_or_default()
    };
    if let Some(same) = prior.iter().find(|p| p.is_same(event)) {
        return Some(match same.verdict {
            Verdict::Applied => Outcome::Duplicate {
                stock_after: state
                    .stock
                    .get(&(e.warehouse_id, e.product_id))
                    .copied()
                    .unwrap_or(0),
                processed_at: same.processed_at,
            },
            Verdict::Rejected(reason) => Outcome::Rejected {
                reason,
                replayed: true,
                differs: if reason == RejectReason::ConflictingDuplicate {
                    differs()
                } else {
                    Differs::default()
                },
            },
        });
    }
    let differs = differs();
    remember(
        state,
        event,
        Verdict::Rejected(RejectReason::ConflictingDuplicate),
        now,
    );
    Some(Outcome::Rejected {
        reason: RejectReason::ConflictingDuplicate,
        replayed: false,
        differs,
    })
}

fn reject(
    state: &mut LedgerState,
    e: &MovementEvent,
    reason: RejectReason,
    now: DateTime<Utc>,
) -> Outcome {
    remember(state, e, Verdict::Rejected(reason), now);
    Outcome::Rejected {
        reason,
        replayed: false,
        differs: Differs::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventContent, Quantity};
    use chrono::TimeZone;
    use uuid::Uuid;

    fn ev(
        kind: EventKind,
        movement: u128,
        warehouse: u128,
        product: u128,
        q: i64,
    ) -> MovementEvent {
        MovementEvent {
            message_id: format!("msg-{movement}-{kind}"),
            source: "test".into(),
            event_time: None,
            content: EventContent {
                movement_id: Uuid::from_u128(movement),
                kind,
                warehouse_id: Uuid::from_u128(warehouse),
                product_id: Uuid::from_u128(product),
                quantity: Quantity::parse(q).unwrap(),
                occurred_at: Utc
                    .timestamp_opt(1_700_000_000 + movement as i64, 0)
                    .unwrap(),
            },
            attributes: Default::default(),
            correction: None,
        }
    }
    use EventKind::{Arrival, Departure};

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap()
    }

    fn labels(outcomes: &[Outcome]) -> Vec<&'static str> {
        outcomes.iter().map(Outcome::label).collect()
    }

    #[test]
    fn events_in_a_batch_take_effect_in_order() {
        let mut state = LedgerState::default();
        let batch = [
            ev(Arrival, 1, 10, 20, 10),
            ev(Departure, 2, 10, 20, 15),
            ev(Arrival, 3, 10, 20, 10),
        ];
        let effects = apply_batch(&mut state, &batch, now());
        assert_eq!(labels(&effects), ["applied", "rejected", "applied"]);
        assert_eq!(state.stock[&(Uuid::from_u128(10), Uuid::from_u128(20))], 20);
        assert_eq!(
            effects[1],
            Outcome::Rejected {
                reason: RejectReason::InsufficientStock,
                replayed: false,
                differs: Differs::default(),
            }
        );
    }

    #[test]
    fn a_resent_event_is_a_duplicate_and_changes_nothing() {
        let mut state = LedgerState::default();
        let a = ev(Arrival, 1, 10, 20, 7);
        let effects = apply_batch(&mut state, &[a.clone(), a], now());
        assert_eq!(labels(&effects), ["applied", "duplicate"]);
        assert_eq!(
            effects[1],
            Outcome::Duplicate {
                stock_after: 7,
                processed_at: now()
            }
        );
    }

    #[test]
    fn the_same_key_with_other_content_is_a_conflicting_duplicate() {
        let mut state = LedgerState::default();
        let a = ev(Arrival, 1, 10, 20, 7);
        let mut b = a.clone();
        b.content.quantity = Quantity::parse(8).unwrap();
        let differs = Differs::between(&a.content, &b.content);
        assert_eq!(differs.names(), ["quantity"]);
        let effects = apply_batch(&mut state, &[a, b.clone(), b], now());
        assert_eq!(labels(&effects), ["applied", "rejected", "rejected"]);
        assert_eq!(
            effects[1],
            Outcome::Rejected {
                reason: RejectReason::ConflictingDuplicate,
                replayed: false,
                differs,
            }
        );
        // The conflicting event itself, re-sent, is a replay of its rejection.
        assert_eq!(
            effects[2],
            Outcome::Rejected {
                reason: RejectReason::ConflictingDuplicate,
                replayed: true,
                differs,
            }
        );
    }

    #[test]
    fn a_conflicting_duplicate_names_every_field_it_changed_against_the_decided_event() {
        let mut state = LedgerState::default();
        let a = ev(Arrival, 1, 10, 20, 7);
        let mut b = a.clone();
        b.message_id = "other".into();
        b.content.warehouse_id = Uuid::from_u128(11);
        b.content.occurred_at += chrono::Duration::seconds(1);
        let mut c = a.clone();
        c.content.quantity = Quantity::parse(9).unwrap();
        let effects = apply_batch(&mut state, &[a, b, c], now());
        let named: Vec<Vec<&str>> = effects
            .iter()
            .map(|o| match o {
                Outcome::Rejected { differs, .. } => differs.names(),
                _ => Vec::new(),
            })
            .collect();
        // Each against the applied event, not against the other conflict.
        assert_eq!(
            named,
            [vec![], vec!["warehouse_id", "timestamp"], vec!["quantity"]]
        );
    }

    #[test]
    fn a_rejection_is_final_even_after_stock_arrives() {
        let mut state = LedgerState::default();
        let d = ev(Departure, 1, 10, 20, 5);
        let first = apply_batch(&mut state, &[d.clone(), ev(Arrival, 2, 10, 20, 50)], now());
        assert_eq!(labels(&first), ["rejected", "applied"]);
        let again = apply_batch(&mut state, &[d], now());
        assert_eq!(
            again[0],
            Outcome::Rejected {
                reason: RejectReason::InsufficientStock,
                replayed: true,
                differs: Differs::default(),
            }
        );
        assert_eq!(state.stock[&(Uuid::from_u128(10), Uuid::from_u128(20))], 50);
    }

    #[test]
    fn a_movement_joins_its_departure_and_arrival_in_either_order() {
        let mut state = LedgerState::default();
        let effects = apply_batch(
            &mut state,
            &[
                ev(Arrival, 1, 11, 20, 98),
                ev(Arrival, 2, 10, 20, 100),
                ev(Departure, 1, 10, 20, 100),
            ],
            now(),
        );
        assert_eq!(labels(&effects), ["applied", "applied", "applied"]);
        let m = &state.movements[&Uuid::from_u128(1)];
        assert_eq!(m.departure.unwrap().warehouse_id, Uuid::from_u128(10));
        assert_eq!(m.arrival.unwrap().warehouse_id, Uuid::from_u128(11));
        assert_eq!(m.product_id, Some(Uuid::from_u128(20)));
    }

    #[test]
    fn halves_naming_another_product_or_the_same_warehouse_mismatch() {
        let mut state = LedgerState::default();
        apply_batch(
            &mut state,
            &[ev(Arrival, 8, 10, 20, 100), ev(Arrival, 9, 10, 21, 100)],
            now(),
        );
        let other_product = ev(Departure, 1, 10, 20, 1);
        let arrival_other_product = ev(Arrival, 1, 11, 21, 1);
        let effects = apply_batch(&mut state, &[other_product, arrival_other_product], now());
        assert_eq!(labels(&effects), ["applied", "rejected"]);
        assert_eq!(
            effects[1],
            Outcome::Rejected {
                reason: RejectReason::MovementMismatch,
                replayed: false,
                differs: Differs::default(),
            }
        );

        let effects = apply_batch(
            &mut state,
            &[ev(Departure, 2, 10, 21, 1), ev(Arrival, 2, 10, 21, 1)],
            now(),
        );
        assert_eq!(labels(&effects), ["applied", "rejected"]);
        // A rejected arrival leaves the stock it would have added untouched.
        assert_eq!(state.stock[&(Uuid::from_u128(10), Uuid::from_u128(21))], 99);
    }

    #[test]
    fn an_arrival_that_would_overflow_the_counter_is_refused() {
        let mut state = LedgerState::default();
        state
            .stock
            .insert((Uuid::from_u128(10), Uuid::from_u128(20)), i64::MAX - 1);
        let effects = apply_batch(&mut state, &[ev(Arrival, 1, 10, 20, 2)], now());
        assert_eq!(
            effects[0],
            Outcome::Rejected {
                reason: RejectReason::StockOverflow,
                replayed: false,
                differs: Differs::default(),
            }
        );
    }
}
