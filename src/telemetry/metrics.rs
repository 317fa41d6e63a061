//! Prometheus metrics. Each application owns its registry (no global
//! state), so instances in one process, tests included, count separately.

use crate::domain::Outcome;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;

/// Where events came from, for `events_total`.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Kafka,
    Webhook,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Kafka => "kafka",
            Source::Webhook => "webhook",
        }
    }
}

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

/// The lags the metrics hold, read back.
#[derive(Debug, Clone, Copy)]
pub struct Lags {
    /// Records the consumer has yet to read, over its partitions.
    pub consumer: i64,
    /// Changes committed and not yet published, and the age of the oldest.
    pub relay_changes: i64,
    pub relay_seconds: f64,
}

struct Inner {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    events: IntCounterVec,
    kafka_consumed: IntCounter,
    kafka_lag: IntGaugeVec,
    kafka_dlq: IntCounterVec,
    kafka_commits: IntCounterVec,
    batch_size: Histogram,
    batch_duration: Histogram,
    batch_retries: IntCounterVec,
    cache_requests: IntCounterVec,
    cache_enabled: IntGauge,
    db_pool: IntGaugeVec,
    dependency_up: IntGaugeVec,
    feed_published: IntCounter,
    feed_read: IntCounterVec,
    feed_publish_errors: IntCounter,
    feed_lag_changes: IntGauge,
    feed_lag_seconds: prometheus::Gauge,
    feed_horizon: IntGauge,
    feed_horizon_lag: IntGauge,
    feed_horizon_age: prometheus::Gauge,
    kafka_batch_failing: prometheus::Gauge,
    feed_sequence_behind: IntGauge,
    feed_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[allow(
        clippy::too_many_lines,
        reason = "a declaration table: one entry per metric"
    )]
    pub fn new() -> Self {
        let r = Registry::new();
        let batch_retries = counter_vec(
            &r,
            "ledger_batch_retries_total",
            "Ledger batches run again after a concurrent batch got in the way",
            &["cause"],
        );
        let kafka_commits = counter_vec(
            &r,
            "kafka_offset_commits_total",
            "Background offset commits by result (ok, error)",
            &["result"],
        );
        // Exported at zero from the start, so a rate over them is defined
        // before the first retry or commit.
        for cause in ["conflict", "deadlock"] {
            batch_retries.with_label_values(&[cause]);
        }
        for result in ["ok", "error"] {
            kafka_commits.with_label_values(&[result]);
        }
        Metrics(Arc::new(Inner {
            http_requests: counter_vec(
                &r,
                "http_requests_total",
                "HTTP requests answered",
                &["method", "route", "status"],
            ),
            http_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                        .buckets(vec![
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                            2.5,
                        ]),
                    &["route"],
                ),
            ),
            events: counter_vec(
                &r,
                "events_total",
                "Movement events by source and outcome",
                &["source", "outcome", "reason"],
            ),
            kafka_consumed: register(
                &r,
                IntCounter::new("kafka_messages_consumed_total", "Kafka records received"),
            ),
            kafka_lag: gauge_vec(
                &r,
                "kafka_consumer_lag",
                "Records behind the partition's high watermark",
                &["partition"],
            ),
            kafka_dlq: counter_vec(
                &r,
                "kafka_dlq_messages_total",
                "Records sent to the dead-letter topic",
                &["code"],
            ),
            kafka_commits,
            batch_size: histogram(
                &r,
                "ledger_batch_size",
                "Events per ledger transaction",
                vec![
                    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                ],
            ),
            batch_duration: histogram(
                &r,
                "ledger_batch_duration_seconds",
                "Time to apply and commit a ledger transaction",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            batch_retries,
            cache_requests: counter_vec(
                &r,
                "cache_requests_total",
                "Cache lookups by result",
                &["result"],
            ),
            cache_enabled: register(
                &r,
                IntGauge::new(
                    "cache_enabled",
                    "1 while lookups read through Redis, 0 while they are served from PostgreSQL alone",
                ),
            ),
            db_pool: gauge_vec(
                &r,
                "db_pool_connections",
                "PostgreSQL pool connections",
                &["state"],
            ),
            dependency_up: gauge_vec(
                &r,
                "dependency_up",
                "1 while a dependency answers (db, redis, kafka), as readiness reports it",
                &["dependency"],
            ),
            feed_published: register(
                &r,
                IntCounter::new(
                    "stock_changes_published_total",
                    "Stock changes the relay published and the broker acknowledged",
                ),
            ),
            feed_read: counter_vec(
                &r,
                "stock_changes_relay_read_total",
                "Stock changes the relay took from the ledger's tail in memory (from=tail) or read from the audit log (from=log)",
                &["from"],
            ),
            feed_publish_errors: register(
                &r,
                IntCounter::new(
                    "stock_changes_publish_errors_total",
                    "Relay rounds that failed (broker or PostgreSQL) and are retried",
                ),
            ),
            feed_lag_changes: register(
                &r,
                IntGauge::new(
                    "stock_changes_relay_lag",
                    "Committed stock changes the relay has not published yet, counted up to 100,000",
                ),
            ),
            feed_lag_seconds: register(
                &r,
                prometheus::Gauge::new(
                    "stock_changes_relay_lag_seconds",
                    "Age of the oldest stock change the relay has not published yet",
                ),
            ),
            feed_horizon: register(
                &r,
                IntGauge::new(
                    "stock_changes_horizon",
                    "The audit-log position up to which the feed is complete",
                ),
            ),
            feed_horizon_lag: register(
                &r,
                IntGauge::new(
                    "stock_changes_horizon_lag",
                    "Audit-log positions handed out above the horizon (in flight, or held back by a long transaction)",
                ),
            ),
            feed_horizon_age: register(
                &r,
                prometheus::Gauge::new(
                    "stock_changes_horizon_age_seconds",
                    "How long the oldest audit-log position above the horizon has waited for its transactions to end",
                ),
            ),
            kafka_batch_failing: register(
                &r,
                prometheus::Gauge::new(
                    "kafka_batch_failing_seconds",
                    "How long the Kafka batch failing longest has kept failing (0 when none fails)",
                ),
            ),
            feed_sequence_behind: register(
                &r,
                IntGauge::new(
                    "stock_changes_sequence_behind",
                    "How far the audit-log sequence is below the position the relay published (above 0 only after the database lost entries)",
                ),
            ),
            feed_latency: histogram(
                &r,
                "stock_changes_publish_latency_seconds",
                "From a change's commit (its changed_at) to the broker's acknowledgement of it",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            ),
            registry: r,
        }))
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.0
            .http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.0
            .http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn outcomes(&self, source: Source, outcomes: &[Outcome]) {
        for outcome in outcomes {
            let reason = match outcome {
                Outcome::Rejected { reason, .. } => reason.as_str(),
                _ => "",
            };
            self.0
                .events
                .with_label_values(&[source.as_str(), outcome.label(), reason])
                .inc();
        }
    }

