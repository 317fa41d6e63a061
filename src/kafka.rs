//! Kafka infrastructure shared by the ingest (consumer, dead letters), the
//! feed's relay and `produce`: the one place that builds librdkafka client
//! configurations, and topic creation at start, so a fresh broker works
//! without set-up.

use crate::config::KafkaSettings;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// A client of the configured brokers, with nothing else set.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    config
}

/// How a producer of the service batches and waits; each producer names
/// its own below.
#[derive(Debug, Clone, Copy)]
pub struct ProducerTuning {
    /// How long a record may wait for others to fill its request.
    pub linger_ms: u32,
    /// How long the broker has to acknowledge a record.
    pub message_timeout_ms: u32,
    pub batch_messages: Option<u32>,
    /// The producer's own queue, in records and in KiB.
    pub queue_messages: Option<u32>,
    pub queue_kbytes: Option<u32>,
    /// The idempotent producer: no duplicates and no reordering on retry.
    pub idempotent: bool,
    /// Delivery reports for refused records only.
    pub errors_only: bool,
}

/// Dead letters: few, and each one waits for its acknowledgement.
pub const DEAD_LETTERS: ProducerTuning = ProducerTuning {
    linger_ms: 5,
    message_timeout_ms: 30_000,
    batch_messages: None,
    queue_messages: None,
    queue_kbytes: None,
    idempotent: false,
    errors_only: false,
};

/// The stock-change relay. A report per acknowledged record cost a third
/// of what the relay spent on sending (a channel, a wake and a future per
/// record), so a round counts what is still in flight instead. A round's
/// records go out in few, full requests: each request costs the broker (on
/// the same machine, in the bench) far more than the wait does a reader.
/// The queue has room for two rounds, so it stays small.
pub const RELAY: ProducerTuning = ProducerTuning {
    linger_ms: 20,
    message_timeout_ms: 30_000,
    batch_messages: Some(5_000),
    queue_messages: Some(10_000),
    queue_kbytes: Some(8_192),
    idempotent: true,
    errors_only: true,
};

/// `produce`: a bulk load, as fast as the broker takes it.
pub const BULK: ProducerTuning = ProducerTuning {
    linger_ms: 10,
    message_timeout_ms: 60_000,
    batch_messages: Some(10_000),
    queue_messages: Some(200_000),
    queue_kbytes: None,
    idempotent: false,
    errors_only: false,
};

/// A producer of the configured brokers, acknowledged by every in-sync
/// replica, tuned as `tuning` says.
pub fn producer_config(settings: &KafkaSettings, tuning: &ProducerTuning) -> ClientConfig {
    let mut config = client_config(settings);
    config
        .set("acks", "all")
        .set("linger.ms", tuning.linger_ms.to_string())
        .set("message.timeout.ms", tuning.message_timeout_ms.to_string());
    let optional = [
        ("batch.num.messages", tuning.batch_messages),
        ("queue.buffering.max.messages", tuning.queue_messages),
        ("queue.buffering.max.kbytes", tuning.queue_kbytes),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            config.set(key, value.to_string());
        }
    }
    if tuning.idempotent {
        config.set("enable.idempotence", "true");
    }
    if tuning.errors_only {
        config.set("delivery.report.only.error", "true");
    }
    config
}

/// Creates each of `topics` that does not exist yet, with the partitions and
/// the replication factor of `settings`. A topic that exists is left as it is.
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(settings).create()?;
    let replication = settings.topic_replication_factor;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                settings.topic_partitions,
                TopicReplication::Fixed(replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("Failed to create topic {topic}: {code}"),
        }
    }
    Ok(())
}
