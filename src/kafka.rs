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
    /// How long the broker has to acknowledge a record; 0 for as long as
    /// it takes.
    pub message_timeout_ms: u32,
    pub batch_messages: Option<u32>,
    /// The producer's own queue, in records and in KiB.
    pub queue_messages: Option<u32>,
    pub queue_kbytes: Option<u32>,
    /// The idempotent producer: no duplicates and no reordering on retry.
    pub idempotent: bool,
    /// With `idempotent`: an error that would leave a gap in a partition
    /// stops the producer instead of letting later records through.
    pub gapless: bool,
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
    gapless: false,
    errors_only: false,
};

/// The stock-change relay. A report per acknowledged record cost a third
/// of what the relay spent on sending (a channel, a wake and a future per
/// record), so a round counts what is still in flight instead. A round's
/// records go out in few, full requests: each request costs the broker (on
/// the same machine, in the bench) far more than the wait does a reader.
/// The queue has room for two rounds, so it stays small.
///
/// A record never times out, and an error that could leave a gap stops the
/// producer: so a change reaches its partition only after every change
/// before it there, and a consumer may drop any `seq` at or below the
/// highest it has seen. (librdkafka lets a timed-out record leave a gap
/// that later ones fill past; with no timeout, a broker that does not
/// answer holds the round instead, and the relay reports it stalled.)
pub const RELAY: ProducerTuning = ProducerTuning {
    linger_ms: 20,
    message_timeout_ms: 0,
    batch_messages: Some(5_000),
    queue_messages: Some(10_000),
    queue_kbytes: Some(8_192),
    idempotent: true,
    gapless: true,
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
    gapless: false,
    errors_only: false,
};

/// A producer of the configured brokers, acknowledged by every in-sync
/// replica, tuned as `tuning` says.
pub fn producer_config(settings: &KafkaSettings, tuning: &ProducerTuning) -> ClientConfig {
    let mut config = client_config(settings);
    // Every topic is made by `ensure_topics`, with the configured
    // partitions; a producer's metadata request must not make one with the
    // broker's defaults (a broker that lost its state, say), which would
    // move keys to other partitions.
    config
        .set("allow.auto.create.topics", "false")
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
    if tuning.gapless {
        assert!(tuning.idempotent, "a gapless producer is idempotent");
        // librdkafka logs a CONFWARN that the property is experimental
        // once per producer: expected, and only at each relay turn.
        config.set("enable.gapless.guarantee", "true");
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
