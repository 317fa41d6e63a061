//! The relay: publishes the feed to Kafka, each change as a CloudEvent
//! `ru.retail.warehouses.stock.changed`, with its alerts after it.
//!
//! Delivery is at least once, with the idempotent producer:
//!
//! - The position (`change_relay`) advances only after the broker has
//!   acknowledged everything up to it, so a crash, kill -9 included, or a
//!   broker that loses what it had not acknowledged, makes the next relay
//!   publish those changes again. Each carries a stable `id` for the
//!   consumer to drop the second copy.
//! - One relay publishes at a time: the one holding a session advisory
//!   lock on a connection of its own. The others wait on standby. A relay
//!   that dies drops its connection, and with it the lock, at once.
//! - The record key is the pair, so a pair's changes land in one
//!   partition in the order the relay sent them, which is `seq` order.
//!
//! What it publishes comes from the ledger's [tail](crate::ledger::tail)
//! while that holds every number after the position: the batches this
//! process committed, handed over in memory. Every other span (other
//! instances' batches, aborted writes' numbers, what committed before this
//! relay took the lead) is read from the log, so the tail only saves the
//! reads, and can lose nothing that the log would have given.

use super::alerts::{self, Alert};
use super::store::{self, RelayedChange};
use super::{Change, Horizon};
use crate::config::KafkaSettings;
use crate::ingest::kafka::topics;
use crate::ledger::tail::LogTail;
use crate::telemetry::Metrics;
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const CHANGED: &str = "ru.retail.warehouses.stock.changed";

/// The CloudEvents `source` of everything the relay publishes.
pub const SOURCE: &str = "warehouse-stock";

/// Changes read and published per round: large enough to keep the
/// producer's batches full and the rounds few under a full ingest, small
/// enough that a retry repeats little.
const CHUNK: i64 = 5_000;

/// How long a stopping relay may take to finish its round.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the relay stores its position while it is behind.
const STORE_EVERY: Duration = Duration::from_millis(500);

/// The most unpublished changes the lag gauge counts.
const LAG_CAP: i64 = 100_000;

/// The advisory lock class of relays: with the topic's hash as key, one
/// relay per topic runs at a time.
const RELAY_LOCKS: i32 = 0x5753_4346;

/// The relay's state, for `/health/ready`.
#[derive(Clone, Default)]
pub struct RelayStatus(Arc<Mutex<Report>>);

#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    pub state: RelayState,
    /// Every change at or below it is acknowledged by the broker.
    pub position: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayState {
    /// No topic is set.
    #[default]
    Disabled,
    /// Another instance's relay publishes.
    Standby,
    /// This instance publishes.
    Publishing,
    /// Publishing failed; it is being retried.
    Down,
}

impl RelayState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Disabled => "disabled",
            RelayState::Standby => "standby",
            RelayState::Publishing => "ok",
            RelayState::Down => "down",
        }
    }
}

impl RelayStatus {
    pub fn report(&self) -> Report {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, state: RelayState) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).state = state;
    }

    fn advanced(&self, position: i64) {
        let mut report = self.0.lock().unwrap_or_else(|e| e.into_inner());
        report.position = position;
        report.state = RelayState::Publishing;
    }
}

/// What the relay needs besides its topic.
pub struct Relay {
    pub topic: String,
    pub kafka: KafkaSettings,
    /// For the connection that holds the lock, and the relay's own pool.
    pub database: PgConnectOptions,
    /// How the relay's own pool connects.
    pub pool: PgPoolOptions,
    pub horizon: Horizon,
    /// What this process's ledger committed lately: read instead of the
    /// log wherever it holds every number.
    pub tail: LogTail,
    pub metrics: Metrics,
    pub status: RelayStatus,
}

