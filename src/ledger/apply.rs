//! Applying a batch of events to PostgreSQL.
//!
//! A batch is read, decided in memory by the pure rules
//! ([`crate::domain::apply_batch`]), and written back in **one statement**,
//! which PostgreSQL commits on its own. That statement checks, row by row,
//! that what the batch read is still true:
//!
//! - a stock row is updated only where its quantity is still the one the
//!   batch read, and created only where it still does not exist;
//! - an audit entry that decides an event is inserted only if no other
//!   transaction got there first, by the audit log's unique index
//!   `event_log_decisive` (below).
//!
//! If any check fails, a concurrent batch changed something this one relied
//! on: nothing of the statement is written, and [`super::Ledger::apply`]
//! runs the batch again on what was committed.
//!
//! Because the write checks every stock quantity a decision used, a first
//! attempt need not read the quantities the process already knows from
//! batches it committed ([`super::remembered`]); only the rest are read.
//!
//! ## One index for both movement rules
//!
//! A movement is the applied entries of its `movement_id` in the audit log.
//! Two rules must hold under concurrent batches: one deciding entry per
//! `(movement_id, event)`, and two applied halves of a movement must have
//! been checked against each other. A deciding entry written for a movement
//! of which the batch saw no deciding entry at all *opens* it, and is keyed
//! `(movement_id, 'open')` in the index; every other deciding entry is
//! keyed `(movement_id, event)`. Only one entry can open a movement, and
//! that is enough for both rules:
//!
//! - The first deciding entry of a movement to commit saw nothing, so it
//!   is the opening one. Any entry decided after seeing some other deciding
//!   entry `Z` decided after `Z` committed, and `Z`, unless it opens the
//!   movement itself, saw the opening entry: so every non-opening entry saw
//!   the opening one.
//! - Two deciding entries for one `(movement_id, event)`: two non-opening
//!   ones share a key; two opening ones share a key; an opening and a
//!   non-opening one cannot both commit, since the latter saw the former
//!   and would have been a duplicate.
//! - Two applied halves that never saw each other: neither can be the
//!   opening entry (the other would have seen it), and the opening entry
//!   is a half of the same movement, so it is one of them (by the rule
//!   above). So one of them saw the other, and the rules checked the pair.
//!
//! The price is that two batches writing the two halves of one new
//! movement at the same moment conflict, and one runs again.
//!
//! This is optimistic: no row locks, two reads that run side by side, and
//! one write round trip that is also the commit. A batch run again after a
//! conflict or a deadlock takes its stock locks in key order
//! ([`Mode::Ordered`]); under heavy contention on the same rows the ledger
//! falls back to [`Mode::Locking`]: the same reads and the same write
//! inside a transaction that first creates and locks every stock row the
//! batch names and takes an advisory lock per movement, each in one global
//! order, so locking batches cannot deadlock with one another and cannot
//! lose a race to one another.

use super::remembered::RememberedStock;
use crate::domain::{
    EventContent, EventKind, LedgerState, MovementEvent, MovementState, Outcome, PriorEvent,
    Quantity, RejectReason, Side, Verdict, apply_batch,
};
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::{PgExecutor, PgPool, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// What a committed batch did, for the caller and for the cache.
#[derive(Debug)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    pub processed_at: DateTime<Utc>,
    /// Every (warehouse, product) the batch read, changed or not.
    pub stock: Vec<(Uuid, Uuid)>,
    /// Every movement the batch read.
    pub movements: Vec<Uuid>,
}

/// How an attempt guards against concurrent batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read without locks; the write checks what was read, updating stock
    /// rows in whatever order its plan visits them (on a large table, the
    /// batch's sorted order; not guaranteed).
    Optimistic,
    /// As `Optimistic`, but the write locks the stock rows in (warehouse,
    /// product) order before it updates them: a little slower, and it
    /// cannot deadlock with another ordered or locking batch. For a batch
    /// that has already met a conflict or a deadlock.
    Ordered,
    /// Create and lock every row first, inside a transaction.
    Locking,
}

type Stock = HashMap<(Uuid, Uuid), i64>;
type Movements = HashMap<Uuid, MovementState>;
type History = HashMap<(Uuid, EventKind), Vec<PriorEvent>>;

