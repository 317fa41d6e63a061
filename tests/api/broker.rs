//! Helpers for tests against the real Kafka-protocol broker: unique topics,
//! producing, reading offsets and dead letters, and the service as a child
//! process that can be killed.

use crate::helpers::test_settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::Duration;
use uuid::Uuid;
use warehouse_stock::config::Settings;
use warehouse_stock::produce::generator::GeneratorConfig;
use warehouse_stock::produce::{self, ProduceOptions, Produced, Source};

pub fn bootstrap() -> String {
    std::env::var("TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Settings for a kafka-mode service on a fresh database, topic and group.
/// The stock-change relay is off unless `extra` sets its topic: tests that
/// follow it set one of their own.
pub fn kafka_settings(partitions: u32, extra: &[(&str, &str)]) -> Settings {
    let topic = format!("t_{}", Uuid::new_v4().simple());
    let mut vars: Vec<(String, String)> = vec![
        ("APP_MODE".into(), "kafka".into()),
        ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap()),
        ("KAFKA_TOPIC".into(), topic.clone()),
        ("KAFKA_DLQ_TOPIC".into(), format!("{topic}.dlq")),
        (
            "KAFKA_GROUP_ID".into(),
            format!("g_{}", Uuid::new_v4().simple()),
        ),
        ("KAFKA_TOPIC_PARTITIONS".into(), partitions.to_string()),
        ("STOCK_CHANGES_TOPIC".into(), String::new()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    test_settings(&refs)
}

pub fn generated(count: usize, seed: u64, duplicate_share: f64) -> GeneratorConfig {
    GeneratorConfig {
        count,
        warehouses: 6,
        products: 40,
        departure_share: 0.25,
        duplicate_share,
        // Counts and adjustments in every generated stream, so that every
        // fault test ends exact with corrections in it.
        correction_share: 0.03,
        seed,
    }
}

/// Produces a generated stream with the project's own producer.
pub async fn produce_generated(
    settings: &Settings,
    config: GeneratorConfig,
    binary: bool,
) -> Produced {
    produce::produce(
        &settings.kafka,
        ProduceOptions {
            topic: settings.kafka.topic.clone(),
            source: Source::Generated(config),
            binary,
            expect: None,
            quiet: true,
        },
    )
    .await
    .expect("Failed to produce")
}

/// Produces raw records (key, value) in order, one producer batch each.
pub async fn produce_raw(settings: &Settings, records: &[(&str, &[u8])]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    warehouse_stock::kafka::ensure_topics(
        &settings.kafka,
        &[&settings.kafka.topic, &settings.kafka.dlq_topic],
    )
    .await
    .unwrap();
    for (key, value) in records {
        producer
            .send(
                FutureRecord::to(&settings.kafka.topic)
                    .key(*key)
                    .payload(*value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Sum over partitions of the group's committed offsets.
pub fn committed_total(settings: &Settings) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("group.id", &settings.kafka.group_id)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..settings.kafka.topic_partitions {
        tpl.add_partition(&settings.kafka.topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

/// Reads `expected` records from the dead-letter topic, from the start.
pub fn read_dead_letters(settings: &Settings, expected: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("group.id", format!("dlq-reader-{}", Uuid::new_v4()))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..settings.kafka.topic_partitions {
        tpl.add_partition_offset(&settings.kafka.dlq_topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    out
}

pub async fn applied_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM event_log WHERE outcome = 'applied'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}