impl Relay {
    /// Runs the relay on a thread of its own, at a lower scheduling
    /// priority than the ingest, until `stop` is cancelled. The returned
    /// receiver resolves when it has stopped.
    ///
    /// On two cores, whatever the relay spends (serializing, librdkafka's
    /// enqueue and its threads) is taken from PostgreSQL and the ingest,
    /// whose commits are what every acknowledgement waits for. At a lower
    /// priority the relay takes the cycles they leave idle first, and
    /// falls behind (its lag is a metric) rather than slowing them when
    /// the machine is saturated. Everything librdkafka starts from this
    /// thread inherits its priority.
    pub fn spawn(self, stop: CancellationToken) -> anyhow::Result<oneshot::Receiver<()>> {
        let (stopped, done) = oneshot::channel();
        // Its own runtime, so that none of its work runs on the ingest's
        // threads; and its own pool, so that no socket of the ingest's
        // depends on this thread's reactor.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("Failed to start the stock-change relay's runtime")?;
        std::thread::Builder::new()
            .name("stock-relay".to_owned())
            .spawn(move || {
                lower_priority();
                runtime.block_on(async move {
                    let pool = self.pool.clone().connect_lazy_with(self.database.clone());
                    self.run(&pool, stop).await;
                    pool.close().await;
                });
                drop(runtime);
                let _ = stopped.send(());
            })
            .context("Failed to start the stock-change relay's thread")?;
        Ok(done)
    }

