//! Kafka ingestion: the consumer that feeds the ledger in batches, the
//! dead-letter topic.
//!
//! The consumer is in three parts: `consumer` owns the client's lifecycle,
//! `worker` applies each partition's batches, and `watcher` reports health
//! and lag.

mod consumer;
mod context;
pub mod dead_letter;
pub mod decode;
mod status;
mod watcher;
mod worker;

pub use consumer::run;
pub use status::KafkaStatus;
