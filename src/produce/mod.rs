//! `warehouse-stock produce`: sends movement events to the topic, from JSON
//! lines (a file or stdin) or from the deterministic [`generator`], and
//! shows progress. Tests, benchmarks and people trying the service use it.

pub mod generator;

use crate::config::KafkaSettings;
use crate::kafka::{BULK, ensure_topics, producer_config};
use anyhow::Context;
use cloudevents::binding::rdkafka::{FutureRecordExt, MessageRecord};
use cloudevents::{EventBuilder, EventBuilderV10};
use generator::{GeneratedRecord, Generator, GeneratorConfig};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the records come from and how they are sent.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    pub source: Source,
    /// CloudEvents binary mode (`ce_*` headers) instead of structured JSON.
    pub binary: bool,
    /// Where to write the generator's expected final stock, as JSON.
    pub expect: Option<std::path::PathBuf>,
    pub quiet: bool,
}

#[derive(Debug, Clone)]
pub enum Source {
    /// JSON lines; `-` reads stdin.
    Lines(std::path::PathBuf),
    Generated(GeneratorConfig),
}

/// What was sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub sent: u64,
    pub duplicates: u64,
}

#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Counting(Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.0.ok
        } else {
            &self.0.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends every record and waits until the broker has acknowledged them all.
pub async fn produce(kafka: &KafkaSettings, options: ProduceOptions) -> anyhow::Result<Produced> {
    ensure_topics(kafka, &[&options.topic, &kafka.dlq_topic])
        .await
        .context("Failed to create the topics")?;
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || produce_blocking(&kafka, options))
        .await
        .context("Failed to run the producer")?
}

fn produce_blocking(kafka: &KafkaSettings, options: ProduceOptions) -> anyhow::Result<Produced> {
    let deliveries = Arc::new(Deliveries::default());
    let producer: ThreadedProducer<Counting> = producer_config(kafka, &BULK)
        .create_with_context(Counting(deliveries.clone()))
        .context("Failed to create the producer")?;

    let mut progress = Progress::new(options.quiet);
    if let Source::Generated(config) = &options.source {
        progress.total = Some(config.count as u64);
    }
    let mut produced = Produced::default();
    let mut send = |record: GeneratedRecord| -> anyhow::Result<()> {
        send_record(&producer, &options, &record)?;
        produced.sent += 1;
        produced.duplicates += u64::from(record.duplicate);
        progress.tick(produced.sent, deliveries.ok.load(Ordering::Relaxed));
        Ok(())
    };

    match &options.source {
        Source::Generated(config) => {
            let mut generator = Generator::new(config.clone());
            for record in generator.by_ref() {
                send(record)?;
            }
            if let Some(path) = &options.expect {
                write_expectation(path, &generator)?;
            }
        }
        Source::Lines(path) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(path)
                        .with_context(|| format!("Failed to open {}", path.display()))?,
                ))
            };
            for line in reader.lines() {
                let line = line.context("Failed to read a line")?;
                if line.trim().is_empty() {
                    continue;
                }
                // Lines are sent as they are, valid or not: a broken line is
                // how one tries the dead-letter topic.
                let event = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
                let key = event["data"]["warehouse_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                send(GeneratedRecord {
                    key,
                    event,
                    duplicate: false,
                })?;
            }
        }
    }

    producer
        .flush(Duration::from_secs(120))
        .context("Failed to deliver every record")?;
    let failed = deliveries.failed.load(Ordering::Relaxed);
    progress.finish(produced.sent, deliveries.ok.load(Ordering::Relaxed));
    anyhow::ensure!(failed == 0, "{failed} records were not delivered");
    Ok(produced)
}

fn send_record(
    producer: &ThreadedProducer<Counting>,
    options: &ProduceOptions,
    record: &GeneratedRecord,
) -> anyhow::Result<()> {
    let binary: MessageRecord;
    let structured: Vec<u8>;
    let mut out: BaseRecord<'_, str, [u8]> = if options.binary {
        binary = binary_record(&record.event)?;
        let sdk = rdkafka::producer::FutureRecord::<str, Vec<u8>>::to(&options.topic)
            .message_record(&binary);
        let mut base = BaseRecord::to(&options.topic);
        if let Some(headers) = sdk.headers {
            base = base.headers(headers);
        }
        if let Some(data) = sdk.payload {
            base = base.payload(data.as_slice());
        }
        base
    } else {
        structured = match &record.event {
            Value::String(raw) => raw.clone().into_bytes(),
            other => serde_json::to_vec(other)?,
        };
        BaseRecord::to(&options.topic).payload(structured.as_slice())
    };
    if !record.key.is_empty() {
        out = out.key(record.key.as_str());
    }
    loop {
        match producer.send(out) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The local queue is full: let deliveries drain it.
                producer.poll(Duration::from_millis(50));
                out = back;
            }
            Err((e, _)) => return Err(e).context("Failed to queue a record"),
        }
    }
}

/// The CloudEvents SDK turns the envelope into `ce_*` headers. Binary mode
/// carries `time` as an RFC 3339 string, as the binding requires.
fn binary_record(event: &Value) -> anyhow::Result<MessageRecord> {
    let text = |name: &str| event[name].as_str().unwrap_or_default().to_string();
    let mut builder = EventBuilderV10::new()
        .id(text("id"))
        .source(text("source"))
        .ty(text("type"))
        .data("application/json", event["data"].clone());
    if let Some(ms) = event["time"].as_i64()
        && let Some(time) = chrono::DateTime::from_timestamp_millis(ms)
    {
        builder = builder.time(time);
    }
    if let Some(subject) = event["subject"].as_str() {
        builder = builder.subject(subject);
    }
    let built = builder.build().context("Failed to build a CloudEvent")?;
    MessageRecord::from_event(built).context("Failed to encode a binary-mode record")
}

fn write_expectation(path: &std::path::Path, generator: &Generator) -> anyhow::Result<()> {
    let stock: Vec<Value> = generator
        .expected_stock()
        .into_iter()
        .map(|(w, p, q)| serde_json::json!({"warehouse_id": w, "product_id": p, "quantity": q}))
        .collect();
    let body = serde_json::json!({
        "produced": generator.produced(),
        "duplicates": generator.duplicates(),
        "applied": generator.produced() - generator.duplicates(),
        "stock": stock,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&body)?)
        .with_context(|| format!("Failed to write {}", path.display()))
}

struct Progress {
    quiet: bool,
    total: Option<u64>,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            total: None,
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn tick(&mut self, sent: u64, acked: u64) {
        if self.quiet || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        self.print(sent, acked);
    }

    fn finish(&mut self, sent: u64, acked: u64) {
        if !self.quiet {
            self.print(sent, acked);
            eprintln!();
        }
    }

    fn print(&self, sent: u64, acked: u64) {
        let rate = sent as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let total = self.total.map(|t| format!("/{t}")).unwrap_or_default();
        eprint!("\rproduced {sent}{total}, acknowledged {acked} ({rate:.0} records/s)   ");
        let _ = std::io::stderr().flush();
    }
}
