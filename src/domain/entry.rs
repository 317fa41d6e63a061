//! What an audit entry records, and how much: the kind of an event (a
//! half of a movement, or a correction) and its quantity.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What an audit entry records: goods that arrived at or departed from a
/// warehouse (the two halves of a movement), or a correction people made
/// (a count, an adjustment, the reversal of a half recorded in error, the
/// write-off of a movement lost on the road). Stored as the audit log's
/// `event` text, which the derive reads and writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EventKind {
    Arrival,
    Departure,
    Count,
    Adjustment,
    Reversal,
    WriteOff,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Arrival => "arrival",
            EventKind::Departure => "departure",
            EventKind::Count => "count",
            EventKind::Adjustment => "adjustment",
            EventKind::Reversal => "reversal",
            EventKind::WriteOff => "write_off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "arrival" => Some(EventKind::Arrival),
            "departure" => Some(EventKind::Departure),
            "count" => Some(EventKind::Count),
            "adjustment" => Some(EventKind::Adjustment),
            "reversal" => Some(EventKind::Reversal),
            "write_off" => Some(EventKind::WriteOff),
            _ => None,
        }
    }

    /// Whether people made it, rather than a movement's half.
    pub fn is_correction(self) -> bool {
        !self.is_half()
    }

    /// Whether it is a movement's half: an arrival or a departure.
    pub fn is_half(self) -> bool {
        matches!(self, EventKind::Arrival | EventKind::Departure)
    }

    /// Whether it closes a movement of its own id: a reversal or a
    /// write-off, which name the movement they correct.
    pub fn closes_movement(self) -> bool {
        matches!(self, EventKind::Reversal | EventKind::WriteOff)
    }

    /// The kind an entry is looked up by for idempotency: an adjustment's
    /// id names one correction, whichever its kind, so counts and
    /// adjustments share a key; a movement's two halves, its reversal and
    /// its write-off have one each.
    pub fn idempotency_kind(self) -> Self {
        match self {
            EventKind::Count => EventKind::Adjustment,
            kind => kind,
        }
    }

    /// What an entry of this kind and `quantity` did to its pair's stock,
    /// where the kind and quantity say it: a half moves its quantity, an
    /// adjustment is its signed quantity, a write-off moves nothing. A
    /// count's depends on the stock it found and a reversal's on the half
    /// it reverses; every correction's is stored with it (the audit log's
    /// `delta`).
    pub fn delta(self, quantity: i32) -> Option<i64> {
        match self {
            EventKind::Arrival | EventKind::Adjustment => Some(i64::from(quantity)),
            EventKind::Departure => Some(-i64::from(quantity)),
            EventKind::WriteOff => Some(0),
            EventKind::Count | EventKind::Reversal => None,
        }
    }

    /// An applied audit entry's delta: the one `stored` with it (every
    /// correction's), else the one its kind and quantity give. The one rule
    /// every reader of an entry's delta goes through; `seq` names the entry
    /// in the assertion.
    pub fn entry_delta(self, quantity: i32, stored: Option<i64>, seq: i64) -> i64 {
        stored.or(self.delta(quantity)).unwrap_or_else(|| {
            // The audit log's CHECK gives every applied count and reversal a delta.
            debug_assert!(false, "entry {seq} is a {self} without a delta");
            0
        })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quantity that fits PostgreSQL's `integer`: for a movement's half
/// 1 ..= 2147483647 ([`Quantity::parse`]); for a count the quantity found,
/// 0 or more; for an adjustment a signed change other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(i32);

impl Quantity {
    /// A half's quantity: 1 ..= 2147483647.
    pub fn parse(n: i64) -> Result<Self, String> {
        if n < 1 {
            return Err(format!("must be at least 1, got {n}"));
        }
        i32::try_from(n)
            .map(Quantity)
            .map_err(|_| format!("must be at most {}, got {n}", i32::MAX))
    }

    /// A count's quantity: 0 ..= 2147483647.
    pub fn counted(n: i64) -> Result<Self, String> {
        match n {
            0 => Ok(Quantity(0)),
            n => Self::parse(n).map_err(|_| match n < 0 {
                true => format!("must be 0 or more, got {n}"),
                false => format!("must be at most {}, got {n}", i32::MAX),
            }),
        }
    }

    /// An adjustment's signed change: not 0, and at most 2147483647 either way.
    pub fn change(n: i64) -> Result<Self, String> {
        if n == 0 {
            return Err("must not be 0".into());
        }
        Self::parse(n.saturating_abs())
            .map(|q| Quantity(q.0 * n.signum() as i32))
            .map_err(|_| format!("must be from -{0} to {0}, got {n}", i32::MAX))
    }

    /// The stored value, read back from the audit log.
    pub fn stored(n: i32) -> Self {
        Quantity(n)
    }

    pub fn get(self) -> i32 {
        self.0
    }
}
