//! The stock-change feed: every applied audit entry is one change, read in
//! the ledger's order over HTTP (`GET /api/v1/stock/changes`) and published
//! to Kafka by the [`relay`], with low-stock alerts beside it.
//!
//! The audit log already is the change record: an applied entry carries
//! its pair, its event, the quantity (so the delta) and the stock right
//! after it, and it commits with the stock it changed. The feed adds no
//! row to the ingest path. What it adds is a way to read the log in `seq`
//! order without ever skipping an entry:
//!
//! `seq` is taken before a batch commits, so batches on different
//! connections commit out of `seq` order. A reader that had read up to 200
//! while the batch holding 150 was still in flight would pass 150 and
//! never see it. So readers read only up to the [`horizon`]: the highest
//! `seq` below which every entry that will ever commit has committed.
//! Along one pair `seq` order is commit order (the ledger takes its
//! numbers while it holds the pair's row lock), so a pair's changes come
//! in the order they happened, and the last one carries its stock.

pub mod alerts;
pub mod horizon;
pub mod relay;
pub mod store;

pub use horizon::Horizon;

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
    /// What the event added (an arrival) or took away (a departure, < 0).
    pub delta: i64,
    /// The pair's stock right after the change.
    pub quantity: i64,
    pub movement_id: Uuid,
    /// `arrival` or `departure`.
    #[schema(example = "arrival")]
    pub event: String,
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

/// An applied audit entry, in the log's own terms: the change it is.
pub struct AppliedEntry {
    pub seq: i64,
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    /// `arrival` or `departure`.
    pub event: String,
    /// The event's quantity (always positive).
    pub quantity: i32,
    pub stock_after: i64,
    pub movement_id: Uuid,
    pub message_id: String,
    pub received_at: DateTime<Utc>,
}

impl AppliedEntry {
    pub fn into_change(self) -> Change {
        let quantity = i64::from(self.quantity);
        let delta = if self.event == "arrival" {
            quantity
        } else {
            -quantity
        };
        Change {
            seq: self.seq,
            warehouse_id: self.warehouse_id,
            product_id: self.product_id,
            delta,
            quantity: self.stock_after,
            movement_id: self.movement_id,
            event: self.event,
            message_id: self.message_id,
            changed_at: self.received_at,
        }
    }
}