/// One attempt at applying `events`. An `Err` with SQLSTATE 40001 means a
/// concurrent batch got in the way and nothing was written.
pub async fn apply_once(
    pool: &PgPool,
    remembered: &RememberedStock,
    events: &[MovementEvent],
    mode: Mode,
) -> Result<Applied, sqlx::Error> {
    let pairs: BTreeSet<(Uuid, Uuid)> = events
        .iter()
        .map(|e| (e.content.warehouse_id, e.content.product_id))
        .collect();
    let movement_ids: BTreeSet<Uuid> = events.iter().map(|e| e.content.movement_id).collect();
    // One timestamp for the whole batch: it commits as one.
    let now = Utc::now().trunc_subsecs(6);

    let (outcomes, stock) = match mode {
        Mode::Optimistic | Mode::Ordered => {
            // Only a first attempt trusts what the process remembers: a
            // batch run again met a change it did not know of.
            let recalled = match mode {
                Mode::Optimistic => remembered.recall(&pairs),
                _ => Stock::new(),
            };
            let unknown: BTreeSet<(Uuid, Uuid)> = pairs
                .iter()
                .filter(|pair| !recalled.contains_key(pair))
                .copied()
                .collect();
            let (mut stock, history) = tokio::try_join!(
                read_stock(pool, &unknown, false),
                read_history(pool, &movement_ids),
            )?;
            let recalled: HashSet<(Uuid, Uuid)> = recalled
                .into_iter()
                .map(|(pair, quantity)| {
                    stock.insert(pair, quantity);
                    pair
                })
                .collect();
            let read = Read {
                stock,
                recalled,
                history,
            };
            decide_and_write(pool, events, read, now, mode).await?
        }
        Mode::Locking => {
            let mut tx = pool.begin().await?;
            create_missing(&mut tx, &pairs).await?;
            let stock = read_stock(&mut *tx, &pairs, true).await?;
            lock_movements(&mut tx, &movement_ids).await?;
            let history = read_history(&mut *tx, &movement_ids).await?;
            let read = Read {
                stock,
                recalled: HashSet::new(),
                history,
            };
            let done = decide_and_write(&mut *tx, events, read, now, mode).await?;
            tx.commit().await?;
            done
        }
    };
    remembered.remember(&stock);

    // Every row read is reported, not only the changed ones: the cache
    // drops all of them, so a redelivered batch (all duplicates) still
    // repairs an entry that a crash between commit and invalidation left.
    Ok(Applied {
        outcomes,
        processed_at: now,
        stock: pairs.into_iter().collect(),
        movements: movement_ids.into_iter().collect(),
    })
}

/// What a batch decides on: the stock of its pairs that exist (read, or
/// `recalled` from what the process remembers) and the audit history of
/// its movements.
struct Read {
    stock: Stock,
    recalled: HashSet<(Uuid, Uuid)>,
    history: History,
}

/// Runs the rules over what was read and writes their effects, checking
/// that what they relied on still holds. Returns the outcomes and the stock
/// of the batch's pairs as the batch left it.
async fn decide_and_write(
    conn: impl PgExecutor<'_>,
    events: &[MovementEvent],
    read: Read,
    now: DateTime<Utc>,
    mode: Mode,
) -> Result<(Vec<Outcome>, Stock), sqlx::Error> {
    let opened = opened_movements(&read.history);
    let mut state = LedgerState {
        stock: read.stock.clone(),
        movements: movements_from(&read.history),
        history: read.history,
    };
    let outcomes = apply_batch(&mut state, events, now);
    WritePlan::new(
        &read.stock,
        &read.recalled,
        &state.stock,
        opened,
        events,
        &outcomes,
        now,
    )
    // A locking attempt holds its row locks already, taken in order.
    .execute(conn, mode == Mode::Ordered)
    .await?;
    Ok((outcomes, state.stock))
}

/// The batch's effects as column arrays for the write statement, with what
/// each row is expected to look like before the write.
#[derive(Default)]
struct WritePlan<'a> {
    /// Existing stock rows: (warehouse, product, quantity read, new quantity).
    updated: (Vec<Uuid>, Vec<Uuid>, Vec<i64>, Vec<i64>),
    /// Stock rows that did not exist when read: (warehouse, product, quantity).
    created: (Vec<Uuid>, Vec<Uuid>, Vec<i64>),
    log: LogColumns<'a>,
}

#[derive(Default)]
struct LogColumns<'a> {
    message_ids: Vec<&'a str>,
    sources: Vec<&'a str>,
    event_times: Vec<Option<DateTime<Utc>>>,
    movement_ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    warehouses: Vec<Uuid>,
    products: Vec<Uuid>,
    quantities: Vec<i32>,
    occurred: Vec<DateTime<Utc>>,
    outcomes: Vec<&'static str>,
    reasons: Vec<Option<&'static str>>,
    attributes: Vec<serde_json::Value>,
    opens: Vec<bool>,
    received_at: DateTime<Utc>,
}

