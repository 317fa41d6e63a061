//! Integration tests: the real service over HTTP, against real PostgreSQL
//! and Redis. Each test gets its own database.

// The 70-line limit is the service's: a test here is one scenario read top
// to bottom (set up, act, assert), and nine of them run longer.
#![allow(
    clippy::too_many_lines,
    reason = "a scenario reads best as one function"
)]

mod alerts;
mod binary;
mod broker;
mod browser;
mod cache;
mod changes;
mod cli;
mod closings;
mod concurrency;
mod console;
mod corpus;
mod corrections;
mod deploy;
mod docs;
mod faults;
mod fixtures;
mod guard;
mod health;
mod helpers;
mod history;
mod hostile;
mod kafka;
mod layout;
mod ledger;
mod logs;
mod lookup;
mod metrics;
mod monitoring;
mod movements;
mod products;
mod property;
mod readme;
mod relay;
mod schema;
mod stock;
mod webhook;