    /// Publishes until `stop` is cancelled, standing by while another
    /// instance publishes, and retrying every failure after a pause.
    async fn run(self, pool: &PgPool, stop: CancellationToken) {
        self.status.set(RelayState::Standby);
        let mut pause = Duration::from_millis(200);
        loop {
            let lead = self.lead(pool, &stop);
            tokio::pin!(lead);
            let outcome = tokio::select! {
                outcome = &mut lead => outcome,
                // A round in flight may finish and store its position; a
                // broker that does not answer must not hold the shutdown.
                _ = stop.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut lead).await {
                    Ok(outcome) => outcome,
                    Err(_) => return,
                },
            };
            match outcome {
                Ok(Led::Stopped) => return,
                Ok(Led::Standby) => {
                    self.status.set(RelayState::Standby);
                    pause = Duration::from_secs(1);
                }
                Err(e) => {
                    self.status.set(RelayState::Down);
                    self.metrics.feed_publish_error();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "stock-change relay failed; retrying"
                    );
                    pause = (pause * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Takes the lock and publishes while it holds it.
    async fn lead(&self, pool: &PgPool, stop: &CancellationToken) -> anyhow::Result<Led> {
        let mut conn = self
            .database
            .connect()
            .await
            .context("Failed to connect the relay to PostgreSQL")?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(RELAY_LOCKS)
            .bind(&self.topic)
            .fetch_one(&mut conn)
            .await
            .context("Failed to ask for the relay's lock")?;
        if !held {
            conn.close().await.ok();
            return Ok(Led::Standby);
        }
        topics::ensure_topics(&self.kafka, &[&self.topic])
            .await
            .context("Failed to create the stock-change topic")?;
        // A producer per turn: an idempotent producer that met a broker
        // which lost its state (a restarted broker, a failover) may be
        // fenced for good, and the next turn must not inherit that.
        let producer = producer(&self.kafka)?;
        let mut position = store::relay_position(&mut conn, &self.topic)
            .await
            .context("Failed to read the relay's position")?;
        // Batches commit into the tail from now on; what committed before
        // (and anything it leaves out) is read from the log.
        let _tail = self.tail.open();
        tracing::info!(topic = %self.topic, position, "publishing stock changes");
        self.status.advanced(position);
        let mut counted = Instant::now() - Duration::from_secs(10);
        let mut stored = Instant::now();
        let mut unstored = false;
        // The position is a hint for the next relay, not a promise to a
        // caller: losing its last store in a crash of PostgreSQL means some
        // changes go out again, which at least once allows. So its commits
        // need not wait for the disk.
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await
            .context("Failed to set up the relay's connection")?;
        loop {
            if stop.is_cancelled() {
                if unstored {
                    store::advance_relay(&mut conn, &self.topic, position)
                        .await
                        .ok();
                }
                conn.close().await.ok();
                return Ok(Led::Stopped);
            }
            let horizon = self.horizon.current();
            if horizon <= position {
                self.metrics.feed_lag(0, 0.0);
                let until = tokio::time::Instant::now() + Duration::from_secs(1);
                tokio::select! {
                    _ = stop.cancelled() => continue,
                    _ = self.horizon.passes(position, until) => {}
                }
                // Nothing new: store the position if it moved, which also
                // checks the connection. Holding the lock needs the
                // connection alive; a relay whose connection died has lost
                // it to another.
                if self.horizon.current() <= position {
                    if unstored {
                        store::advance_relay(&mut conn, &self.topic, position)
                            .await
                            .context("Failed to store the relay's position")?;
                        stored = Instant::now();
                        unstored = false;
                    } else {
                        conn.ping()
                            .await
                            .context("The relay's lock connection failed")?;
                    }
                }
                continue;
            }
            let (chunk, next) = self.read(pool, position, horizon).await?;
            if let Some(first) = chunk.first() {
                let behind = (Utc::now() - first.change.changed_at)
                    .as_seconds_f64()
                    .max(0.0);
                // Counting walks the log, so it is done now and then and
                // stops at LAG_CAP: past that, "far behind" is the news.
                if counted.elapsed() >= Duration::from_secs(2) {
                    counted = Instant::now();
                    let lag = store::changes_after(pool, position, LAG_CAP)
                        .await
                        .context("Failed to count unpublished changes")?;
                    self.metrics.feed_lag(lag, behind);
                }
            }
            publish(&producer, &self.topic, &chunk, &self.metrics).await?;
            self.metrics.feed_published(chunk.len());
            position = next;
            self.status.advanced(position);
            // Stored now and then, not every round: each store is a
            // commit, and under a stream of small batches the rounds come
            // every few milliseconds. A relay that dies republishes at
            // most STORE_EVERY of changes, which at least once allows.
            // An idle relay stores what is left when it finds nothing new.
            unstored = true;
            if stored.elapsed() >= STORE_EVERY {
                store::advance_relay(&mut conn, &self.topic, position)
                    .await
                    .context("Failed to store the relay's position")?;
                stored = Instant::now();
                unstored = false;
            }
        }
    }

    /// The next changes after `position`, up to `horizon`, and the
    /// position they take the relay to: from the tail while it holds every
    /// number after `position`, else from the log, up to where the tail
    /// holds numbers again.
    async fn read(
        &self,
        pool: &PgPool,
        position: i64,
        horizon: i64,
    ) -> anyhow::Result<(Vec<RelayedChange>, i64)> {
        let run = self.tail.take(position, horizon, CHUNK as usize);
        if run.through > position {
            self.metrics.feed_read("tail", run.changes.len());
            let chunk = store::complete(pool, run.changes)
                .await
                .context("Failed to look up the levels of stock changes")?;
            return Ok((chunk, run.through));
        }
        let end = self
            .tail
            .next_held(position)
            .map_or(horizon, |held| (held - 1).min(horizon));
        let chunk = store::relayed_changes(pool, position, end, CHUNK)
            .await
            .context("Failed to read stock changes")?;
        self.metrics.feed_read("log", chunk.len());
        // Fewer than a chunk: nothing else is committed up to `end`, and
        // the position may skip what is not a change.
        let next = match chunk.last() {
            Some(last) if chunk.len() as i64 == CHUNK => last.change.seq,
            _ => end,
        };
        Ok((chunk, next))
    }
}

enum Led {
    Stopped,
    Standby,
}

/// The relay's producer: it reports refused records only (see
/// [`publish`]).
type RelayProducer = ThreadedProducer<Refusals>;

/// Counts the records the broker refused, or that timed out: with
/// `delivery.report.only.error`, the only delivery reports there are.
#[derive(Default)]
struct Refusals {
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

fn producer(settings: &KafkaSettings) -> anyhow::Result<RelayProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // A report per acknowledged record cost a third of what the relay
        // spent on sending (a channel, a wake and a future per record);
        // a round counts what is still in flight instead.
        .set("delivery.report.only.error", "true")
        // A round's records go out in few, full requests: each request
        // costs the broker (on the same machine, in the bench) far more
        // than the wait does a reader.
        .set("linger.ms", "20")
        .set("batch.num.messages", "5000")
        // Room for two rounds, so the producer's own queue stays small.
        .set("queue.buffering.max.messages", "10000")
        .set("queue.buffering.max.kbytes", "8192")
        .set("message.timeout.ms", "30000")
        .create_with_context(Refusals::default())
        .context("Failed to create the stock-change producer")
}

/// How far below the ingest's priority the relay runs, in nice steps: at
/// 10, about a tenth of a core's share beside the ingest's threads when
/// all of them want the CPU, and all of whatever they leave idle.
const NICER_BY: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority by [`NICER_BY`] (to
/// at most 19, the lowest). On Linux the nice value belongs to the
/// thread, and the threads it starts inherit it; elsewhere it belongs to
/// the process, so this is Linux only.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid, getpriority and setpriority take no pointers;
        // together they change this thread's nice value and nothing else.
        // getpriority cannot fail for the calling thread's own id.
        let outcome = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (nice + NICER_BY).min(19))
        };
        if outcome != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "Failed to lower the stock-change relay's priority"
            );
        }
    }
}

