//! Ways events reach the ledger. The webhook decodes HTTP requests and hands
//! them to the group committer, which turns concurrent requests into shared
//! batches; the Kafka consumer hands the ledger whole batches itself.

pub mod group_commit;
pub mod kafka;
pub mod webhook;

pub use group_commit::{CommitError, GroupCommit, Receipt};
