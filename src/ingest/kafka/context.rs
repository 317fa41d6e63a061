//! The consumer's librdkafka context: what the client does in the
//! background, committing offsets and rebalancing the group, reaches the
//! log and the metrics instead of vanishing, as in rust-rdkafka's
//! `at_least_once` example.

use crate::telemetry::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// The consumer type of the service.
pub type LoggedConsumer = StreamConsumer<ConsumerEvents>;

pub struct ConsumerEvents {
    metrics: Metrics,
}

impl ConsumerEvents {
    pub fn new(metrics: Metrics) -> Self {
        ConsumerEvents { metrics }
    }
}

impl ClientContext for ConsumerEvents {}

impl ConsumerContext for ConsumerEvents {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = %describe(list, false), "partitions assigned");
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %describe(list, false), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "group rebalance failed"),
        }
    }

    /// librdkafka commits the stored offsets every second. A failed commit
    /// loses nothing (the next one carries the same offsets, and at worst a
    /// restart redelivers what the ledger turns into duplicates), but it
    /// must be visible: repeated failures mean redelivery after a restart.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.kafka_commit("ok"),
            // Nothing was stored since the last commit: the idle case.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.metrics.kafka_commit("error");
                tracing::warn!(
                    error = %e,
                    offsets = %describe(offsets, true),
                    "offset commit failed; the next commit carries the same offsets"
                );
            }
        }
    }
}

/// `topic/partition` (with `@offset` when asked), comma-separated.
fn describe(list: &TopicPartitionList, offsets: bool) -> String {
    list.elements()
        .iter()
        .map(|e| match (offsets, e.offset()) {
            (true, Offset::Offset(n)) => format!("{}/{}@{n}", e.topic(), e.partition()),
            _ => format!("{}/{}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(",")
}
