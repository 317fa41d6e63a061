//! The rules for what closes a movement early: its reversal (recorded in
//! error: each applied half gets an opposite entry, all or none) and its
//! write-off (lost on the road: no stock moves, and it stops counting as
//! in transit).
//!
//! Both are asked for over HTTP against a movement as it stands, so a
//! refusal is an answer, not a record: it says how the movement stood,
//! and asked again once that changed (stock came back, say), the same id
//! may apply. Only what applied is kept, and decides its id for good.

use super::claim;
use super::outcome::{Differs, Outcome, RejectReason, Verdict};
use super::state::{LedgerState, remember};
use crate::domain::correction::CorrectionDetails;
use crate::domain::entry::EventKind;
use crate::domain::event::MovementEvent;
use crate::domain::movement::{MovementClosing, MovementState};
use chrono::{DateTime, Utc};

/// Decides the entries of one reversal (see [`super::apply_batch`]): each
/// names a half it reverses, and together they must name every applied
/// half of the movement as it stands.
/// `place` is the place of the group's first entry in the batch, for its
/// claims.
pub(super) fn reverse(
    state: &mut LedgerState,
    group: &[MovementEvent],
    place: usize,
    now: DateTime<Utc>,
) -> Vec<Outcome> {
    debug_assert!(!group.is_empty() && group.len() <= 2, "a half per entry");
    let refuse = |reason, differs| {
        let refusal = Outcome::Rejected {
            reason,
            replayed: true,
            differs,
        };
        vec![refusal; group.len()]
    };
    let first = &group[0];
    if let Some(outcome) = decided(state, first, RejectReason::MovementReversed) {
        return match outcome {
            Outcome::Rejected {
                reason, differs, ..
            } => refuse(reason, differs),
            _ => group.iter().map(|e| again(state, e, outcome)).collect(),
        };
    }
    let Some(movement) = halves_of(state, first) else {
        return refuse(RejectReason::MovementNotFound, Differs::default());
    };
    if !names_every_half(movement, group) {
        return refuse(RejectReason::MovementChanged, Differs::default());
    }
    let afters = match stock_after(state, group) {
        Ok(afters) => afters,
        Err(reason) => return refuse(reason, Differs::default()),
    };
    let undecided = |half| {
        let other = match half {
            Some(EventKind::Departure) => EventKind::Arrival,
            _ => EventKind::Departure,
        };
        group.len() == 1 && !decides(state, first, other)
    };
    let claims: Vec<&'static str> = group
        .iter()
        .map(|e| {
            claim::reversal(
                reversed_half(e).unwrap_or(EventKind::Arrival),
                undecided(reversed_half(e)),
            )
        })
        .collect();
    for (i, (e, after)) in group.iter().zip(&afters).enumerate() {
        state
            .stock
            .insert((e.content.warehouse_id, e.content.product_id), *after);
        remember(state, e, Verdict::Applied, now);
        state.claims.insert(place + i, claims[i]);
    }
    close(state, first, now);
    afters
        .into_iter()
        .map(|stock_after| Outcome::Applied { stock_after })
        .collect()
}

/// Each entry's pair's stock after it: the departure's quantity back, the
/// arrival's away; refused whole if either cannot be.
fn stock_after(state: &LedgerState, group: &[MovementEvent]) -> Result<Vec<i64>, RejectReason> {
    group
        .iter()
        .map(|e| {
            let current = stock_of(state, e);
            let q = i64::from(e.content.quantity.get());
            match reversed_half(e) {
                Some(EventKind::Departure) => {
                    current.checked_add(q).ok_or(RejectReason::StockOverflow)
                }
                _ if current >= q => Ok(current - q),
                _ => Err(RejectReason::InsufficientStock),
            }
        })
        .collect()
}

/// Decides a write-off: only of a movement in transit, whose departure it
/// names. Its entry moves no stock; it records the departure's pair as it
/// stands.
pub(super) fn write_off(
    state: &mut LedgerState,
    event: &MovementEvent,
    now: DateTime<Utc>,
) -> Outcome {
    let refuse = |reason| Outcome::Rejected {
        reason,
        replayed: true,
        differs: Differs::default(),
    };
    if let Some(outcome) = decided(state, event, RejectReason::MovementNotInTransit) {
        return again(state, event, outcome);
    }
    let Some(movement) = halves_of(state, event) else {
        return refuse(RejectReason::MovementNotFound);
    };
    if !movement.in_transit() {
        return refuse(RejectReason::MovementNotInTransit);
    }
    let c = &event.content;
    let named = movement
        .departure
        .is_some_and(|d| (d.warehouse_id, d.quantity) == (c.warehouse_id, c.quantity.get()));
    if !named || movement.product_id != Some(c.product_id) {
        return refuse(RejectReason::MovementChanged);
    }
    remember(state, event, Verdict::Applied, now);
    close(state, event, now);
    Outcome::Applied {
        stock_after: stock_of(state, event),
    }
}