    pub fn batch(&self, size: usize, elapsed: Duration) {
        self.0.batch_size.observe(size as f64);
        self.0.batch_duration.observe(elapsed.as_secs_f64());
    }

    /// `cause`: `conflict` (a row read was changed before the write) or
    /// `deadlock`.
    pub fn batch_retry(&self, cause: &str) {
        self.0.batch_retries.with_label_values(&[cause]).inc();
    }

    pub fn kafka_consumed(&self) {
        self.0.kafka_consumed.inc();
    }

    pub fn kafka_lag(&self, partition: i32, lag: i64) {
        self.0
            .kafka_lag
            .with_label_values(&[&partition.to_string()])
            .set(lag.max(0));
    }

    /// `result`: `ok` or `error`.
    pub fn kafka_commit(&self, result: &str) {
        self.0.kafka_commits.with_label_values(&[result]).inc();
    }

    pub fn dead_letter(&self, code: &str) {
        self.0.kafka_dlq.with_label_values(&[code]).inc();
    }

    /// Counts `n` cache lookups with one result (a bulk lookup makes many).
    pub fn cache_many(&self, result: &str, n: u64) {
        if n > 0 {
            self.0.cache_requests.with_label_values(&[result]).inc_by(n);
        }
    }

    pub fn cache_enabled(&self, enabled: bool) {
        self.0.cache_enabled.set(i64::from(enabled));
    }

    pub fn db_pool(&self, size: u32, idle: usize, max: u32) {
        let g = &self.0.db_pool;
        g.with_label_values(&["open"]).set(i64::from(size));
        g.with_label_values(&["idle"]).set(idle as i64);
        g.with_label_values(&["max"]).set(i64::from(max));
    }

    pub fn feed_sequence_behind(&self, behind: i64) {
        self.0.feed_sequence_behind.set(behind);
    }

    pub fn kafka_batch_failing(&self, failing: Duration) {
        self.0.kafka_batch_failing.set(failing.as_secs_f64());
    }

    pub fn dependency_up(&self, dependency: &str, up: bool) {
        self.0
            .dependency_up
            .with_label_values(&[dependency])
            .set(i64::from(up));
    }

    /// The text exposition format.
    pub fn feed_published(&self, n: usize) {
        self.0.feed_published.inc_by(n as u64);
    }

    pub fn feed_read(&self, from: &str, n: usize) {
        self.0.feed_read.with_label_values(&[from]).inc_by(n as u64);
    }

    pub fn feed_publish_error(&self) {
        self.0.feed_publish_errors.inc();
    }

    pub fn feed_lag(&self, changes: i64, seconds: f64) {
        self.0.feed_lag_changes.set(changes);
        self.0.feed_lag_seconds.set(seconds);
    }

    pub fn feed_latency(&self, seconds: f64) {
        self.0.feed_latency.observe(seconds);
    }

    /// The horizon, how many positions were handed out above it, and how
    /// long the oldest of them has been held back.
    pub fn feed_horizon(&self, horizon: i64, above: i64, held: Duration) {
        self.0.feed_horizon.set(horizon);
        self.0.feed_horizon_lag.set(above);
        self.0.feed_horizon_age.set(held.as_secs_f64());
    }

    /// What the console's health strip shows: the consumer's lag over
    /// every partition, and the relay's lag in changes and seconds.
    pub fn lags(&self) -> Lags {
        let consumer = self
            .0
            .kafka_lag
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_gauge().get_value() as i64)
            .sum();
        Lags {
            consumer,
            relay_changes: self.0.feed_lag_changes.get(),
            relay_seconds: self.0.feed_lag_seconds.get(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.0.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("UTF-8 exposition")
    }
}

/// Registers `metric` in `registry` and hands it back. The names and help
/// texts are this file's constants, so a failure is a bug, not a condition.
fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}
