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
use super::status::KafkaStatus;
use super::watcher::Progress;
use crate::backoff::Backoff;
use crate::config::KafkaSettings;
use crate::domain::{MovementEvent, Outcome};
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
    /// Where a batch that keeps failing says so, for readiness.
    pub(super) status: KafkaStatus,
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

/// A record that goes to the dead-letter topic, and why.
struct Refusal {
    /// Its index in the batch.
    record: usize,
    code: &'static str,
    detail: String,
    /// The fields a conflicting duplicate changed, comma-separated.
    fields: String,
}

/// Applies one batch and stores its offsets. False when stopped before the
/// batch was done; its offsets are then not stored, and it will be
/// delivered again.
async fn process(shared: &Shared, batch: &[OwnedMessage], stop: &CancellationToken) -> bool {
    let mut events = Vec::with_capacity(batch.len());
    let mut origin = Vec::with_capacity(batch.len());
    let mut refusals = Vec::new();
    for (i, record) in batch.iter().enumerate() {
        match decode(record) {
            Ok(event) => {
                events.push(event);
                origin.push(i);
            }
            Err(bad) => refusals.push(Refusal {
                record: i,
                code: bad.code.as_str(),
                detail: bad.detail,
                fields: String::new(),
            }),
        }
    }
    if !events.is_empty() {
        let Some(outcomes) = apply(shared, &events, stop).await else {
            return false;
        };
        // `origin[k]` maps outcome k back to its record: one per event.
        debug_assert_eq!(outcomes.len(), origin.len(), "one outcome per event");
        refusals.extend(origin.iter().zip(&outcomes).filter_map(refusal));
    }
    if !refusals.is_empty() && !send_dead_letters(shared, batch, &refusals, stop).await {
        return false;
    }
    store_offsets(shared, batch);
    true
}

/// Applies `events` until the ledger commits them; `None` if the service
/// stopped first.
async fn apply(
    shared: &Shared,
    events: &[MovementEvent],
    stop: &CancellationToken,
) -> Option<Vec<Outcome>> {
    let mut backoff = Backoff::default();
    // Ends with this call: when the batch commits, or is given up.
    let mut streak = None;
    loop {
        match shared.ledger.apply(events).await {
            Ok(applied) => {
                shared.metrics.outcomes(Source::Kafka, &applied.outcomes);
                return Some(applied.outcomes);
            }
            Err(e) => {
                streak.get_or_insert_with(|| shared.status.failing());
                tracing::error!(error = %e, batch = events.len(), "applying a Kafka batch failed; retrying");
                if backoff.wait_or_stop(stop).await {
                    return None;
                }
            }
        }
    }
}

/// The dead letter of a refused event, given its record's index.
fn refusal((&record, outcome): (&usize, &Outcome)) -> Option<Refusal> {
    let Outcome::Rejected {
        reason, differs, ..
    } = outcome
    else {
        return None;
    };
    let fields = differs.names().join(",");
    let detail = if fields.is_empty() {
        reason.describe().to_string()
    } else {
        format!("{} (differs: {fields})", reason.describe())
    };
    Some(Refusal {
        record,
        code: reason.as_str(),
        detail,
        fields,
    })
}

/// Publishes the refused records until the broker acknowledges them all;
/// false if the service stopped first.
async fn send_dead_letters(
    shared: &Shared,
    batch: &[OwnedMessage],
    refusals: &[Refusal],
    stop: &CancellationToken,
) -> bool {
    let dead: Vec<DeadLetter<'_>> = refusals
        .iter()
        .map(|r| DeadLetter {
            record: &batch[r.record],
            code: r.code,
            detail: &r.detail,
            fields: &r.fields,
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
    for refusal in refusals {
        shared.metrics.dead_letter(refusal.code);
    }
    true
}

/// Stores the batch's offsets: one partition per batch, so the last
/// record's offset covers it.
fn store_offsets(shared: &Shared, batch: &[OwnedMessage]) {
    let Some(last) = batch.last() else {
        return;
    };
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
