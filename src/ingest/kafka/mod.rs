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
mod watcher;
mod worker;

pub use consumer::run;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The consumer's health, for `/health/ready`.
#[derive(Clone, Default)]
pub struct KafkaStatus(Arc<AtomicU8>);

const DISABLED: u8 = 0;
const DOWN: u8 = 1;
const OK: u8 = 2;

impl KafkaStatus {
    /// A status for a service with a consumer: down until it connects.
    pub fn enabled() -> Self {
        KafkaStatus(Arc::new(AtomicU8::new(DOWN)))
    }

    pub fn set_ok(&self, ok: bool) {
        self.0.store(if ok { OK } else { DOWN }, Ordering::Release);
    }

    pub fn as_str(&self) -> &'static str {
        match self.0.load(Ordering::Acquire) {
            DISABLED => "disabled",
            OK => "ok",
            _ => "down",
        }
    }
}
