//! The ledger's committed record: an applied audit entry as the
//! [`Change`] of stock it is. The write side defines it: the write
//! statement hands its rows over as [`AppliedRow`]s, every reader of the
//! log selects the same row, and [`AppliedRow::into_logged`] is the one
//! mapping from a row to a change.

use crate::domain::EventKind;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One change of a pair's stock: an applied event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Change {
    /// The ledger's order; strictly increasing along the feed.
    pub seq: i64,
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    /// What the entry added (an arrival, a correction upwards) or took
    /// away (a departure, a correction downwards, < 0).
    pub delta: i64,
    /// The pair's stock right after the change.
    pub quantity: i64,
    pub movement_id: Uuid,
    /// `arrival` or `departure`, or a correction: `count` or `adjustment`.
    #[schema(value_type = String, example = "arrival")]
    pub event: EventKind,
    /// The CloudEvents `id` of the message that carried the event.
    pub message_id: String,
    /// When the ledger applied it (its batch's commit).
    pub changed_at: DateTime<Utc>,
}

impl Change {
    /// The pair's stock right before the change.
    pub fn before(&self) -> i64 {
        self.quantity - self.delta
    }
}

/// A change as the ledger committed it, with its `opens_pair` mark: the
/// first change of a pair the batch found no stock row of (migration 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    pub change: Change,
    pub opens_pair: bool,
}

/// An applied `event_log` row, as every reader of changes selects it and
/// as the write statement has just written it.
pub(super) struct AppliedRow {
    pub seq: i64,
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub event: EventKind,
    /// The event's quantity: a half's (always positive), a count's (what
    /// it found) or an adjustment's (signed).
    pub quantity: i32,
    /// A correction's delta, as the ledger decided it; `None` for a half,
    /// whose kind and quantity say it.
    pub delta: Option<i64>,
    pub stock_after: i64,
    pub movement_id: Uuid,
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    pub opens_pair: bool,
}

impl AppliedRow {
    /// The one mapping from an applied entry to the change it is.
    pub(super) fn into_logged(self) -> LoggedChange {
        LoggedChange {
            change: Change {
                seq: self.seq,
                warehouse_id: self.warehouse_id,
                product_id: self.product_id,
                delta: self.event.entry_delta(self.quantity, self.delta, self.seq),
                quantity: self.stock_after,
                movement_id: self.movement_id,
                event: self.event,
                message_id: self.message_id,
                changed_at: self.received_at,
            },
            opens_pair: self.opens_pair,
        }
    }
}