/// The write statement: `$stock` (the stock update, as a `WITH` list
/// entry named `stock_updated`), then the rest, which both modes share.
macro_rules! write_statement {
    ($stock:literal) => {
        concat!(
            $stock,
            "
             stock_created AS (
                 INSERT INTO stock (warehouse_id, product_id, quantity)
                 SELECT * FROM unnest($5::uuid[], $6::uuid[], $7::int8[])
                 RETURNING 1),
             logged AS (
                 INSERT INTO event_log (message_id, source, event_time, movement_id, event,
                                        warehouse_id, product_id, quantity, occurred_at,
                                        outcome, reason, attributes, opens_movement,
                                        received_at)
                 SELECT *, $21::timestamptz
                 FROM unnest($8::text[], $9::text[], $10::timestamptz[], $11::uuid[], $12::text[],
                             $13::uuid[], $14::uuid[], $15::int4[], $16::timestamptz[],
                             $17::text[], $18::text[], $19::jsonb[], $20::bool[])
                 RETURNING 1)
             SELECT CASE WHEN (SELECT count(*) FROM stock_updated) = cardinality($1::uuid[])
                          AND (SELECT count(*) FROM stock_created) = cardinality($5::uuid[])
                          AND (SELECT count(*) FROM logged) = cardinality($8::text[])
                         THEN 0 ELSE ledger_conflict() END"
        )
    };
}

impl<'a> WritePlan<'a> {
    /// `opened` holds the movements the batch read a deciding audit entry
    /// of; the first deciding entry the batch writes for any other
    /// movement opens it.
    fn new(
        read: &Stock,
        recalled: &HashSet<(Uuid, Uuid)>,
        stock: &Stock,
        mut opened: HashSet<Uuid>,
        events: &'a [MovementEvent],
        outcomes: &[Outcome],
        now: DateTime<Utc>,
    ) -> Self {
        let mut plan = WritePlan::default();
        plan.log.received_at = now;
        // The stock rows a decision depended on: every row the batch
        // changes, every row whose quantity refused an event, and every
        // remembered row a duplicate reports. The latter two are written
        // back unchanged, which checks that the refusal, or the reported
        // quantity, still holds when the batch commits. (A duplicate of a
        // row read in this attempt reports what was committed when it was
        // read, which is true without the check.)
        let mut checked: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
        for (event, outcome) in events.iter().zip(outcomes) {
            let c = &event.content;
            match outcome {
                Outcome::Applied { .. } => {
                    checked.insert((c.warehouse_id, c.product_id));
                }
                Outcome::Rejected {
                    reason: RejectReason::InsufficientStock | RejectReason::StockOverflow,
                    replayed: false,
                } => {
                    checked.insert((c.warehouse_id, c.product_id));
                }
                Outcome::Duplicate { .. } if recalled.contains(&(c.warehouse_id, c.product_id)) => {
                    checked.insert((c.warehouse_id, c.product_id));
                }
                _ => {}
            }
            if outcome.is_recorded() {
                let decides = !matches!(
                    outcome,
                    Outcome::Rejected {
                        reason: RejectReason::ConflictingDuplicate,
                        ..
                    }
                );
                let opens = decides && opened.insert(c.movement_id);
                plan.log.push(event, outcome, opens);
            }
        }
        for pair in checked {
            let new = stock.get(&pair).copied().unwrap_or(0);
            match read.get(&pair) {
                Some(&old) => {
                    plan.updated.0.push(pair.0);
                    plan.updated.1.push(pair.1);
                    plan.updated.2.push(old);
                    plan.updated.3.push(new);
                }
                None => {
                    plan.created.0.push(pair.0);
                    plan.created.1.push(pair.1);
                    plan.created.2.push(new);
                }
            }
        }
        plan
    }

