//! The consumer loop: gather a batch, apply it in one transaction, publish
//! its dead letters, and only then store its offsets (rust-rdkafka's
//! at-least-once pattern). librdkafka commits stored offsets in the
//! background and once more, synchronously, at shutdown.
//!
//! Crash safety follows from the order: an offset is stored only after the
//! effects of its record are committed and its dead letter (if any) is
//! acknowledged, so a crash at any point only ever causes redelivery, and
//! redelivery is harmless because the ledger recognises duplicates.
//! librdkafka refuses to store an offset for a partition that is no longer
//! assigned, so nothing is committed for a revoked partition.

use super::dead_letter::{self, DeadLetter};
use super::decode::decode;
use super::{KafkaStatus, topics};
use crate::config::KafkaSettings;
use crate::domain::Outcome;
use crate::ledger::Ledger;
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

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
        match Pipeline::start(&settings, &status).await {
            Ok(pipeline) => {
                tracing::info!(topic = %settings.topic, group = %settings.group_id, "consuming");
                pipeline.consume(&ledger, &mut stop).await;
                return;
            }
            Err(e) => {
                status.set_ok(false);
                tracing::warn!(error = format!("{e:#}"), "Kafka not ready; retrying");
                if backoff.wait_or_stop(&mut stop).await {
                    return;
                }
            }
        }
    }
}

struct Pipeline {
    settings: KafkaSettings,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    health: tokio::task::JoinHandle<()>,
}

impl Pipeline {
    async fn start(settings: &KafkaSettings, status: &KafkaStatus) -> anyhow::Result<Self> {
        topics::ensure_topics(
            &settings.bootstrap_servers,
            &[&settings.topic, &settings.dlq_topic],
            settings.topic_partitions,
        )
        .await
        .context("Failed to create the topics")?;
        let consumer: StreamConsumer = ClientConfig::new()
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
            // Bounds what librdkafka buffers ahead of the ledger.
            .set("queued.max.messages.kbytes", "16384")
            .create()
            .context("Failed to create the Kafka consumer")?;
        consumer
            .subscribe(&[&settings.topic])
            .context("Failed to subscribe")?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .context("Failed to create the dead-letter producer")?;
        let consumer = Arc::new(consumer);
        status.set_ok(true);
        let health = tokio::spawn(watch_health(
            consumer.clone(),
            settings.topic.clone(),
            status.clone(),
        ));
        Ok(Pipeline {
            settings: settings.clone(),
            consumer,
            producer,
            health,
        })
    }

    async fn consume(self, ledger: &Ledger, stop: &mut watch::Receiver<bool>) {
        while let Some(batch) = self.next_batch(stop).await {
            if !batch.is_empty() && !self.process(ledger, &batch, stop).await {
                break;
            }
        }
        // Commit what was stored since the last background commit. "No
        // offset stored" is the common, harmless answer.
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
        self.health.abort();
        tracing::info!("consumer stopped");
    }

    /// Waits for a first record, then gathers more until the batch is full
    /// or its wait limit passes. `None` once stopped.
    async fn next_batch(&self, stop: &mut watch::Receiver<bool>) -> Option<Vec<OwnedMessage>> {
        if *stop.borrow() {
            return None;
        }
        let first = tokio::select! {
            _ = stop.changed() => return None,
            record = self.consumer.recv() => record,
        };
        let mut batch = Vec::with_capacity(self.settings.batch_size);
        match first {
            Ok(record) => batch.push(record.detach()),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(batch);
            }
        }
        let deadline = Instant::now() + self.settings.batch_max_wait;
        while batch.len() < self.settings.batch_size {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                record = self.consumer.recv() => match record {
                    Ok(record) => batch.push(record.detach()),
                    Err(e) => {
                        tracing::warn!(error = %e, "Kafka receive failed");
                        break;
                    }
                },
            }
        }
        Some(batch)
    }

    /// Applies one batch and stores its offsets. False when stopped before
    /// the batch was done; its offsets are then not stored, and it will be
    /// delivered again.
    async fn process(
        &self,
        ledger: &Ledger,
        batch: &[OwnedMessage],
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut events = Vec::with_capacity(batch.len());
        let mut origin = Vec::with_capacity(batch.len());
        let mut letters: Vec<(usize, &'static str, String)> = Vec::new();
        for (i, record) in batch.iter().enumerate() {
            match decode(record) {
                Ok(event) => {
                    events.push(event);
                    origin.push(i);
                }
                Err(bad) => letters.push((i, bad.code, bad.detail)),
            }
        }

        if !events.is_empty() {
            let mut backoff = Backoff::default();
            let applied = loop {
                match ledger.apply(&events).await {
                    Ok(applied) => break applied,
                    Err(e) => {
                        tracing::error!(error = %e, batch = events.len(), "applying a Kafka batch failed; retrying");
                        if backoff.wait_or_stop(stop).await {
                            return false;
                        }
                    }
                }
            };
            for (k, outcome) in applied.outcomes.iter().enumerate() {
                if let Outcome::Rejected { reason, .. } = outcome {
                    letters.push((origin[k], reason.as_str(), reason.describe().to_string()));
                }
            }
        }

        if !letters.is_empty() {
            let dead: Vec<DeadLetter<'_>> = letters
                .iter()
                .map(|(i, code, detail)| DeadLetter {
                    record: &batch[*i],
                    code,
                    detail,
                })
                .collect();
            let mut backoff = Backoff::default();
            while let Err(e) =
                dead_letter::publish(&self.producer, &self.settings.dlq_topic, &dead).await
            {
                tracing::error!(error = %e, "publishing dead letters failed; retrying");
                if backoff.wait_or_stop(stop).await {
                    return false;
                }
            }
        }

        let mut last: HashMap<(&str, i32), i64> = HashMap::new();
        for record in batch {
            let offset = last
                .entry((record.topic(), record.partition()))
                .or_insert(-1);
            *offset = (*offset).max(record.offset());
        }
        for ((topic, partition), offset) in last {
            // Refused for a partition revoked meanwhile: its new owner will
            // redeliver these records, and they will be duplicates.
            if let Err(e) = self.consumer.store_offset(topic, partition, offset) {
                tracing::info!(error = %e, partition, "offset not stored (partition revoked)");
            }
        }
        true
    }
}

/// Keeps the `kafka` readiness component current.
async fn watch_health(consumer: Arc<StreamConsumer>, topic: String, status: KafkaStatus) {
    loop {
        let c = consumer.clone();
        let t = topic.clone();
        let ok = tokio::task::spawn_blocking(move || {
            c.fetch_metadata(Some(&t), Duration::from_millis(1500))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        status.set_ok(ok);
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
    /// Sleeps for the next delay; true if `stop` turned true meanwhile.
    async fn wait_or_stop(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(delay) => *stop.borrow(),
            _ = stop.changed() => true,
        }
    }
}
