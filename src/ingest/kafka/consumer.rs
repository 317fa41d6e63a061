//! The consumer: one worker per partition of the topic, each reading its
//! partition's own librdkafka queue, that gathers a batch, applies it in
//! one transaction, publishes its dead letters, and only then stores its
//! offsets (rust-rdkafka's at-least-once pattern). librdkafka commits
//! stored offsets in the background and once more, synchronously, at
//! shutdown. The consumer's main queue then carries only events (group
//! rebalances, errors), and is polled for them.
//!
//! Why a queue per partition: through one queue, records reach the
//! workers in the order the broker's answers came, and a partition whose
//! worker is behind holds back the records of the others, so the busiest
//! partition (and with it the whole run) waits on the smallest one. With
//! its own queue, librdkafka stops fetching a partition whose queue is full
//! and fetches the others.
//!
//! Kafka orders records only within a partition, so partitions are applied
//! side by side, each in its own transactions: PostgreSQL works on several
//! at once while each partition keeps its order. The ledger's lock order
//! keeps the concurrent transactions from deadlocking.
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
use super::{KafkaStatus, topics};
use crate::config::KafkaSettings;
use crate::domain::Outcome;
use crate::ledger::Ledger;
use crate::telemetry::Source;
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// How long librdkafka waits before it fetches again for a partition whose
/// queue was full. Its default (1 s) is longer than a worker takes to
/// apply what the queue holds, so the worker would run dry.
const FETCH_QUEUE_BACKOFF_MS: &str = "50";