    /// Writes everything in one statement. Each part returns the rows it
    /// wrote; a part that wrote fewer rows than planned met a row that a
    /// concurrent batch changed, and `ledger_conflict()` then aborts the
    /// whole statement with SQLSTATE 40001.
    ///
    /// The plain stock update takes its row locks in whatever order its
    /// plan visits the table: the batch's sorted order on a large table
    /// (index lookups driven by the arrays), the table's order on a tiny
    /// one, so two batches on the same hot rows can deadlock. With
    /// `ordered`, the rows are first locked in (warehouse, product) order
    /// (the arrays are sorted), by the step that also does the
    /// compare-and-set; that costs a lock per row, about a third more time
    /// per batch, so only batches that met a conflict pay it.
    async fn execute(self, conn: impl PgExecutor<'_>, ordered: bool) -> Result<(), sqlx::Error> {
        let log = self.log;
        let statement = if ordered {
            write_statement!(
                "WITH stock_locked AS (
                     SELECT u.w, u.p, u.new
                     FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::int8[])
                          WITH ORDINALITY AS u(w, p, old, new, n)
                     JOIN stock s ON s.warehouse_id = u.w AND s.product_id = u.p
                     WHERE s.quantity = u.old
                     ORDER BY u.n
                     FOR UPDATE OF s),
                 stock_updated AS (
                     UPDATE stock s SET quantity = l.new, updated_at = now()
                     FROM stock_locked l
                     WHERE s.warehouse_id = l.w AND s.product_id = l.p
                     RETURNING 1),"
            )
        } else {
            write_statement!(
                "WITH stock_updated AS (
                     UPDATE stock s SET quantity = u.new, updated_at = now()
                     FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::int8[])
                          AS u(w, p, old, new)
                     WHERE s.warehouse_id = u.w AND s.product_id = u.p AND s.quantity = u.old
                     RETURNING 1),"
            )
        };
        sqlx::query(statement)
            .bind(&self.updated.0)
            .bind(&self.updated.1)
            .bind(&self.updated.2)
            .bind(&self.updated.3)
            .bind(&self.created.0)
            .bind(&self.created.1)
            .bind(&self.created.2)
            .bind(&log.message_ids)
            .bind(&log.sources)
            .bind(&log.event_times)
            .bind(&log.movement_ids)
            .bind(&log.kinds)
            .bind(&log.warehouses)
            .bind(&log.products)
            .bind(&log.quantities)
            .bind(&log.occurred)
            .bind(&log.outcomes)
            .bind(&log.reasons)
            .bind(&log.attributes)
            .bind(&log.opens)
            .bind(log.received_at)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl<'a> LogColumns<'a> {
    fn push(&mut self, e: &'a MovementEvent, outcome: &Outcome, opens: bool) {
        let c = &e.content;
        self.message_ids.push(e.message_id.as_str());
        self.sources.push(e.source.as_str());
        self.event_times.push(e.event_time);
        self.movement_ids.push(c.movement_id);
        self.kinds.push(c.kind.as_str());
        self.warehouses.push(c.warehouse_id);
        self.products.push(c.product_id);
        self.quantities.push(c.quantity.get());
        self.occurred.push(c.occurred_at);
        match outcome {
            Outcome::Rejected { reason, .. } => {
                self.outcomes.push("rejected");
                self.reasons.push(Some(reason.as_str()));
            }
            _ => {
                self.outcomes.push("applied");
                self.reasons.push(None);
            }
        }
        self.attributes
            .push(serde_json::Value::Object(e.attributes.clone()));
        self.opens.push(opens);
    }
}

/// Creates the stock rows the batch names that do not exist yet, so that
/// they can be locked: a row that does not exist cannot be, and two
/// batches that both saw "no row" would both decide on the same empty
/// state. The arrays are sorted, and unnest yields them in order, so rows
/// are created in that order too.
async fn create_missing(
    conn: &mut sqlx::PgConnection,
    pairs: &BTreeSet<(Uuid, Uuid)>,
) -> Result<(), sqlx::Error> {
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO stock (warehouse_id, product_id)
         SELECT * FROM unnest($1::uuid[], $2::uuid[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&warehouses)
    .bind(&products)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The stock rows of `pairs` that exist. With `lock`, each is locked, in
/// (warehouse, product) order.
async fn read_stock(
    conn: impl PgExecutor<'_>,
    pairs: &BTreeSet<(Uuid, Uuid)>,
    lock: bool,
) -> Result<Stock, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(Stock::new());
    }
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let query = if lock {
        "SELECT s.warehouse_id, s.product_id, s.quantity
         FROM stock s
         JOIN unnest($1::uuid[], $2::uuid[]) AS k(w, p)
           ON s.warehouse_id = k.w AND s.product_id = k.p
         ORDER BY s.warehouse_id, s.product_id
         FOR UPDATE OF s"
    } else {
        "SELECT s.warehouse_id, s.product_id, s.quantity
         FROM stock s
         JOIN unnest($1::uuid[], $2::uuid[]) AS k(w, p)
           ON s.warehouse_id = k.w AND s.product_id = k.p"
    };
    let rows = sqlx::query(query)
        .bind(&warehouses)
        .bind(&products)
        .fetch_all(conn)
        .await?;
    let mut quantities = HashMap::with_capacity(rows.len());
    for row in rows {
        let pair: (Uuid, Uuid) = (row.try_get(0)?, row.try_get(1)?);
        quantities.insert(pair, row.try_get::<i64, _>(2)?);
    }
    Ok(quantities)
}

