//! The relay: publishes the ledger's change record to Kafka, each change
//! as a CloudEvent `ru.retail.warehouses.stock.changed` ([`super::cloudevent`]),
//! with its alerts after it.
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
//!   that dies drops its connection, and with it the lock, at once. One
//!   that freezes (a stopped process, a hung host) keeps its connection,
//!   so the leader also renews a lease every [`RENEW_EVERY`], and a
//!   standby that finds it older than [`LEASE`] ends the leader's session
//!   and takes the lock. PostgreSQL's keepalives on the lock connection
//!   drop a leader whose host vanished without a word within about as
//!   long.
//! - The record key is the pair, so a pair's changes land in one
//!   partition in the order the relay sent them, which is `seq` order.
//!
//! What it publishes comes from the ledger's [tail](crate::ledger::tail)
//! while that holds every number after the position: the batches this
//! process committed, handed over in memory. Every other span (other
//! instances' batches, aborted writes' numbers, what committed before this
//! relay took the lead) is read from the log, so the tail only saves the
//! reads, and can lose nothing that the log would have given.

use super::levels::Levels;
use super::producer::{self, RelayProducer};
use super::{position, round};
use crate::backoff::Backoff;
use crate::config::KafkaSettings;
use crate::kafka;
use crate::ledger::log::ChangeLog;
use crate::ledger::numbering;
use crate::telemetry::Metrics;
use anyhow::Context;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How long a stopping relay may take to finish its round.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the relay stores its position while it is behind.
const STORE_EVERY: Duration = Duration::from_millis(500);

/// The most unpublished changes the lag gauge counts.
const LAG_CAP: i64 = 100_000;

/// The advisory lock class of relays: with the topic's hash as key, one
/// relay per topic runs at a time.
const RELAY_LOCKS: i32 = 0x5753_4346;

/// How often a round looks whether the broker has acknowledged it all.
const ACK_POLL: Duration = Duration::from_millis(1);

/// How long a round may wait for the broker before the relay reports
/// itself stalled.
const STALLED_AFTER: Duration = Duration::from_secs(10);

/// How long a round may wait for the broker before the turn ends and the
/// next starts a new producer.
const ABANDON_AFTER: Duration = Duration::from_secs(30);

/// How often the leader renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// How old a lease may grow before a standby ends its holder's session.
/// Several renewals long, so that a leader slowed by a busy machine keeps
/// the lead; a round waiting on a broker that does not answer renews it
/// meanwhile.
const LEASE: Duration = Duration::from_secs(15);

/// PostgreSQL's side of the lock connection: probes after 5 s of silence,
/// every 2 s, 3 of them, and at most 10 s for unacknowledged data, so the
/// server ends the session of a leader whose host vanished.
const KEEPALIVES: [&str; 4] = [
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 10000",
];

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
    /// The database hands out positions at or below what was published
    /// (a failover to a replica that lacked some of it): publishing stops
    /// until an operator acts (README, "Failover").
    Diverged,
}

