//! The relay's producer: it sends a round of changes and their alerts, and
//! waits until the broker has acknowledged every record of it, counting
//! refusals instead of taking a report per record.

use super::alerts;
use super::cloudevent::{alert_event, pair_key, write_change_event};
use super::round::RelayedChange;
use crate::config::KafkaSettings;
use crate::kafka;
use crate::telemetry::Metrics;
use anyhow::Context;
use chrono::Utc;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The relay's producer: it reports refused records only (see
/// [`publish`]).
pub type RelayProducer = ThreadedProducer<Refusals>;

/// Counts the records the broker refused, or that timed out: with
/// `delivery.report.only.error`, the only delivery reports there are.
#[derive(Default)]
pub struct Refusals {
    count: AtomicU64,
    last: Mutex<Option<KafkaError>>,
}

impl Refusals {
    fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// The latest refusal, if there were any after `seen` of them.
    fn since(&self, seen: u64) -> Option<KafkaError> {
        if self.count() == seen {
            return None;
        }
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some(last.unwrap_or(KafkaError::Canceled))
    }
}

impl ClientContext for Refusals {}

impl ProducerContext for Refusals {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
            self.count.fetch_add(1, Ordering::AcqRel);
        }
    }
}

pub fn producer(settings: &KafkaSettings) -> anyhow::Result<RelayProducer> {
    kafka::producer_config(settings, &kafka::RELAY)
        .create_with_context(Refusals::default())
        .context("Failed to create the stock-change producer")
}

/// A round handed to the producer: what to wait on.
pub struct Sent {
    /// Refusals counted before the round.
    refused: u64,
}

/// Hands every change of `chunk` and its alerts to the producer. The
/// round is done once [`acknowledged`] says so.
///
/// Every record is handed over first (librdkafka copies key and payload,
/// so one buffer serves them all). librdkafka counts a record in flight
/// until the broker acknowledged it, or until the report of its refusal
/// has been served, so once nothing is in flight every record is either
/// acknowledged or counted in [`Refusals`]. This is the relay's only
/// producer, and one round runs at a time, so nothing else is in flight.
pub async fn send(
    producer: &RelayProducer,
    topic: &str,
    chunk: &[RelayedChange],
) -> anyhow::Result<Sent> {
    let refused = producer.context().count();
    let mut payload = Vec::with_capacity(512);
    for relayed in chunk {
        let c = &relayed.change;
        let key = pair_key(c);
        payload.clear();
        write_change_event(&mut payload, c, &key);
        enqueue(producer, topic, &key, &payload).await?;
        let level = relayed.level;
        for alert in alerts::crossings(c.before(), c.quantity, level, relayed.first_change) {
            enqueue(producer, topic, &key, &alert_event(c, alert, level)).await?;
        }
    }
    Ok(Sent { refused })
}

/// Whether the broker has acknowledged every record of the round `sent`;
/// an error once nothing is in flight and any record was refused.
pub fn acknowledged(producer: &RelayProducer, sent: &Sent) -> anyhow::Result<bool> {
    if producer.in_flight_count() > 0 {
        return Ok(false);
    }
    if let Some(e) = producer.context().since(sent.refused) {
        return Err(e).context("The broker did not acknowledge a stock change");
    }
    Ok(true)
}

/// Each change's latency, from its commit to the acknowledgement of its
/// round, to the metrics.
pub fn delivered(chunk: &[RelayedChange], metrics: &Metrics) {
    let now = Utc::now();
    for relayed in chunk {
        metrics.feed_latency((now - relayed.change.changed_at).as_seconds_f64().max(0.0));
    }
}

/// Hands one record to the producer, waiting while its queue is full (it
/// empties as the broker acknowledges).
async fn enqueue(
    producer: &RelayProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    loop {
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: "content-type",
            value: Some("application/cloudevents+json"),
        });
        let record = BaseRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e).context("Failed to queue a stock change"),
        }
    }
}