/// The advisory lock class of movements: the first key of
/// `pg_advisory_xact_lock(int4, int4)`, so that these locks share no key
/// with advisory locks taken for other purposes.
const MOVEMENT_LOCKS: i32 = 0x5753_4d56;

/// Takes a transaction-scoped advisory lock per movement of `ids`, in key
/// order. A movement has no row of its own to lock; its key is its id
/// folded to 32 bits, and two movements that fold to one key merely share
/// a lock.
async fn lock_movements(
    conn: &mut sqlx::PgConnection,
    ids: &BTreeSet<Uuid>,
) -> Result<(), sqlx::Error> {
    let keys: BTreeSet<i32> = ids
        .iter()
        .map(|id| {
            let v = id.as_u128();
            let v = (v ^ (v >> 64)) as u64;
            (v ^ (v >> 32)) as u32 as i32
        })
        .collect();
    let keys: Vec<i32> = keys.into_iter().collect();
    // unnest yields the sorted keys in order, and a plain function scan
    // keeps that order, so the locks are taken in it.
    sqlx::query("SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k")
        .bind(MOVEMENT_LOCKS)
        .bind(&keys)
        .fetch_all(conn)
        .await?;
    Ok(())
}

/// The movements the audit log has a deciding entry of (applied, or
/// refused for a reason of its own).
fn opened_movements(history: &History) -> HashSet<Uuid> {
    history
        .values()
        .flatten()
        .filter(|prior| prior.verdict != Verdict::Rejected(RejectReason::ConflictingDuplicate))
        .map(|prior| prior.content.movement_id)
        .collect()
}

/// The movements as the audit log gives them: each applied entry is one
/// half.
fn movements_from(history: &History) -> Movements {
    let mut movements = Movements::new();
    for prior in history.values().flatten() {
        if prior.verdict == Verdict::Applied {
            let c = &prior.content;
            movements
                .entry(c.movement_id)
                .or_default()
                .record(c.kind, c.product_id, Side::of(c));
        }
    }
    movements
}

/// The audit entries of the movements `ids`, oldest first. The two halves
/// of the union match the two partial unique indexes of the log: the entry
/// that decided each (movement_id, event), and the rare later entries that
/// were refused as conflicting duplicates.
async fn read_history(
    conn: impl PgExecutor<'_>,
    ids: &BTreeSet<Uuid>,
) -> Result<History, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let rows = sqlx::query(
        "SELECT seq, movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                outcome, reason, received_at
         FROM event_log
         WHERE movement_id = ANY($1) AND reason IS DISTINCT FROM 'conflicting_duplicate'
         UNION ALL
         SELECT seq, movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                outcome, reason, received_at
         FROM event_log
         WHERE movement_id = ANY($1) AND reason = 'conflicting_duplicate'
         ORDER BY seq",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut history: History = HashMap::new();
    for row in rows {
        let kind = decode_kind(row.try_get(2)?)?;
        let quantity = Quantity::parse(i64::from(row.try_get::<i32, _>(5)?))
            .map_err(|e| sqlx::Error::Decode(e.into()))?;
        let content = EventContent {
            movement_id: row.try_get(1)?,
            kind,
            warehouse_id: row.try_get(3)?,
            product_id: row.try_get(4)?,
            quantity,
            occurred_at: row.try_get(6)?,
        };
        let verdict = match (
            row.try_get::<&str, _>(7)?,
            row.try_get::<Option<&str>, _>(8)?,
        ) {
            ("applied", _) => Verdict::Applied,
            (_, Some(reason)) => {
                Verdict::Rejected(RejectReason::parse(reason).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown rejection reason {reason:?}").into())
                })?)
            }
            (outcome, None) => {
                return Err(sqlx::Error::Decode(
                    format!("outcome {outcome:?} without a reason").into(),
                ));
            }
        };
        history
            .entry((content.movement_id, kind))
            .or_default()
            .push(PriorEvent {
                content,
                verdict,
                processed_at: row.try_get(9)?,
            });
    }
    Ok(history)
}

fn decode_kind(s: &str) -> Result<EventKind, sqlx::Error> {
    EventKind::parse(s).ok_or_else(|| sqlx::Error::Decode(format!("unknown event {s:?}").into()))
}