impl RelayState {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Disabled => "disabled",
            RelayState::Standby => "standby",
            RelayState::Publishing => "ok",
            RelayState::Down => "down",
            RelayState::Diverged => "diverged",
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
    /// The ledger's change record: its horizon, and the tail of what this
    /// process committed, read instead of the log wherever it holds every
    /// number.
    pub log: ChangeLog,
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
        let log = self.log.through(pool.clone());
        let levels = Levels::new(pool.clone());
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let lead = self.lead(&log, &levels, &stop);
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
            let pause = match outcome {
                Ok(Led::Stopped) => return,
                Ok(Led::Standby) => {
                    self.status.set(RelayState::Standby);
                    backoff.reset();
                    Duration::from_secs(1)
                }
                Err(e) if e.is::<Diverged>() => {
                    self.status.set(RelayState::Diverged);
                    tracing::error!(error = format!("{e:#}"), "stock-change relay stopped");
                    Duration::from_secs(5)
                }
                Err(e) => {
                    self.status.set(RelayState::Down);
                    self.metrics.feed_publish_error();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "stock-change relay failed; retrying"
                    );
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Takes the lock and publishes while it holds it.
    async fn lead(
        &self,
        log: &ChangeLog,
        levels: &Levels,
        stop: &CancellationToken,
    ) -> anyhow::Result<Led> {
        let Some(conn) = self.take_lock().await? else {
            return Ok(Led::Standby);
        };
        kafka::ensure_topics(&self.kafka, &[&self.topic])
            .await
            .context("Failed to create the stock-change topic")?;
        // A producer per turn: an idempotent producer that met a broker
        // which lost its state (a restarted broker, a failover) may be
        // fenced for good, and the next turn must not inherit that.
        let producer = producer::producer(&self.kafka)?;
        let mut turn = Turn::begin(conn, &self.topic).await?;
        // Batches commit into the tail from now on; what committed before
        // (and anything it leaves out) is read from the log.
        let _tail = log.tail().open();
        turn.check_sequence(&self.metrics).await?;
        tracing::info!(topic = %self.topic, position = turn.position, "publishing stock changes");
        self.status.advanced(turn.position);
        loop {
            if stop.is_cancelled() {
                turn.end().await;
                return Ok(Led::Stopped);
            }
            if turn.renewed.elapsed() >= RENEW_EVERY {
                turn.renew().await?;
            }
            let horizon = log.horizon();
            if horizon <= turn.position {
                self.metrics.feed_lag(0, 0.0);
                self.idle(&mut turn, log, stop).await?;
                continue;
            }
            self.publish_round(&mut turn, log, levels, &producer, horizon)
                .await?;
        }
    }

    /// Asks for the relay's lock on a connection of its own, which holds
    /// it for as long as the connection lives. `None`: another relay has it.
    async fn take_lock(&self) -> anyhow::Result<Option<PgConnection>> {
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
        if held {
            return Ok(Some(conn));
        }
        // A leader whose lease expired is frozen: end its session, and
        // the lock is free at the next try.
        if position::end_expired(&mut conn, &self.topic, RELAY_LOCKS, LEASE)
            .await
            .context("Failed to check the relay leader's lease")?
        {
            tracing::warn!(topic = %self.topic, "ended the session of a relay leader whose lease expired");
        }
        conn.close().await.ok();
        Ok(None)
    }

    /// Waits up to a second for the horizon to pass the position. If
    /// nothing new came, stores the position if it moved, which also checks
    /// the connection: holding the lock needs the connection alive, and a
    /// relay whose connection died has lost it to another.
    async fn idle(
        &self,
        turn: &mut Turn<'_>,
        log: &ChangeLog,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = log.horizon_passes(turn.position, until) => {}
        }
        if log.horizon() > turn.position {
            return Ok(());
        }
        if turn.unstored {
            turn.store().await?;
        }
        turn.check_sequence(&self.metrics).await
    }

    /// Publishes the next round up to `horizon`, and moves the position
    /// past it once the broker has acknowledged all of it.
    async fn publish_round(
        &self,
        turn: &mut Turn<'_>,
        log: &ChangeLog,
        levels: &Levels,
        producer: &RelayProducer,
        horizon: i64,
    ) -> anyhow::Result<()> {
        let (chunk, next) = round::read(log, levels, &self.metrics, turn.position, horizon).await?;
        if let Some(first) = chunk.first() {
            let behind = (Utc::now() - first.change.changed_at)
                .as_seconds_f64()
                .max(0.0);
            // Counting walks the log, so it is done now and then and stops
            // at LAG_CAP: past that, "far behind" is the news.
            if turn.counted.elapsed() >= Duration::from_secs(2) {
                turn.counted = Instant::now();
                let lag = log
                    .count_after(turn.position, LAG_CAP)
                    .await
                    .context("Failed to count unpublished changes")?;
                self.metrics.feed_lag(lag, behind);
            }
        }
        let sent = producer::send(producer, &self.topic, &chunk).await?;
        self.acknowledged(turn, producer, &sent).await?;
        producer::delivered(&chunk, &self.metrics);
        self.metrics.feed_published(chunk.len());
        turn.position = next;
        self.status.advanced(next);
        turn.advanced().await
    }
}

impl Relay {
    /// Waits until the broker has acknowledged the round `sent`, renewing
    /// the lease meanwhile. Its records never time out (see
    /// `kafka::RELAY`): past [`STALLED_AFTER`] the relay reports itself
    /// down, and past [`ABANDON_AFTER`] it ends the turn, so the next one
    /// starts a new producer and republishes from the stored position (a
    /// producer can stay stuck on a broker that lost its state). Dropping
    /// the producer purges what it still held, and whatever of it had
    /// reached the broker came in order, so the republished changes follow
    /// it without a gap.
    async fn acknowledged(
        &self,
        turn: &mut Turn<'_>,
        producer: &RelayProducer,
        sent: &producer::Sent,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut stalled = false;
        while !producer::acknowledged(producer, sent)? {
            tokio::time::sleep(ACK_POLL).await;
            if turn.renewed.elapsed() >= RENEW_EVERY {
                turn.renew().await?;
            }
            if !stalled && started.elapsed() >= STALLED_AFTER {
                stalled = true;
                self.status.set(RelayState::Down);
                tracing::warn!(topic = %self.topic, "the broker has not acknowledged a round of stock changes for 10 s; waiting");
            }
            anyhow::ensure!(
                started.elapsed() < ABANDON_AFTER,
                "the broker has not acknowledged a round of stock changes for {ABANDON_AFTER:?}"
            );
        }
        Ok(())
    }
}

