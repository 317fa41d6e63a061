//! The ledger: stock and the audit log in PostgreSQL (a movement is its
//! applied entries in the audit log).
//!
//! [`Ledger::apply`] is the one way events change state, for Kafka and the
//! webhook alike: one atomic write per batch, run again when a concurrent
//! batch got in the way, and followed by a cache invalidation before the
//! caller may acknowledge anything.
//!
//! The ledger also defines its committed record: the audit log read as
//! changes ([`log`]), up to the [`horizon`] its own write statement makes
//! safe, and the [`tail`] of what this process committed. Readers (the
//! feed, the API) consume that record; nothing here knows of them.

mod apply;
mod change;
mod closing;
mod handle;
mod horizon;
pub mod log;
mod lookups;
pub mod numbering;
pub mod reads;
mod remembered;
pub mod tail;
pub mod verify;

pub use apply::Applied;
pub use closing::Closed;
pub use handle::Ledger;
pub use horizon::Foreign;
