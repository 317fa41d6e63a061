//! warehouse-stock: exact, never-negative warehouse stock from a stream of
//! movement events.
//!
//! Each folder owns one concern, and the arrows run one way only:
//!
//! ```text
//! domain  <-  ledger  <-  ingest / feed  <-  api  <-  startup
//! ```
//!
//! - [`domain`]: the event format and the rules, free of I/O;
//! - [`ledger`]: the batch apply, the audit log and its change record
//!   ([`ledger::log`]), and every read of stock and movements. The write
//!   side defines the record; everything to its right consumes it;
//! - [`ingest`]: how events reach the ledger (the Kafka consumer, the
//!   webhook's group committer);
//! - [`feed`]: the stock-change relay to Kafka, its alerts and levels;
//! - [`api`]: the HTTP endpoints (the webhook included);
//! - [`startup`]: building the [`startup::Application`] and running it
//!   until it is stopped; [`cli`]: the commands around it; [`memory`]:
//!   the allocator settings `main` applies before the runtime starts.
//!
//! Infrastructure any layer may use: [`config`], [`telemetry`], [`cache`]
//! (the versioned Redis read-through cache, the ledger's), [`kafka`]
//! (client configurations and topics), [`backoff`], [`tasks`]; [`produce`] writes test
//! streams to a topic.

pub mod api;
pub mod backoff;
pub mod cache;
pub mod cli;
pub mod config;
pub mod domain;
pub mod feed;
pub mod ingest;
pub mod kafka;
pub mod ledger;
pub mod memory;
pub mod produce;
pub mod startup;
pub mod tasks;
pub mod telemetry;