/// One turn as the leader: the connection that holds the lock, the
/// position, and when it was last stored and the lag last counted.
struct Turn<'a> {
    conn: PgConnection,
    topic: &'a str,
    position: i64,
    stored: Instant,
    unstored: bool,
    counted: Instant,
    renewed: Instant,
}

impl<'a> Turn<'a> {
    async fn begin(mut conn: PgConnection, topic: &'a str) -> anyhow::Result<Self> {
        let position = position::read(&mut conn, topic)
            .await
            .context("Failed to read the relay's position")?;
        // The position is a hint for the next relay, not a promise to a
        // caller: losing its last store in a crash of PostgreSQL means some
        // changes go out again, which at least once allows. So its commits
        // need not wait for the disk.
        for setting in std::iter::once("SET synchronous_commit = off").chain(KEEPALIVES) {
            sqlx::query(setting)
                .execute(&mut conn)
                .await
                .context("Failed to set up the relay's connection")?;
        }
        position::renew(&mut conn, topic, true)
            .await
            .context("Failed to take the relay's lease")?;
        Ok(Turn {
            conn,
            topic,
            position,
            stored: Instant::now(),
            unstored: false,
            counted: Instant::now() - Duration::from_secs(10),
            renewed: Instant::now(),
        })
    }

    /// Refuses to go on if PostgreSQL hands out positions below the one
    /// published: after a failover to an asynchronous replica that lacked
    /// some published entries, new entries would take their numbers, and
    /// consumers told to drop a `seq` they have seen would drop them. Also
    /// checks that the lock connection is alive.
    async fn check_sequence(&mut self, metrics: &Metrics) -> anyhow::Result<()> {
        let handed_out = numbering::handed_out(&mut self.conn)
            .await
            .context("The relay's lock connection failed")?;
        let behind = (self.position - handed_out).max(0);
        metrics.feed_sequence_behind(behind);
        if behind > 0 {
            return Err(Diverged {
                position: self.position,
                handed_out,
            }
            .into());
        }
        Ok(())
    }

    /// Renews the lease; an error if another relay has taken it, which
    /// ends this turn.
    async fn renew(&mut self) -> anyhow::Result<()> {
        let held = position::renew(&mut self.conn, self.topic, false)
            .await
            .context("Failed to renew the relay's lease")?;
        anyhow::ensure!(held, "another relay took the lease of {}", self.topic);
        self.renewed = Instant::now();
        Ok(())
    }

    async fn store(&mut self) -> anyhow::Result<()> {
        position::advance(&mut self.conn, self.topic, self.position)
            .await
            .context("Failed to store the relay's position")?;
        self.stored = Instant::now();
        self.unstored = false;
        Ok(())
    }

    /// After a round: stored now and then, not every round. Each store is
    /// a commit, and under a stream of small batches the rounds come every
    /// few milliseconds. A relay that dies republishes at most
    /// [`STORE_EVERY`] of changes, which at least once allows. An idle
    /// relay stores what is left when it finds nothing new.
    async fn advanced(&mut self) -> anyhow::Result<()> {
        self.unstored = true;
        if self.stored.elapsed() >= STORE_EVERY {
            self.store().await?;
        }
        Ok(())
    }

    /// Stores what is left, and lets the lock go with the connection.
    async fn end(mut self) {
        if self.unstored {
            self.store().await.ok();
        }
        self.conn.close().await.ok();
    }
}

enum Led {
    Stopped,
    Standby,
}

/// PostgreSQL hands out positions below the published one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database hands out audit-log positions up to {handed_out}, below the {position} \
     already published: it lost entries (a failover to an asynchronous replica?); \
     publishing stops until the sequence is moved past the position (README, \"Failover\")"
)]
struct Diverged {
    position: i64,
    handed_out: i64,
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