/// The outcome of a closing whose movement has an applied one of its kind
/// already: the same id and details again answer as duplicates, the same
/// id with other details is a conflicting duplicate, and another id is
/// refused for `other`. `None` while none applied.
fn decided(state: &LedgerState, e: &MovementEvent, other: RejectReason) -> Option<Outcome> {
    let c = &e.content;
    let prior = state.history.get(&(c.movement_id, c.kind))?;
    let done = prior.iter().find(|p| p.verdict == Verdict::Applied)?;
    let (a, b) = (done.correction.as_deref(), e.correction.as_deref());
    let id = |d: Option<&CorrectionDetails>| d.and_then(CorrectionDetails::closing_id);
    let differs = Differs::between_closings(a, b);
    let reason = match () {
        _ if id(a) != id(b) => other,
        _ if !differs.is_empty() => RejectReason::ConflictingDuplicate,
        _ => {
            return Some(Outcome::Duplicate {
                stock_after: 0,
                processed_at: done.processed_at,
            });
        }
    };
    let differs = match reason {
        RejectReason::ConflictingDuplicate => differs,
        _ => Differs::default(),
    };
    Some(Outcome::Rejected {
        reason,
        replayed: true,
        differs,
    })
}

/// Whether the movement of `e` has an entry that decides its `half`
/// (applied, or refused for a reason of its own).
fn decides(state: &LedgerState, e: &MovementEvent, half: EventKind) -> bool {
    state
        .history
        .get(&(e.content.movement_id, half))
        .is_some_and(|prior| {
            prior
                .iter()
                .any(|p| p.verdict != Verdict::Rejected(RejectReason::ConflictingDuplicate))
        })
}

/// `outcome` for the entry `e`: a duplicate reports its pair's stock now.
fn again(state: &LedgerState, e: &MovementEvent, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Duplicate { processed_at, .. } => Outcome::Duplicate {
            stock_after: stock_of(state, e),
            processed_at,
        },
        other => other,
    }
}

/// The movement `e` closes, if a half of it is applied.
fn halves_of<'a>(state: &'a LedgerState, e: &MovementEvent) -> Option<&'a MovementState> {
    state
        .movements
        .get(&e.content.movement_id)
        .filter(|m| m.departure.is_some() || m.arrival.is_some())
}

/// Whether the reversal's entries name exactly the applied halves of
/// `movement`, each by its warehouse, product and quantity.
fn names_every_half(movement: &MovementState, group: &[MovementEvent]) -> bool {
    let halves = [
        (EventKind::Departure, movement.departure),
        (EventKind::Arrival, movement.arrival),
    ];
    let applied = halves.iter().filter(|(_, side)| side.is_some()).count();
    applied == group.len()
        && group.iter().all(|e| {
            let c = &e.content;
            halves.iter().any(|(kind, side)| {
                reversed_half(e) == Some(*kind)
                    && side.is_some_and(|s| {
                        (s.warehouse_id, s.quantity) == (c.warehouse_id, c.quantity.get())
                    })
                    && movement.product_id == Some(c.product_id)
            })
        })
}

/// The half a reversal's entry reverses.
fn reversed_half(e: &MovementEvent) -> Option<EventKind> {
    e.correction.as_ref()?.reverses
}

fn stock_of(state: &LedgerState, e: &MovementEvent) -> i64 {
    let c = &e.content;
    state
        .stock
        .get(&(c.warehouse_id, c.product_id))
        .copied()
        .unwrap_or(0)
}

