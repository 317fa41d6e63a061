//! Batch processing: one worker per partition gathers a batch from its
//! partition's queue, applies it in one transaction, publishes its dead
//! letters, and only then stores its offsets (rust-rdkafka's
//! at-least-once pattern).
//!
//! Crash safety follows from the order of the steps: an offset is stored
//! only after the effects of its record are committed and its dead letter
//! (if any) is acknowledged, so a crash at any point only causes
//! redelivery, which the ledger turns into duplicates. librdkafka refuses
//! to store an offset for a partition that is no longer assigned, so
//! nothing is committed for a revoked partition.

use super::context::{ConsumerEvents, LoggedConsumer};
use super::dead_letter::{self, DeadLetter};
use super::decode::decode;
use super::watcher::Progress;
use crate::backoff::Backoff;
use crate::config::KafkaSettings;
use crate::domain::Outcome;
use crate::ledger::Ledger;
use crate::telemetry::{Metrics, Source};
use rdkafka::consumer::Consumer;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a consumer's partition workers share.
pub(super) struct Shared {
    pub(super) settings: KafkaSettings,
    pub(super) consumer: Arc<LoggedConsumer>,
    pub(super) producer: FutureProducer,
    pub(super) ledger: Ledger,
    pub(super) metrics: Metrics,
    pub(super) progress: Progress,
}

/// When a worker ends.
pub(super) struct Stops {
    /// The service stops: a batch waiting on PostgreSQL or the broker is
    /// given up (its offsets are not stored, so it comes again).
    pub(super) service: CancellationToken,
    /// This consumer ends (the service stops, or the consumer restarts): a
    /// child of `service`. The batch being gathered is applied first.
    pub(super) consumer: CancellationToken,
}

/// Applies one partition's records in batches, in order, until
/// `stops.consumer` is cancelled (or the service stops while PostgreSQL is
/// away).
pub(super) async fn partition_worker(
    shared: Arc<Shared>,
    queue: StreamPartitionQueue<ConsumerEvents>,
    stops: Stops,
) {
    let size = shared.settings.batch_size.get();
    let mut batch = Vec::with_capacity(size);
    loop {
        tokio::select! {
            _ = stops.consumer.cancelled() => return,
            record = next_record(&shared, &queue) => batch.push(record),
        }
        let deadline = Instant::now() + shared.settings.batch_max_wait;
        while batch.len() < size {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stops.consumer.cancelled() => break,
                record = next_record(&shared, &queue) => batch.push(record),
            }
        }
        if !process(&shared, &batch, &stops.service).await {
            return;
        }
        batch.clear();
    }
}

/// The partition's next record, copied out of librdkafka's buffer so a
/// batch can hold it.
async fn next_record(
    shared: &Shared,
    queue: &StreamPartitionQueue<ConsumerEvents>,
) -> OwnedMessage {
    loop {
        match queue.recv().await {
            Ok(record) => {
                shared.metrics.kafka_consumed();
                return record.detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Applies one batch and stores its offsets. False when stopped before the
/// batch was done; its offsets are then not stored, and it will be
/// delivered again.
async fn process(shared: &Shared, batch: &[OwnedMessage], stop: &CancellationToken) -> bool {
    let mut events = Vec::with_capacity(batch.len());
    let mut origin = Vec::with_capacity(batch.len());
    // (record index, code, detail, differing fields)
    let mut letters: Vec<(usize, &'static str, String, String)> = Vec::new();
    for (i, record) in batch.iter().enumerate() {
        match decode(record) {
            Ok(event) => {
                events.push(event);
                origin.push(i);
            }
            Err(bad) => letters.push((i, bad.code.as_str(), bad.detail, String::new())),
        }
    }

    if !events.is_empty() {
        let mut backoff = Backoff::default();
        let applied = loop {
            match shared.ledger.apply(&events).await {
                Ok(applied) => break applied,
                Err(e) => {
                    tracing::error!(error = %e, batch = events.len(), "applying a Kafka batch failed; retrying");
                    if backoff.wait_or_stop(stop).await {
                        return false;
                    }
                }
            }
        };
        shared.metrics.outcomes(Source::Kafka, &applied.outcomes);
        // `origin[k]` maps outcome k back to its record: one per event.
        debug_assert_eq!(
            applied.outcomes.len(),
            origin.len(),
            "one outcome per event"
        );
        for (k, outcome) in applied.outcomes.iter().enumerate() {
            if let Outcome::Rejected {
                reason, differs, ..
            } = outcome
            {
                let fields = differs.names().join(",");
                let detail = if fields.is_empty() {
                    reason.describe().to_string()
                } else {
                    format!("{} (differs: {fields})", reason.describe())
                };
                letters.push((origin[k], reason.as_str(), detail, fields));
            }
        }
    }

    if !letters.is_empty() {
        let dead: Vec<DeadLetter<'_>> = letters
            .iter()
            .map(|(i, code, detail, fields)| DeadLetter {
                record: &batch[*i],
                code,
                detail,
                fields,
            })
            .collect();
        let mut backoff = Backoff::default();
        while let Err(e) =
            dead_letter::publish(&shared.producer, &shared.settings.dlq_topic, &dead).await
        {
            tracing::error!(error = %e, "publishing dead letters failed; retrying");
            if backoff.wait_or_stop(stop).await {
                return false;
            }
        }
        for (_, code, _, _) in &letters {
            shared.metrics.dead_letter(code);
        }
    }

    // One partition per batch: the last record's offset covers it.
    if let Some(last) = batch.last() {
        match shared
            .consumer
            .store_offset(last.topic(), last.partition(), last.offset())
        {
            Ok(()) => {
                let mut progress = shared.progress.lock().expect("progress lock");
                progress.insert(last.partition(), last.offset() + 1);
            }
            // Refused for a partition revoked meanwhile: its new owner will
            // redeliver these records, and they will be duplicates.
            Err(e) => {
                tracing::info!(error = %e, partition = last.partition(), "offset not stored (partition revoked)")
            }
        }
    }
    true
}
