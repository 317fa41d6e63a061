//! The horizon: the highest `seq` at or below which every audit entry that
//! will ever commit has committed, so the feed may hand out everything up
//! to it and never find an entry below it later.
//!
//! It is worked out from two facts PostgreSQL gives:
//!
//! - `L`, the last number the sequence handed out. Every number at or
//!   below `L` is held by a transaction that has already taken it, and
//!   every number handed out later is above `L` (the sequence caches one
//!   number per session, its default).
//! - The transactions of this database that hold a transaction id, read
//!   from `pg_stat_activity` after `L` was read. Every transaction takes
//!   its id before it takes numbers ([`super::numbering`]), so every
//!   transaction that holds a number at or below `L` and has not ended is
//!   among them.
//!
//! Once none of those transactions is running any more, whatever they
//! committed is visible to every new snapshot, and `L` is the horizon.
//! A tick reads `L` and the running transactions in one statement, in no
//! set order, so each tick's `L` is paired with the next tick's running
//! set, which was certainly read after it.
//!
//! (A snapshot's `xmin`/`xmax` cannot do this: `xmax` is one past the
//! latest *completed* transaction, so a transaction that took its id and
//! is still running can be at or above it, and in no list.)
//!
//! `pg_stat_activity` shows `backend_xid` for sessions of the reader's own
//! role (and for every session to a role with `pg_read_all_stats`). The
//! ledger's writers are the service's own sessions, so its own role is
//! enough; a deployment that writes the ledger under several roles must
//! give the service's role `pg_read_all_stats`.
//!
//! A long transaction in this database (an idle session inside `BEGIN`
//! that wrote something, a bulk load) holds the horizon back until it
//! ends, unless the operator caps how long it waits for transactions of
//! other applications ([`Foreign`]). That delays the feed; it never makes it skip.
//! `stock_changes_horizon_lag` shows how far, and
//! `stock_changes_horizon_age_seconds` for how long; the ticker's memory
//! stays bounded meanwhile ([`MAX_PENDING`]).
//!
//! ## When a moment is final
//!
//! The same readings tell when "the stock as of t" can no longer change.
//! A batch stamps its entries with the database's clock once it holds its
//! transaction id (`apply::PENDING`). A tick reads the clock, then the
//! running transactions: a transaction that gets its id after that read
//! stamps a later time, and one that had it is in the set. Once none of
//! the set still runs, every commit still to come is stamped after the
//! tick's time, and every moment before it is final ([`State::settled`]).
//! A long transaction holds this back just as it holds the feed.

use crate::telemetry::Metrics;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// The least time between two ticks: a tick per commit would cost more
/// than it gains once commits come faster than this.
const MIN_SPACING: Duration = Duration::from_millis(5);

/// How often an idle horizon looks: other instances' commits wake no one
/// here.
const IDLE: Duration = Duration::from_millis(100);

/// The most readings the ticker keeps waiting while a long transaction
/// holds the horizon back. Past it, the newest replaces the one before it:
/// a reading's own running set covers every number at or below its `L`,
/// so dropping the one before only coarsens the steps the horizon takes
/// once the transaction ends, and memory stays bounded however long it
/// lives (a tick comes about every 10 ms under load).
const MAX_PENDING: usize = 256;

/// How long the horizon waits for a transaction of another application
/// (by `application_name`: the service's own sessions are always waited
/// for). Only a session that takes numbers of the audit log's sequence can
/// hold one the feed must wait for, and numbers are taken only through the
/// ledger ([`super::numbering`]); so ignoring the others after a while
/// leaves no gap, as long as no other program writes the ledger's tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Foreign {
    pub wait: Option<Duration>,
}

/// What a tick has established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Every entry with `seq <= safe` that will ever commit is visible.
    pub safe: i64,
    /// The latest tick whose `L` is covered by `safe`.
    pub resolved: u64,
    /// Since when the oldest reading above `safe` has waited for its
    /// transactions; `None` while none waits.
    pub held_since: Option<Instant>,
    /// Every entry that will ever commit after this moment of the
    /// database's clock is stamped after it: moments before it are final.
    pub settled: DateTime<Utc>,
}

