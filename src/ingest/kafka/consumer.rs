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
//! This module owns the client's lifecycle: creating the consumer, splitting
//! its partition queues among the workers (`worker`), running the health
//! watcher (`watcher`), and starting again after a failure.

use super::context::{ConsumerEvents, LoggedConsumer};
use super::status::KafkaStatus;
use super::watcher::{self, Progress};
use super::worker::{self, Shared, Stops};
use crate::backoff::Backoff;
use crate::config::KafkaSettings;
use crate::kafka;
use crate::ledger::Ledger;
use crate::telemetry::Metrics;
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long librdkafka waits before it fetches again for a partition whose
/// queue was full. Its default (1 s) is longer than a worker takes to
/// apply what the queue holds, so the worker would run dry.
const FETCH_QUEUE_BACKOFF_MS: &str = "50";

/// Consumes until `stop` is cancelled, retrying every failure (broker or
/// PostgreSQL unavailable) with backoff. Never skips a record.
pub async fn run(
    settings: KafkaSettings,
    ledger: Ledger,
    metrics: Metrics,
    status: KafkaStatus,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        match Pipeline::start(&settings, &status, &ledger, &metrics).await {
            Ok(pipeline) => {
                tracing::info!(
                    topic = %settings.topic,
                    group = %settings.group_id,
                    partitions = pipeline.partitions,
                    "consuming"
                );
                match pipeline.consume(&stop).await {
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

/// One consumer client, from creation to its final commit.
struct Pipeline {
    shared: Arc<Shared>,
    /// The topic's partition count when the consumer started.
    partitions: i32,
    health: tokio::task::JoinHandle<()>,
}

impl Pipeline {
    async fn start(
        settings: &KafkaSettings,
        status: &KafkaStatus,
        ledger: &Ledger,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        crate::kafka::ensure_topics(settings, &[&settings.topic, &settings.dlq_topic])
            .await
            .context("Failed to create the topics")?;
        let consumer: LoggedConsumer = consumer_config(settings)
            .create_with_context(ConsumerEvents::new(metrics.clone()))
            .context("Failed to create the Kafka consumer")?;
        consumer
            .subscribe(&[&settings.topic])
            .context("Failed to subscribe")?;
        let consumer = Arc::new(consumer);
        let partitions = partition_count(&consumer, &settings.topic).await?;
        let producer: FutureProducer = kafka::producer_config(settings, &kafka::DEAD_LETTERS)
            .create()
            .context("Failed to create the dead-letter producer")?;
        status.set_ok(true);
        let progress = Progress::default();
        let health = tokio::spawn(watcher::watch_health(
            consumer.clone(),
            settings.topic.clone(),
            status.clone(),
            progress.clone(),
            metrics.clone(),
        ));
        Ok(Pipeline {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                consumer,
                producer,
                ledger: ledger.clone(),
                metrics: metrics.clone(),
                progress,
                status: status.clone(),
            }),
            partitions,
            health,
        })
    }

    async fn consume(self, stop: &CancellationToken) -> Ended {
        let shared = self.shared;
        // Workers end on the service's stop, or when this pipeline ends.
        let halt = stop.child_token();
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
                Some(queue) => workers.push(tokio::spawn(worker::partition_worker(
                    shared.clone(),
                    queue,
                    Stops {
                        service: stop.clone(),
                        consumer: halt.clone(),
                    },
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
            watch_main_queue(&shared, stop).await
        };
        // Each worker finishes the batch it is gathering; records still in
        // librdkafka's queues were never stored, so they come again.
        halt.cancel();
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

/// Polls the main queue until the service stops. Only a partition added
/// after the split comes this way; it is not lost: its offsets are not
/// stored, and the new consumer reads it from the committed offset.
async fn watch_main_queue(shared: &Shared, stop: &CancellationToken) -> Ended {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            event = shared.consumer.recv() => match event {
                Ok(record) => {
                    tracing::warn!(
                        partition = record.partition(),
                        "the topic gained partitions; starting the consumer again"
                    );
                    return Ended::Restart;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
}

/// The consumer's librdkafka settings.
fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = kafka::client_config(settings);
    config
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
        // What librdkafka prefetches per partition queue: about 1,000
        // records, a batch ahead of each worker, and at most as much more
        // per fetch. Fetched records keep their whole receive buffer
        // alive, so this bounds most of the consumer's memory (see
        // docs/bench/journal.md, "Where the memory goes").
        .set("queued.max.messages.kbytes", "512")
        .set("max.partition.fetch.bytes", "524288")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        // Small fetches, often. A broker may answer with one
        // partition's records only and may hold every answer for the
        // whole wait (tansu 0.6.0, the earlier test broker, did both;
        // nisshi answers as soon as it has records); even such a broker
        // then delivers 512 KiB (about 1,000 records) every 25 ms.
        // Partitions whose queue is full are left out of the fetch, so
        // the answers go to the others. A receive buffer lives until the
        // last of its records is taken, from whichever partition, so
        // smaller answers also free sooner. A larger record still
        // arrives: the broker answers with a partition's first record
        // whatever its size.
        .set("message.max.bytes", "524288")
        .set("fetch.max.bytes", "524288")
        .set("fetch.wait.max.ms", "25");
    if let Some(instance) = &settings.group_instance_id {
        // Static membership: a restarted instance takes its partitions
        // back at once instead of waiting for its old session to expire.
        config.set("group.instance.id", instance);
    }
    config
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
