//! Ways events reach the ledger. The API's webhook decodes an HTTP request
//! and hands the event to the group committer, which turns concurrent
//! requests into shared batches; the Kafka consumer hands the ledger whole
//! batches itself.

pub mod group_commit;
pub mod kafka;

pub use group_commit::{CommitError, GroupCommit, Receipt};
