//! The health and lag watcher: keeps the `kafka` readiness component and
//! the per-partition lag gauges current while a consumer runs.

use super::context::LoggedConsumer;
use super::status::KafkaStatus;
use crate::telemetry::Metrics;
use rdkafka::consumer::Consumer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Per partition, the offset after the last record whose offset is stored.
/// Written by the partition workers, read by the watcher.
pub(super) type Progress = Arc<Mutex<HashMap<i32, i64>>>;

/// Until aborted, every [`HEALTH_INTERVAL`]: asks the broker for the
/// topic's metadata (readiness) and each worked partition's high watermark
/// (lag = high watermark − next offset to store).
pub(super) async fn watch_health(
    consumer: Arc<LoggedConsumer>,
    topic: String,
    status: KafkaStatus,
    progress: Progress,
    metrics: Metrics,
) {
    loop {
        let c = consumer.clone();
        let t = topic.clone();
        let done: Vec<(i32, i64)> = progress
            .lock()
            .expect("progress lock")
            .iter()
            .map(|(p, o)| (*p, *o))
            .collect();
        // librdkafka's metadata and watermark calls block.
        let (ok, lags) = tokio::task::spawn_blocking(move || {
            let ok = c
                .fetch_metadata(Some(&t), Duration::from_millis(1500))
                .is_ok();
            let lags: Vec<(i32, i64)> = done
                .into_iter()
                .filter_map(|(p, next)| {
                    let (_, high) = c.fetch_watermarks(&t, p, Duration::from_millis(500)).ok()?;
                    Some((p, high - next))
                })
                .collect();
            (ok, lags)
        })
        .await
        .unwrap_or((false, Vec::new()));
        status.set_ok(ok);
        for (partition, lag) in lags {
            metrics.kafka_lag(partition, lag);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}
