//! warehouse-stock: exact, never-negative warehouse stock from a stream of
//! movement events.
//!
//! - [`domain`]: the event format and the rules, free of I/O;
//! - [`ledger`]: the batch apply and the reads in PostgreSQL;
//! - [`ingest`]: how events arrive (webhook, Kafka) and reach the ledger;
//! - [`feed`]: the stock-change feed (HTTP and Kafka) and its alerts;
//! - [`api`]: the HTTP endpoints;
//! - [`cache`]: the versioned Redis read-through cache;
//! - [`config`], [`telemetry`], [`startup`], [`cli`]: running it.

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
pub mod produce;
pub mod startup;
pub mod telemetry;