/// Marks the movement of `e` closed by it.
fn close(state: &mut LedgerState, e: &MovementEvent, now: DateTime<Utc>) {
    let closing = e
        .correction
        .as_deref()
        .and_then(|d| MovementClosing::from_details(d, now));
    debug_assert!(closing.is_some(), "a closing carries its id");
    if let (Some(closing), Some(movement)) =
        (closing, state.movements.get_mut(&e.content.movement_id))
    {
        movement.close(e.content.kind, closing);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LedgerState, Outcome, RejectReason, apply_batch};
    use crate::domain::closing::{Closing, Halves, read_closing};
    use crate::domain::entry::{EventKind, Quantity};
    use crate::domain::event::MovementEvent;
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn half(kind: EventKind, warehouse: u128, q: i64) -> MovementEvent {
        let message = json!({
            "id": format!("{kind}"), "source": "test", "specversion": "1.0",
            "type": "ru.retail.warehouses.movement",
            "data": {"movement_id": id(1), "warehouse_id": id(warehouse), "product_id": id(9),
                     "timestamp": "2025-01-01T00:00:00Z", "event": kind.as_str(), "quantity": q}
        });
        MovementEvent::from_structured(message.to_string().as_bytes()).unwrap()
    }

    fn closing(kind: EventKind, n: u128) -> Closing {
        let key = match kind {
            EventKind::Reversal => "reversal_id",
            _ => "write_off_id",
        };
        read_closing(kind, &json!({key: id(n), "reason": "correction"})).unwrap()
    }

    /// The closing's entry for one half (the departure, unless `reverses`
    /// names the arrival) at `warehouse`.
    fn entry(c: &Closing, reverses: Option<EventKind>, warehouse: u128, q: i64) -> MovementEvent {
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let side = Some((id(warehouse), Quantity::parse(q).unwrap()));
        let arrival = reverses == Some(EventKind::Arrival);
        let halves = Halves {
            movement_id: id(1),
            product_id: id(9),
            departure: side.filter(|_| !arrival),
            arrival: side.filter(|_| arrival),
        };
        let mut entries = c.entries(&halves, "test", now);
        assert_eq!(entries.len(), 1, "one half named");
        entries.remove(0)
    }

    fn labels(state: &mut LedgerState, events: &[MovementEvent]) -> Vec<String> {
        apply_batch(state, events, Utc::now())
            .iter()
            .map(|o| match o {
                Outcome::Rejected {
                    reason, replayed, ..
                } => format!("{reason}{}", if *replayed { "" } else { " (recorded)" }),
                other => other.label().to_string(),
            })
            .collect()
    }

    #[test]
    fn a_reversal_of_one_half_claims_the_other_while_it_is_undecided() {
        let mut state = LedgerState::default();
        state.stock.insert((id(2), id(9)), 10);
        let r = closing(EventKind::Reversal, 5);
        let batch = [
            half(EventKind::Departure, 2, 4),
            entry(&r, Some(EventKind::Departure), 2, 4),
            half(EventKind::Arrival, 3, 4),
        ];
        let got = labels(&mut state, &batch);
        assert_eq!(got, ["applied", "applied", "movement_reversed (recorded)"]);
        assert_eq!(state.claims.get(&1), Some(&"arrival"));
        assert_eq!(state.claims.get(&2), Some(&"arrival:late"));
        assert_eq!(state.stock[&(id(2), id(9))], 10);
    }

    #[test]
    fn a_reversal_sent_twice_in_one_batch_applies_once_and_then_is_a_duplicate() {
        let mut state = LedgerState::default();
        state.stock.insert((id(2), id(9)), 10);
        let r = closing(EventKind::Reversal, 5);
        let again = entry(&r, Some(EventKind::Departure), 2, 4);
        let batch = [half(EventKind::Departure, 2, 4), again.clone(), again];
        assert_eq!(
            labels(&mut state, &batch),
            ["applied", "applied", "duplicate"]
        );
    }

    #[test]
    fn a_reversal_that_names_halves_the_movement_no_longer_has_is_refused_unrecorded() {
        let mut state = LedgerState::default();
        state.stock.insert((id(2), id(9)), 10);
        let r = closing(EventKind::Reversal, 5);
        // Asked while only the departure was applied; the arrival came first.
        let batch = [
            half(EventKind::Departure, 2, 4),
            half(EventKind::Arrival, 3, 4),
            entry(&r, Some(EventKind::Departure), 2, 4),
        ];
        let got = labels(&mut state, &batch);
        assert_eq!(got, ["applied", "applied", "movement_changed"]);
        assert!(state.claims.is_empty());
    }

    #[test]
    fn a_write_off_applies_only_in_transit_and_moves_no_stock() {
        let mut state = LedgerState::default();
        state.stock.insert((id(2), id(9)), 10);
        let w = closing(EventKind::WriteOff, 6);
        let other = closing(EventKind::WriteOff, 7);
        let batch = [
            entry(&w, None, 2, 4),
            half(EventKind::Departure, 2, 4),
            entry(&w, None, 2, 4),
            entry(&other, None, 2, 4),
            half(EventKind::Arrival, 3, 4),
        ];
        let got = labels(&mut state, &batch);
        assert_eq!(
            got,
            [
                RejectReason::MovementNotFound.as_str(),
                "applied",
                "applied",
                RejectReason::MovementNotInTransit.as_str(),
                "applied",
            ]
        );
        assert_eq!(state.stock[&(id(2), id(9))], 6);
        let m = &state.movements[&id(1)];
        assert!(m.write_off.is_some() && m.arrival.is_some());
    }
}