impl Default for State {
    fn default() -> Self {
        State {
            safe: 0,
            resolved: 0,
            held_since: None,
            settled: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// A handle to the horizon of one service; clones share it.
#[derive(Clone)]
pub struct Horizon {
    state: watch::Receiver<State>,
    wake: Arc<Notify>,
    started: Arc<AtomicU64>,
}

impl Horizon {
    /// Starts the task that keeps the horizon. `commits` is notified after
    /// every batch this process commits, which makes the next tick come at
    /// once instead of after [`IDLE`].
    pub(super) fn spawn(
        pool: PgPool,
        commits: Arc<Notify>,
        metrics: Metrics,
        foreign: Foreign,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, state) = watch::channel(State::default());
        let started = Arc::new(AtomicU64::new(0));
        let horizon = Horizon {
            state,
            wake: commits,
            started: started.clone(),
        };
        let ticker = Ticker {
            pool,
            foreign,
            wake: horizon.wake.clone(),
            started,
            sender,
            metrics,
        };
        (horizon, tokio::spawn(ticker.run(stop)))
    }

    /// The horizon as last established.
    pub fn current(&self) -> i64 {
        self.state.borrow().safe
    }

    /// How long the horizon has been held back by a transaction still
    /// running, as of the last tick; `None` while nothing holds it.
    pub fn held_back(&self) -> Option<Duration> {
        self.state.borrow().held_since.map(|at| at.elapsed())
    }

    /// The horizon once it covers every entry committed before this call
    /// (so a reader sees its own acknowledged writes), or as it stands
    /// after `within` if something holds it back that long.
    pub async fn fresh(&self, within: Duration) -> i64 {
        let needed = self.started.load(Ordering::Acquire) + 1;
        self.wake.notify_one();
        let mut state = self.state.clone();
        let reached = state.wait_for(|s| s.resolved >= needed);
        match tokio::time::timeout(within, reached).await {
            Ok(Ok(s)) => s.safe,
            _ => self.current(),
        }
    }

    /// Whether the moment `t` is final (see [`State::settled`]), waiting
    /// up to `within` for it to become so.
    pub async fn settles(&self, t: DateTime<Utc>, within: Duration) -> bool {
        self.wake.notify_one();
        let mut state = self.state.clone();
        let settled = state.wait_for(|s| s.settled > t);
        matches!(tokio::time::timeout(within, settled).await, Ok(Ok(_)))
    }

    /// Waits until the horizon passes `seq`, or `until` passes. Returns the
    /// horizon then.
    pub async fn passes(&self, seq: i64, until: tokio::time::Instant) -> i64 {
        let mut state = self.state.clone();
        let passed = state.wait_for(|s| s.safe > seq);
        match tokio::time::timeout_at(until, passed).await {
            Ok(Ok(s)) => s.safe,
            _ => self.current(),
        }
    }
}

struct Ticker {
    pool: PgPool,
    foreign: Foreign,
    wake: Arc<Notify>,
    started: Arc<AtomicU64>,
    sender: watch::Sender<State>,
    metrics: Metrics,
}

/// One tick's reading: the database's clock, `L`, and the transactions
/// of this database that hold an id (read after the clock).
struct Reading {
    at: DateTime<Utc>,
    last: i64,
    running: HashSet<i64>,
}

/// The reading whose time becomes final once its transactions end: one at
/// a time, so memory stays bounded however long they live.
#[derive(Default)]
struct Settling {
    waiting: Option<(DateTime<Utc>, HashSet<i64>)>,
}

impl Settling {
    fn record(&mut self, state: &mut State, reading: &Reading) {
        if let Some((at, holders)) = &self.waiting
            && holders.is_disjoint(&reading.running)
        {
            state.settled = state.settled.max(*at);
            self.waiting = None;
        }
        if self.waiting.is_none() {
            if reading.running.is_empty() {
                state.settled = state.settled.max(reading.at);
            } else {
                self.waiting = Some((reading.at, reading.running.clone()));
            }
        }
    }
}

/// The readings a tick has not resolved yet, oldest first.
#[derive(Default)]
struct Pending {
    /// Each entry is (tick, L, the transactions running after L was read,
    /// when L was read).
    entries: VecDeque<(u64, i64, HashSet<i64>, Instant)>,
    /// The previous tick's L (and when it was read), waiting for this
    /// tick's snapshot.
    previous: Option<(u64, i64, Instant)>,
}

impl Pending {
    /// Whether nothing waits to be resolved above `safe`.
    fn idle(&self, safe: i64) -> bool {
        self.previous.is_none_or(|(_, last, _)| last <= safe) && self.entries.is_empty()
    }

    /// Takes this tick's reading: pairs the previous tick's `L` with this
    /// tick's running set, and resolves what no running transaction holds.
    fn record(&mut self, state: &mut State, tick: u64, read_at: Instant, reading: &Reading) {
        if let Some((t, last, at)) = self.previous.take() {
            if self.entries.len() >= MAX_PENDING {
                self.entries.pop_back();
            }
            self.entries
                .push_back((t, last, reading.running.clone(), at));
        }
        self.previous = Some((tick, reading.last, read_at));
        // An entry resolves once none of its transactions still runs.
        // Its transactions were running when a later entry's were read, or
        // had ended, so the entries resolve in order.
        while let Some((t, last, holders, _)) = self.entries.front() {
            if *last > state.safe && !holders.is_disjoint(&reading.running) {
                break;
            }
            state.safe = state.safe.max(*last);
            state.resolved = *t;
            self.entries.pop_front();
        }
        // A tick that found nothing new is resolved at once.
        if reading.last <= state.safe && self.entries.is_empty() {
            state.resolved = tick;
            self.previous = None;
        }
        debug_assert!(
            self.entries.len() <= MAX_PENDING,
            "the readings kept are bounded"
        );
        state.held_since = self.entries.front().map(|(.., at)| *at);
    }
}

impl Ticker {
    async fn run(self, stop: CancellationToken) {
        let mut state = State::default();
        let mut pending = Pending::default();
        let mut settling = Settling::default();
        let mut failing = false;
        loop {
            let pause = if failing {
                Duration::from_secs(1)
            } else if pending.idle(state.safe) {
                IDLE
            } else {
                MIN_SPACING
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified(), if !failing => {}
                _ = tokio::time::sleep(pause) => {}
            }
            let tick = self.started.fetch_add(1, Ordering::AcqRel) + 1;
            let read_at = Instant::now();
            let reading = match read(&self.pool, self.foreign).await {
                Ok(r) => r,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "the feed's horizon cannot be read; retrying");
                    }
                    failing = true;
                    continue;
                }
            };
            failing = false;
            pending.record(&mut state, tick, read_at, &reading);
            settling.record(&mut state, &reading);
            let held = state.held_since.map_or(Duration::ZERO, |at| at.elapsed());
            self.metrics
                .feed_horizon(state.safe, reading.last - state.safe, held);
            self.sender.send_if_modified(|s| {
                let changed = *s != state;
                *s = state;
                changed
            });
            tokio::time::sleep(MIN_SPACING).await;
        }
    }
}