/// Consumes until `stop` turns true, retrying every failure (broker or
/// PostgreSQL unavailable) with backoff. Never skips a record.
pub async fn run(
    settings: KafkaSettings,
    ledger: Ledger,
    status: KafkaStatus,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    loop {
        match Pipeline::start(&settings, &status, &ledger).await {
            Ok(pipeline) => {
                tracing::info!(
                    topic = %settings.topic,
                    group = %settings.group_id,
                    partitions = pipeline.partitions,
                    "consuming"
                );
                match pipeline.consume(&ledger, &mut stop).await {
                    Ended::Stopped => return,
                    Ended::Restart => backoff = Backoff::default(),
                    // Starting again at once could fail the same way at
                    // once, in a loop; wait as after any other failure.
                    Ended::Failed => {
                        if backoff.wait_or_stop(&stop).await {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                status.set_ok(false);
                tracing::warn!(error = format!("{e:#}"), "Kafka not ready; retrying");
                if backoff.wait_or_stop(&stop).await {
                    return;
                }
            }
        }
    }
}

/// Why a pipeline stopped consuming.
enum Ended {
    /// The service is stopping.
    Stopped,
    /// The topic gained partitions: a new consumer splits them all.
    Restart,
    /// The pipeline could not run; a new one starts after a backoff.
    Failed,
}

struct Pipeline {
    settings: KafkaSettings,
    consumer: Arc<LoggedConsumer>,
    /// The topic's partition count when the consumer started.
    partitions: i32,
    producer: FutureProducer,
    health: tokio::task::JoinHandle<()>,
    progress: Progress,
}

/// Per partition, the offset after the last record whose offset is stored.
type Progress = Arc<Mutex<HashMap<i32, i64>>>;

impl Pipeline {
    async fn start(
        settings: &KafkaSettings,
        status: &KafkaStatus,
        ledger: &Ledger,
    ) -> anyhow::Result<Self> {
        topics::ensure_topics(settings, &[&settings.topic, &settings.dlq_topic])
            .await
            .context("Failed to create the topics")?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the work commits.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // A killed instance's partitions move on after 10 s, not 45.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // What librdkafka prefetches per partition queue: about 8,000
            // records, eight batches ahead of each worker.
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            // Small fetches, often. A broker may answer with one
            // partition's records only and may hold every answer for the
            // whole wait (tansu 0.6.0, the earlier test broker, did both;
            // nisshi answers as soon as it has records); even such a broker
            // then delivers 1 MB (about 2,000 records) every 25 ms.
            // Partitions whose queue is full are left out of the fetch, so
            // the answers go to the others. The size still admits any
            // record up to librdkafka's 1 MB message limit.
            .set("fetch.max.bytes", "1048576")
            .set("fetch.wait.max.ms", "25");
        if let Some(instance) = &settings.group_instance_id {
            // Static membership: a restarted instance takes its partitions
            // back at once instead of waiting for its old session to expire.
            config.set("group.instance.id", instance);
        }
        let consumer: LoggedConsumer = config
            .create_with_context(ConsumerEvents::new(ledger.metrics().clone()))
            .context("Failed to create the Kafka consumer")?;
        consumer
            .subscribe(&[&settings.topic])
            .context("Failed to subscribe")?;
        let consumer = Arc::new(consumer);
        let partitions = partition_count(&consumer, &settings.topic).await?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .context("Failed to create the dead-letter producer")?;
        status.set_ok(true);
        let progress = Progress::default();
        let health = tokio::spawn(watch_health(
            consumer.clone(),
            settings.topic.clone(),
            status.clone(),
            progress.clone(),
            ledger.clone(),
        ));
        Ok(Pipeline {
            settings: settings.clone(),
            consumer,
            partitions,
            producer,
            health,
            progress,
        })
    }

    async fn consume(self, ledger: &Ledger, stop: &mut watch::Receiver<bool>) -> Ended {
        let shared = Arc::new(Shared {
            settings: self.settings,
            consumer: self.consumer,
            producer: self.producer,
            ledger: ledger.clone(),
            progress: self.progress,
        });
        // Workers end on the service's stop, or when this pipeline ends.
        let (halt, halted) = watch::channel(false);
        let mut workers = Vec::new();
        // Split before the main queue is first polled, so that no record
        // of these partitions is ever delivered through it. A partition
        // without its own queue would have its records arrive on the main
        // queue, which reads as "the topic gained partitions" and restarts
        // the pipeline at once, forever; so a failed split ends this
        // pipeline as a failure, and the next starts after a backoff.
        let mut split_failed = false;
        for partition in 0..self.partitions {
            match shared
                .consumer
                .split_partition_queue(&shared.settings.topic, partition)
            {
                Some(queue) => workers.push(tokio::spawn(partition_worker(
                    shared.clone(),
                    queue,
                    stop.clone(),
                    halted.clone(),
                ))),
                None => {
                    tracing::error!(partition, "could not split the partition's queue");
                    split_failed = true;
                }
            }
        }
        let ended = if split_failed {
            Ended::Failed
        } else {
            loop {
                tokio::select! {
                    _ = stop.changed() => break Ended::Stopped,
                    event = shared.consumer.recv() => match event {
                        // Only a partition added after the split comes this way.
                        // It is not lost: its offsets are not stored, and the
                        // new consumer reads it from the committed offset.
                        Ok(record) => {
                            tracing::warn!(
                                partition = record.partition(),
                                "the topic gained partitions; starting the consumer again"
                            );
                            break Ended::Restart;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Kafka receive failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    },
                }
            }
        };
        // Each worker finishes the batch it is gathering; records still in
        // librdkafka's queues were never stored, so they come again.
        let _ = halt.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        // Commit what was stored since the last background commit. "No
        // offset stored" is the common, harmless answer.
        if let Err(e) = shared.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
        self.health.abort();
        tracing::info!("consumer stopped");
        ended
    }
}

/// The number of partitions of `topic`, from the broker's metadata.
async fn partition_count(consumer: &Arc<LoggedConsumer>, topic: &str) -> anyhow::Result<i32> {
    let consumer = consumer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .context("Failed to read the topic's metadata")?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        anyhow::ensure!(partitions > 0, "the topic {topic} has no partitions yet");
        i32::try_from(partitions).context("Failed to count the partitions")
    })
    .await
    .context("Failed to read the topic's metadata")?
}

/// What the partition workers share.
struct Shared {
    settings: KafkaSettings,
    consumer: Arc<LoggedConsumer>,
    producer: FutureProducer,
    ledger: Ledger,
    progress: Progress,
}

/// Applies one partition's records in batches, in order, until `halted`
/// turns true (or the service stops while PostgreSQL is away).
async fn partition_worker(
    shared: Arc<Shared>,
    queue: StreamPartitionQueue<ConsumerEvents>,
    stop: watch::Receiver<bool>,
    mut halted: watch::Receiver<bool>,
) {
    let size = shared.settings.batch_size.get();
    let mut batch = Vec::with_capacity(size);
    loop {
        tokio::select! {
            _ = halted.wait_for(|halt| *halt) => return,
            record = next_record(&shared, &queue) => batch.push(record),
        }
        let deadline = Instant::now() + shared.settings.batch_max_wait;
        while batch.len() < size {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = halted.wait_for(|halt| *halt) => break,
                record = next_record(&shared, &queue) => batch.push(record),
            }
        }
        if !process(&shared, &batch, &stop).await {
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
                shared.ledger.metrics().kafka_consumed();
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
async fn process(shared: &Shared, batch: &[OwnedMessage], stop: &watch::Receiver<bool>) -> bool {
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
        shared
            .ledger
            .metrics()
            .outcomes(Source::Kafka, &applied.outcomes);
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
            shared.ledger.metrics().dead_letter(code);
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

/// Keeps the `kafka` readiness component and the lag gauges current.
async fn watch_health(
    consumer: Arc<LoggedConsumer>,
    topic: String,
    status: KafkaStatus,
    progress: Progress,
    ledger: Ledger,
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
            ledger.metrics().kafka_lag(partition, lag);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// Exponential backoff from 100 ms to 5 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Sleeps for the next delay; true if the service is stopping.
    async fn wait_or_stop(&mut self, stop: &watch::Receiver<bool>) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        let mut watcher = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => *stop.borrow(),
            _ = watcher.wait_for(|stopping| *stopping) => true,
        }
    }
}
