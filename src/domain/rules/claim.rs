//! Claims: the key an audit entry takes in the deciding index in place of
//! its event (migration 11), so that what must not both commit meets
//! there. The rules decide them, since only they know what the batch had
//! seen when it decided; the write plan writes them.
//!
//! - A reversal of a movement with one half applied, whose other half is
//!   undecided, claims that other half: the half and the reversal cannot
//!   both commit without one seeing the other. Where the other half was
//!   decided already (refused), no half can race it, and the entry claims
//!   `reversal:` and the half it reverses, as each entry of a reversal of
//!   both halves does: two reversals of one movement meet there.
//! - A half refused because its movement was reversed claims `:late`
//!   after its event, since the reversal may hold its event's key.
//!
//! A write-off claims nothing: one racing the arrival ends as the arrival
//! after the write-off would (completed, with the write-off kept), and its
//! own event keys one write-off per movement.

use crate::domain::entry::EventKind;

/// The claim of a half refused as `movement_reversed`.
pub fn late(half: EventKind) -> &'static str {
    match half {
        EventKind::Departure => "departure:late",
        _ => "arrival:late",
    }
}

/// The claim of a reversal's entry that reverses `half`: the other half
/// while that is `undecided`, else `reversal:` and its own half.
pub fn reversal(half: EventKind, other_undecided: bool) -> &'static str {
    match (half, other_undecided) {
        (EventKind::Departure, true) => "arrival",
        (_, true) => "departure",
        (EventKind::Departure, false) => "reversal:departure",
        (_, false) => "reversal:arrival",
    }
}