async fn read(pool: &PgPool, foreign: Foreign) -> Result<Reading, sqlx::Error> {
    // Sequences are not transactional: the read sees the number last
    // handed out. `backend_xid` is set while a transaction holds an id and
    // cleared once its end is visible to new snapshots.
    // The clock is read first: the running set's subquery refers to it,
    // so it cannot be read before it.
    let row = sqlx::query!(
        r#"SELECT c.at AS "at!",
                  (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                   FROM event_log_seq_seq) AS "last!",
                  ARRAY(SELECT backend_xid::text::int8 FROM pg_stat_activity
                        WHERE datname = current_database() AND backend_xid IS NOT NULL
                          AND c.at IS NOT NULL
                          AND (application_name = $1 OR $2::float8 IS NULL
                               OR xact_start > c.at - make_interval(secs => $2)))
                      AS "running!"
           FROM (SELECT clock_timestamp() AS at OFFSET 0) AS c"#,
        crate::config::APPLICATION_NAME,
        foreign.wait.map(|w| w.as_secs_f64()),
    )
    .fetch_one(pool)
    .await?;
    Ok(Reading {
        at: row.at,
        last: row.last,
        running: row.running.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn reading(second: i64, running: &[i64]) -> Reading {
        Reading {
            at: Utc.timestamp_opt(second, 0).unwrap(),
            last: 0,
            running: running.iter().copied().collect(),
        }
    }

    fn settled(state: &State) -> i64 {
        state.settled.timestamp()
    }

    #[test]
    fn a_reading_with_nothing_running_is_final_at_once() {
        let (mut state, mut settling) = (State::default(), Settling::default());
        settling.record(&mut state, &reading(10, &[]));
        assert_eq!(settled(&state), 10);
    }

    #[test]
    fn a_reading_becomes_final_only_once_every_transaction_it_saw_has_ended() {
        let (mut state, mut settling) = (State::default(), Settling::default());
        settling.record(&mut state, &reading(10, &[1, 2]));
        assert_eq!(state.settled, DateTime::<Utc>::MIN_UTC);
        // 2 still runs: what it may stamp could be before 10.
        settling.record(&mut state, &reading(11, &[2, 3]));
        assert_eq!(state.settled, DateTime::<Utc>::MIN_UTC);
        // Both ended: 10 is final; 12's own set (3) now waits in its place.
        settling.record(&mut state, &reading(12, &[3]));
        assert_eq!(settled(&state), 10);
        settling.record(&mut state, &reading(13, &[4]));
        assert_eq!(settled(&state), 12);
        settling.record(&mut state, &reading(14, &[]));
        assert_eq!(settled(&state), 14);
    }

    #[test]
    fn a_long_transaction_holds_the_final_moment_with_one_reading_kept() {
        let (mut state, mut settling) = (State::default(), Settling::default());
        settling.record(&mut state, &reading(10, &[]));
        for second in 11..1000 {
            settling.record(&mut state, &reading(second, &[7, second]));
        }
        assert_eq!(settled(&state), 10, "held while 7 runs");
        settling.record(&mut state, &reading(1000, &[1000]));
        assert_eq!(settled(&state), 11);
    }
}