/// How often a round looks whether the broker has acknowledged it all.
const ACK_POLL: Duration = Duration::from_millis(1);

/// Sends every change of `chunk` and its alerts, and waits until the
/// broker acknowledged all of them. Each change's latency, from its commit
/// to the acknowledgement of its round, goes to the metrics.
///
/// Every record is handed to the producer first (librdkafka copies key and
/// payload, so one buffer serves them all). Then the round waits until the
/// producer has nothing in flight: librdkafka counts a record until the
/// broker acknowledged it, or until the report of its refusal has been
/// served, so at 0 every record is either acknowledged or counted in
/// [`Refusals`]. This is the relay's only producer, and one round runs at
/// a time, so nothing else is in flight.
async fn publish(
    producer: &RelayProducer,
    topic: &str,
    chunk: &[RelayedChange],
    metrics: &Metrics,
) -> anyhow::Result<()> {
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
    while producer.in_flight_count() > 0 {
        tokio::time::sleep(ACK_POLL).await;
    }
    if let Some(e) = producer.context().since(refused) {
        return Err(e).context("The broker did not acknowledge a stock change");
    }
    let now = Utc::now();
    for relayed in chunk {
        metrics.feed_latency((now - relayed.change.changed_at).as_seconds_f64().max(0.0));
    }
    Ok(())
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

/// The record key and CloudEvents `subject` of a change: its pair.
fn pair_key(c: &Change) -> String {
    let mut key = String::with_capacity(73);
    key.push_str(
        c.warehouse_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    key.push(':');
    key.push_str(
        c.product_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    key
}

/// Writes the change as a structured-mode CloudEvent into `out`: the bytes
/// [`change_event`] gives, written directly. A change is serialized a
/// million times in a large ingest, and the generic path formats each UUID
/// and timestamp through `core::fmt`, twice where the envelope repeats
/// them; here each is formatted once. `subject` is [`pair_key`]. The test
/// `the_direct_writer_gives_the_envelopes_bytes` holds the two equal.
fn write_change_event(out: &mut Vec<u8>, c: &Change, subject: &str) {
    let time = c.changed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let (warehouse, product) = subject.split_at(36);
    let product = &product[1..];
    let mut uuid = Uuid::encode_buffer();
    // serde_json writes integers without `core::fmt`.
    let number = |out: &mut Vec<u8>, n: i64| serde_json::to_writer(out, &n).unwrap_or_default();
    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"type\":\"");
    out.extend_from_slice(CHANGED.as_bytes());
    out.extend_from_slice(b"\",\"source\":\"");
    out.extend_from_slice(SOURCE.as_bytes());
    out.extend_from_slice(b"\",\"id\":\"stock-change-");
    number(out, c.seq);
    out.extend_from_slice(b"\",\"subject\":\"");
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"datacontenttype\":\"application/json\",\"data\":{\"seq\":");
    number(out, c.seq);
    out.extend_from_slice(b",\"warehouse_id\":\"");
    out.extend_from_slice(warehouse.as_bytes());
    out.extend_from_slice(b"\",\"product_id\":\"");
    out.extend_from_slice(product.as_bytes());
    out.extend_from_slice(b"\",\"delta\":");
    number(out, c.delta);
    out.extend_from_slice(b",\"quantity\":");
    number(out, c.quantity);
    out.extend_from_slice(b",\"movement_id\":\"");
    out.extend_from_slice(
        c.movement_id
            .hyphenated()
            .encode_lower(&mut uuid)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"event\":");
    // Strings from outside go through the JSON writer, which escapes them.
    serde_json::to_writer(&mut *out, &c.event).unwrap_or_default();
    out.extend_from_slice(b",\"message_id\":");
    serde_json::to_writer(&mut *out, &c.message_id).unwrap_or_default();
    out.extend_from_slice(b",\"changed_at\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// A structured-mode CloudEvent as the relay writes it: serialized from
/// borrowed fields, with no intermediate JSON tree.
#[derive(Serialize)]
struct Envelope<D> {
    specversion: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    source: &'static str,
    id: String,
    subject: String,
    time: DateTime<Utc>,
    datacontenttype: &'static str,
    data: D,
}

impl<D: Serialize> Envelope<D> {
    fn new(kind: &'static str, id: String, c: &Change, data: D) -> Self {
        Envelope {
            specversion: "1.0",
            kind,
            source: SOURCE,
            id,
            subject: format!("{}:{}", c.warehouse_id, c.product_id),
            time: c.changed_at,
            datacontenttype: "application/json",
            data,
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        // Every field serializes (strings, numbers, UUIDs, times).
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What an alert says.
#[derive(Serialize)]
struct AlertData<'a> {
    seq: i64,
    warehouse_id: &'a Uuid,
    product_id: &'a Uuid,
    quantity: i64,
    previous_quantity: i64,
    low: Option<i64>,
    changed_at: &'a DateTime<Utc>,
}

/// The change as a structured-mode CloudEvent, serialized the generic
/// way: the reference [`write_change_event`] is tested against.
#[cfg(test)]
fn change_event(c: &Change) -> Vec<u8> {
    Envelope::new(CHANGED, format!("stock-change-{}", c.seq), c, c).to_vec()
}

/// An alert as a structured-mode CloudEvent; it carries its change's `seq`.
pub fn alert_event(c: &Change, alert: Alert, level: Option<i64>) -> Vec<u8> {
    let data = AlertData {
        seq: c.seq,
        warehouse_id: &c.warehouse_id,
        product_id: &c.product_id,
        quantity: c.quantity,
        previous_quantity: c.before(),
        low: level,
        changed_at: &c.changed_at,
    };
    Envelope::new(
        alert.event_type(),
        format!("stock-{}-{}", alert.as_str(), c.seq),
        c,
        data,
    )
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn change(seq: i64, delta: i64, quantity: i64, message_id: String, nanos: u32) -> Change {
        Change {
            seq,
            warehouse_id: Uuid::new_v4(),
            product_id: Uuid::new_v4(),
            delta,
            quantity,
            movement_id: Uuid::new_v4(),
            event: if delta > 0 { "arrival" } else { "departure" }.to_string(),
            message_id,
            changed_at: Utc
                .timestamp_opt(1_795_000_000 + seq % 1_000_000, nanos)
                .unwrap(),
        }
    }

    proptest! {
        #[test]
        fn the_direct_writer_gives_the_envelopes_bytes(
            seq in 1i64..i64::MAX,
            delta in prop_oneof![1i64..=i64::from(i32::MAX), -i64::from(i32::MAX)..=-1],
            quantity in 0i64..i64::MAX,
            message_id in any::<String>(),
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000, (0u32..1_000_000).prop_map(|m| m * 1000)],
        ) {
            let c = change(seq, delta, quantity, message_id, nanos);
            let mut direct = Vec::new();
            write_change_event(&mut direct, &c, &pair_key(&c));
            prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(change_event(&c)).unwrap());
        }
    }
}
