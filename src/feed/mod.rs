//! The stock-change feed: the ledger's change record ([`crate::ledger::log`])
//! published to Kafka by the [`relay`], with low-stock [`alerts`] beside
//! each change, compared against the [`levels`] people set.
//!
//! The audit log already is the change record: an applied entry carries
//! its pair, its event, the quantity (so the delta) and the stock right
//! after it, and it commits with the stock it changed. The feed adds no
//! row to the ingest path; it reads the record up to the ledger's horizon,
//! so it never skips an entry. The HTTP reader of the same record is
//! `GET /api/v1/stock/changes`, in the API.

pub mod active;
pub mod alerts;
mod cloudevent;
pub mod levels;
mod position;
mod producer;
pub mod relay;
mod round;
