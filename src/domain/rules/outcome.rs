//! What the rules answer for each event: applied, a duplicate, or refused
//! with a stored reason (and, for a conflicting duplicate, what differs).

use crate::domain::correction::CorrectionDetails;
use crate::domain::event::EventContent;
use chrono::{DateTime, Utc};
use std::fmt;

/// Why an event was refused. Stored in the audit log (its `reason` text, which
/// the derive reads and writes) and returned to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(rename_all = "snake_case")]
pub enum RejectReason {
    /// A departure asked for more than the warehouse holds.
    InsufficientStock,
    /// The key (movement_id, event) was already used with different content.
    ConflictingDuplicate,
    /// The other half of the movement names another product or the same
    /// warehouse.
    MovementMismatch,
    /// An arrival would push stock past what PostgreSQL's `bigint` holds.
    StockOverflow,
    /// A correction's `expected_quantity` is not the stock it found.
    StaleQuantity,
    /// A half of a movement that was reversed, or another reversal of it.
    MovementReversed,
    /// A write-off of a movement that is not in transit: it arrived, was
    /// reversed or written off, or never departed.
    MovementNotInTransit,
    /// A reversal or write-off of a movement with no applied half.
    MovementNotFound,
    /// A reversal that named halves its movement no longer has as they
    /// are: a half was applied since it was asked for. Asked again, it
    /// reverses what is there now.
    MovementChanged,
}

impl RejectReason {
    /// Every reason, in the order the console lists them.
    pub const ALL: [RejectReason; 9] = [
        RejectReason::InsufficientStock,
        RejectReason::ConflictingDuplicate,
        RejectReason::MovementMismatch,
        RejectReason::StockOverflow,
        RejectReason::StaleQuantity,
        RejectReason::MovementReversed,
        RejectReason::MovementNotInTransit,
        RejectReason::MovementNotFound,
        RejectReason::MovementChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InsufficientStock => "insufficient_stock",
            RejectReason::ConflictingDuplicate => "conflicting_duplicate",
            RejectReason::MovementMismatch => "movement_mismatch",
            RejectReason::StockOverflow => "stock_overflow",
            RejectReason::StaleQuantity => "stale_quantity",
            RejectReason::MovementReversed => "movement_reversed",
            RejectReason::MovementNotInTransit => "movement_not_in_transit",
            RejectReason::MovementNotFound => "movement_not_found",
            RejectReason::MovementChanged => "movement_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// A sentence for the `detail` field of API answers.
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::InsufficientStock => {
                "departure exceeds the stock of this product at this warehouse"
            }
            RejectReason::ConflictingDuplicate => {
                "this movement_id and event were already received with different content"
            }
            RejectReason::MovementMismatch => {
                "the other half of this movement names a different product or the same warehouse"
            }
            RejectReason::StockOverflow => "arrival would overflow the stock counter",
            RejectReason::StaleQuantity => {
                "the stock is not the expected_quantity the correction was made against"
            }
            RejectReason::MovementReversed => "this movement was reversed",
            RejectReason::MovementNotInTransit => {
                "this movement is not in transit: it arrived, was reversed or written off, \
                 or never departed"
            }
            RejectReason::MovementNotFound => "no half of this movement has been applied",
            RejectReason::MovementChanged => "a half of this movement was applied meanwhile",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of a conflicting duplicate that differ from the event that
/// decided its (movement_id, event), named as in the message's `data` (or
/// the correction's request). The key fields themselves are equal by
/// definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Differs(u16);

impl Differs {
    const NAMES: [&'static str; 10] = [
        "warehouse_id",
        "product_id",
        "quantity",
        "timestamp",
        "kind",
        "reason",
        "note",
        "reference",
        "basis_seq",
        "expected_quantity",
    ];

    /// What a correction changed against the one that decided its id. Its
    /// time is the request's, so it is not compared.
    pub fn between_corrections(
        decided: (&EventContent, Option<&CorrectionDetails>),
        other: (&EventContent, Option<&CorrectionDetails>),
    ) -> Self {
        let (a, b) = (decided.1, other.1);
        let field = |f: fn(&CorrectionDetails) -> Option<String>| a.and_then(f) != b.and_then(f);
        let flags = [
            decided.0.warehouse_id != other.0.warehouse_id,
            decided.0.product_id != other.0.product_id,
            decided.0.quantity != other.0.quantity,
            false,
            decided.0.kind != other.0.kind,
            a.map(|d| d.reason) != b.map(|d| d.reason),
            field(|d| d.note.clone()),
            field(|d| d.reference.clone()),
            field(|d| d.basis_seq.map(|n| n.to_string())),
            field(|d| d.expected_quantity.map(|n| n.to_string())),
        ];
        Self::of(&flags)
    }

    /// What a reversal or write-off changed against the one that decided
    /// its id: only why it was made can differ, since the ledger reads the
    /// rest from the movement.
    pub fn between_closings(
        decided: Option<&CorrectionDetails>,
        other: Option<&CorrectionDetails>,
    ) -> Self {
        let field =
            |f: fn(&CorrectionDetails) -> Option<String>| decided.and_then(f) != other.and_then(f);
        let mut flags = [false; 8];
        flags[5] = decided.map(|d| d.reason) != other.map(|d| d.reason);
        flags[6] = field(|d| d.note.clone());
        flags[7] = field(|d| d.reference.clone());
        Self::of(&flags)
    }

    /// From whether each of [`Differs::NAMES`] differs, in that order.
    fn of(flags: &[bool]) -> Self {
        Differs(
            flags
                .iter()
                .enumerate()
                .filter(|(_, d)| **d)
                .fold(0, |bits, (i, _)| bits | 1 << i),
        )
    }

    pub fn between(decided: &EventContent, other: &EventContent) -> Self {
        Self::from_flags([
            decided.warehouse_id != other.warehouse_id,
            decided.product_id != other.product_id,
            decided.quantity != other.quantity,
            decided.occurred_at != other.occurred_at,
        ])
    }

    /// From whether `warehouse_id`, `product_id`, `quantity` and
    /// `timestamp` differ, in that order.
    pub fn from_flags(differ: [bool; 4]) -> Self {
        Self::of(&differ)
    }

    /// The names, in the order of [`Differs::NAMES`].
    pub fn names(self) -> Vec<&'static str> {
        (0..Self::NAMES.len())
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| Self::NAMES[i])
            .collect()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The final verdict on an event that was applied or rejected before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Applied,
    Rejected(RejectReason),
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The event changed stock (and its movement). `stock_after` is the
    /// stock of its (warehouse, product) right after it.
    Applied { stock_after: i64 },
    /// The same event was applied before; nothing changed. `stock_after` is
    /// the current stock, `processed_at` when the original was processed.
    Duplicate {
        stock_after: i64,
        processed_at: DateTime<Utc>,
    },
    /// The event was refused. `replayed` is true when there is nothing new
    /// to record: this exact event was refused before, or the refusal of a
    /// reversal or write-off, which is an answer only. `differs` names
    /// what a conflicting duplicate changed; it is empty for other reasons.
    Rejected {
        reason: RejectReason,
        replayed: bool,
        differs: Differs,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Rejected { .. } => "rejected",
        }
    }

    /// Whether the event is new to the audit log.
    pub fn is_recorded(&self) -> bool {
        matches!(
            self,
            Outcome::Applied { .. }
                | Outcome::Rejected {
                    replayed: false,
                    ..
                }
        )
    }
}
