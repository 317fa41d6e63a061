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
//! This is optimistic: no row locks while reading, two reads that run side
//! by side, and one write round trip that is also the commit. Under heavy
//! contention on the same rows the ledger falls back to [`Mode::Locking`]:
//! the same reads and the same write inside a transaction that first
//! creates and locks every stock row the batch names and takes an advisory
//! lock per movement.
//!
//! ## No cycle of lock waits
//!
//! Batches still wait for each other: for a stock row another batch is
//! writing, for an advisory movement lock, and for an audit-log key that
//! another batch inserted and has not committed. Every batch takes these in
//! one global order, so no set of batches (of one instance or many) can
//! wait for each other in a circle, and PostgreSQL never has to break a
//! deadlock by failing one of them:
//!
//! 1. stock rows, in (warehouse, product) order: the write is an
//!    `INSERT … ON CONFLICT DO UPDATE` fed by sorted arrays, which visits
//!    its rows in array order whatever plan the table's size gets (a plain
//!    `UPDATE … FROM` visits them in its join's order, which on a small
//!    table is the heap's, and that is how two batches used to deadlock);
//!    the locking mode's first statement is an upsert in the same order;
//! 2. (locking mode only) advisory movement locks, in key order;
//! 3. audit-log keys, in the order of [`LogEntry::lock_key`]: the
//!    write inserts its entries sorted by their unique keys, and gives them
//!    their `seq` in batch order all the same.
//!
//! A batch waiting at one step holds only what it took at earlier steps,
//! and whoever it waits for took that resource at the same step or an
//! earlier one and goes on only to later ones.

use super::change::{AppliedRow, LoggedChange};
use super::remembered::RememberedStock;
use super::tail::Logged;
use crate::domain::{
    EventContent, EventKind, LedgerState, MovementEvent, MovementState, Outcome, PriorEvent,
    Quantity, RejectReason, Side, Verdict, apply_batch,
};
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::{PgExecutor, PgPool, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;
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
    /// What it wrote to the audit log, for the log's tail; empty unless
    /// the caller asked for it.
    pub(super) logged: Logged,
}

/// How an attempt guards against concurrent batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read without locks; the write checks what was read. With `recall`,
    /// the quantities the process remembers are taken instead of read.
    Optimistic { recall: bool },
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
    changes: bool,
) -> Result<Applied, sqlx::Error> {
    let pairs: BTreeSet<(Uuid, Uuid)> = events
        .iter()
        .map(|e| (e.content.warehouse_id, e.content.product_id))
        .collect();
    let movement_ids: BTreeSet<Uuid> = events.iter().map(|e| e.content.movement_id).collect();

    let (outcomes, stock, logged, now) = match mode {
        Mode::Optimistic { recall } => {
            // Only a first attempt trusts what the process remembers: a
            // batch run again met a change it did not know of.
            let recalled = if recall {
                remembered.recall(&pairs)
            } else {
                Stock::new()
            };
            let unknown: BTreeSet<(Uuid, Uuid)> = pairs
                .iter()
                .filter(|pair| !recalled.contains_key(pair))
                .copied()
                .collect();
            let (mut stock, history) = tokio::try_join!(
                read_stock(pool, &unknown),
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
            let now = applied_at();
            let (outcomes, stock, logged) =
                decide_and_write(pool, events, read, now, changes).await?;
            (outcomes, stock, logged, now)
        }
        Mode::Locking => {
            let mut tx = pool.begin().await?;
            let stock = lock_stock(&mut tx, &pairs).await?;
            lock_movements(&mut tx, &movement_ids).await?;
            let history = read_history(&mut *tx, &movement_ids).await?;
            let read = Read {
                stock,
                recalled: HashSet::new(),
                history,
            };
            let now = applied_at();
            let (outcomes, stock, logged) =
                decide_and_write(&mut *tx, events, read, now, changes).await?;
            tx.commit().await?;
            (outcomes, stock, logged, now)
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
        logged,
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

/// The batch's `applied_at` (the audit log's `received_at`): one value for
/// the whole batch, since it commits as one, taken once the batch has read
/// what it decides on. That makes it later than the `applied_at` of every
/// batch whose effects it read, so along the entries of one pair the
/// ledger's clock never goes backwards (on one instance's clock), and
/// "the stock as of t" has one answer.
fn applied_at() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Runs the rules over what was read and writes their effects, checking
/// that what they relied on still holds. Returns the outcomes, the stock
/// of the batch's pairs as the batch left it, and what it logged (with
/// its changes if `changes`).
async fn decide_and_write(
    conn: impl PgExecutor<'_>,
    events: &[MovementEvent],
    read: Read,
    now: DateTime<Utc>,
    changes: bool,
) -> Result<(Vec<Outcome>, Stock, Logged), sqlx::Error> {
    let opened = opened_movements(&read.history);
    let mut state = LedgerState {
        stock: read.stock.clone(),
        movements: movements_from(&read.history),
        history: read.history,
    };
    let outcomes = apply_batch(&mut state, events, now);
    let plan = WritePlan::new(
        &read.stock,
        &read.recalled,
        &state.stock,
        opened,
        events,
        &outcomes,
        now,
    );
    let taken = plan.execute(conn).await?;
    // Numbers without their changes would read as entries that are not
    // changes, so the tail gets both or nothing (and then the relay reads
    // the batch from the log). There is a number per entry, always.
    let logged = if changes && taken.len() == plan.log.positions.len() {
        Logged {
            changes: plan.log.changes(&taken),
            taken,
        }
    } else {
        Logged::default()
    };
    Ok((outcomes, state.stock, logged))
}

/// The batch's effects as column arrays for the write statement, with what
/// each row is expected to look like before the write.
#[derive(Default)]
struct WritePlan<'a> {
    /// Stock rows in (warehouse, product) order.
    stock: StockColumns,
    log: LogColumns<'a>,
}

/// Declares the columns one part of the write statement fills from arrays:
/// for each, the field of the struct that holds the array, its element type
/// in PostgreSQL, and the table's column. From that one list come the
/// part's column list, its `unnest` parameters with their casts, and the
/// binds in the same order, so the three cannot drift apart.
macro_rules! columns {
    ($columns:ident for $holder:ty, bound by $bind:ident:
     $( $field:ident: $ty:literal => $column:literal ),+ $(,)?) => {
        const $columns: &[Column] = &[$(Column { name: $column, ty: $ty }),+];

        fn $bind<'q>(query: PgQuery<'q>, columns: &'q $holder) -> PgQuery<'q> {
            query $(.bind(&columns.$field))+
        }
    };
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A column the write statement fills from an array parameter.
struct Column {
    name: &'static str,
    /// The element type the parameter is cast to.
    ty: &'static str,
}

#[derive(Default)]
struct StockColumns {
    warehouses: Vec<Uuid>,
    products: Vec<Uuid>,
    /// The quantity the batch decided on.
    quantities: Vec<i64>,
    /// The quantity the batch read, or `None` where there was no row.
    expected: Vec<Option<i64>>,
}

columns! {
    STOCK_COLUMNS for StockColumns, bound by bind_stock:
    warehouses: "uuid" => "warehouse_id",
    products: "uuid" => "product_id",
    quantities: "int8" => "quantity",
    expected: "int8" => "expected_quantity",
}

#[derive(Default)]
struct LogColumns<'a> {
    /// Each entry's place in the batch among the entries written (from 1):
    /// entries are written in lock order, and numbered in batch order. Its
    /// column takes the sequence number of that place (see `seqs`).
    positions: Vec<i32>,
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
    /// Whether an applied entry is its pair's first change, where the
    /// batch knows it (see `LogEntry::opens_pair`).
    opens_pairs: Vec<bool>,
    /// The pair's stock right after an applied entry; `None` for a
    /// rejected one.
    stock_afters: Vec<Option<i64>>,
    /// One value for the whole batch, bound after the arrays.
    received_at: DateTime<Utc>,
}

columns! {
    LOG_COLUMNS for LogColumns<'_>, bound by bind_log:
    positions: "int4" => "seq",
    message_ids: "text" => "message_id",
    sources: "text" => "source",
    event_times: "timestamptz" => "event_time",
    movement_ids: "uuid" => "movement_id",
    kinds: "text" => "event",
    warehouses: "uuid" => "warehouse_id",
    products: "uuid" => "product_id",
    quantities: "int4" => "quantity",
    occurred: "timestamptz" => "occurred_at",
    outcomes: "text" => "outcome",
    reasons: "text" => "reason",
    attributes: "jsonb" => "attributes",
    opens: "bool" => "opens_movement",
    opens_pairs: "bool" => "opens_pair",
    stock_afters: "int8" => "stock_after",
}

/// The write statement, generated once from [`STOCK_COLUMNS`] and
/// [`LOG_COLUMNS`]. Each part returns the rows it wrote; a part that wrote
/// fewer rows than planned met a row that a concurrent batch changed, and
/// `ledger_conflict()` then aborts the whole statement with SQLSTATE 40001.
/// The parts run in the order the final `SELECT` reads them: stock first,
/// then the audit log (the lock order above).
///
/// `stock_written` is a compare-and-set per row. The proposed row carries
/// the quantity the batch read in `expected_quantity` (null where it found
/// no row; see migration 5): an existing row is updated only where its
/// quantity is still that one, and a row the batch found missing is
/// created, or left alone where it exists by now (null matches nothing). A
/// row the batch read but that has since been deleted would be created
/// with a non-null `expected_quantity`, and the check refuses it. (The
/// proposed row must pass the table's checks even where it is not
/// inserted, so it carries the new quantity, never a delta.)
///
/// `seqs` takes one sequence number per entry, ascending, and each entry
/// takes the one of its place in the batch: the audit log orders a batch's
/// entries as the batch applied them, though they are inserted in lock
/// order. Its filter makes two things happen before the first number is
/// taken, which the change log's readers rely on ([`super::log`]):
///
/// - `stock_written` has run, so the batch holds the row lock of every
///   pair it changes. Two batches that change one pair hold that lock one
///   after the other until they commit, so their numbers are taken one
///   after the other too: along a pair, `seq` order is commit order.
/// - The transaction has its id, so a reader that sees a number handed
///   out can tell, from the transactions holding an id, whether the one
///   holding that number may still commit.
static WRITE_STATEMENT: LazyLock<String> = LazyLock::new(write_statement);

fn write_statement() -> String {
    let mut next = 0;
    let mut params = |columns: &[Column]| -> String {
        let list: Vec<String> = columns
            .iter()
            .map(|c| {
                next += 1;
                format!("${next}::{}[]", c.ty)
            })
            .collect();
        list.join(", ")
    };
    let stock_params = params(STOCK_COLUMNS);
    let log_params = params(LOG_COLUMNS);
    let received_at = format!("${}::timestamptz", next + 1);
    let names = |columns: &[Column], prefix: &str| -> String {
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("{prefix}{}", c.name))
            .collect();
        list.join(", ")
    };
    let stock_columns = names(STOCK_COLUMNS, "");
    let log_columns = names(LOG_COLUMNS, "");
    // The first parameter of each part gives its row count.
    let stock_rows = format!("cardinality($1::{}[])", STOCK_COLUMNS[0].ty);
    let log_rows = format!(
        "cardinality(${}::{}[])",
        STOCK_COLUMNS.len() + 1,
        LOG_COLUMNS[0].ty
    );
    let log_values = names(LOG_COLUMNS, "u.").replacen("u.seq", "(SELECT seq FROM seqs)[u.seq]", 1);
    debug_assert_eq!(
        LOG_COLUMNS[0].name, "seq",
        "the first log column is the place"
    );
    format!(
        "WITH stock_written AS (
        INSERT INTO stock AS s ({stock_columns})
        SELECT * FROM unnest({stock_params})
        ON CONFLICT (warehouse_id, product_id) DO UPDATE
            SET quantity = excluded.quantity, updated_at = now()
            WHERE s.quantity = excluded.expected_quantity
        RETURNING s.expected_quantity),
    seqs AS MATERIALIZED (
        SELECT array_agg(n.seq ORDER BY n.seq) AS seq
        FROM (SELECT nextval('event_log_seq_seq') AS seq
              FROM generate_series(1, {log_rows})
              WHERE (SELECT count(*) FROM stock_written) >= 0
                AND pg_current_xact_id() IS NOT NULL) AS n),
    logged AS (
        INSERT INTO event_log ({log_columns}, received_at)
        SELECT {log_values}, {received_at}
        FROM unnest({log_params}) AS u({log_columns})
        RETURNING 1)
    SELECT CASE WHEN (SELECT count(*) FROM stock_written WHERE expected_quantity IS NULL)
                     = {stock_rows}
                 AND (SELECT count(*) FROM logged) = {log_rows}
                THEN 0 ELSE ledger_conflict() END AS checked,
           (SELECT seq FROM seqs) AS taken"
    )
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
        debug_assert_eq!(events.len(), outcomes.len(), "one outcome per event");
        let mut plan = WritePlan::default();
        // The stock rows a decision depended on: every row the batch
        // changes, every row whose quantity refused an event, and every
        // remembered row a duplicate reports. The latter two are written
        // back unchanged, which checks that the refusal, or the reported
        // quantity, still holds when the batch commits. (A duplicate of a
        // row read in this attempt reports what was committed when it was
        // read, which is true without the check.)
        let mut checked: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
        // The pairs the batch found no stock row of and has written an
        // applied entry for.
        let mut opened_pairs: HashSet<(Uuid, Uuid)> = HashSet::new();
        let mut entries = Vec::new();
        for (event, outcome) in events.iter().zip(outcomes) {
            let c = &event.content;
            match outcome {
                Outcome::Applied { .. } => {
                    checked.insert((c.warehouse_id, c.product_id));
                }
                Outcome::Rejected {
                    reason: RejectReason::InsufficientStock | RejectReason::StockOverflow,
                    replayed: false,
                    ..
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
                let pair = (c.warehouse_id, c.product_id);
                let opens_pair = matches!(outcome, Outcome::Applied { .. })
                    && !read.contains_key(&pair)
                    && opened_pairs.insert(pair);
                entries.push(LogEntry {
                    position: entries.len() as i32 + 1,
                    event,
                    outcome: *outcome,
                    decides,
                    opens,
                    opens_pair,
                });
            }
        }
        entries.sort_by_key(LogEntry::lock_key);
        plan.log = LogColumns::from_entries(&entries, now);
        for pair in checked {
            plan.stock.warehouses.push(pair.0);
            plan.stock.products.push(pair.1);
            plan.stock
                .quantities
                .push(stock.get(&pair).copied().unwrap_or(0));
            plan.stock.expected.push(read.get(&pair).copied());
        }
        plan
    }

    /// Writes everything in one statement (see [`WRITE_STATEMENT`]), and
    /// returns the numbers its entries took, ascending (the entry at place
    /// `i` took the `i`-th).
    async fn execute(&self, conn: impl PgExecutor<'_>) -> Result<Vec<i64>, sqlx::Error> {
        let query = sqlx::query(WRITE_STATEMENT.as_str());
        let query = bind_log(bind_stock(query, &self.stock), &self.log);
        let row = query.bind(self.log.received_at).fetch_one(conn).await?;
        // No entries, no numbers: `array_agg` of nothing is null.
        let taken: Option<Vec<i64>> = row.try_get("taken")?;
        Ok(taken.unwrap_or_default())
    }
}

/// One audit entry the batch writes.
struct LogEntry<'a> {
    /// Its place among the batch's entries, from 1.
    position: i32,
    event: &'a MovementEvent,
    outcome: Outcome,
    /// Whether it decides its (movement_id, event): all but conflicting
    /// duplicates, which the index `event_log_conflicts` keys instead.
    decides: bool,
    opens: bool,
    /// Whether it is the first applied entry of a pair that the batch
    /// found no stock row of: the pair's first change ever, since every
    /// applied change writes its row, and the write refuses to create a
    /// row that a concurrent batch created first. Where the batch found a
    /// row it is false, though the row may have no change behind it (a
    /// refusal writes its row back, the locking mode creates every row it
    /// locks): readers ask the log about those ([`super::log::ChangeLog::first_changes`]).
    opens_pair: bool,
}

impl LogEntry<'_> {
    /// The order every batch inserts its entries in: by the key of the
    /// unique index each one enters, movement first. Two batches that race
    /// for two keys thus wait for each other at the first of them, never
    /// each at a different one.
    #[allow(clippy::type_complexity)]
    fn lock_key(&self) -> (Uuid, bool, &'static str, Uuid, Uuid, i32, DateTime<Utc>) {
        let c = &self.event.content;
        let event = if self.opens { "open" } else { c.kind.as_str() };
        (
            c.movement_id,
            !self.decides,
            event,
            c.warehouse_id,
            c.product_id,
            c.quantity.get(),
            c.occurred_at,
        )
    }
}

impl<'a> LogColumns<'a> {
    fn from_entries(entries: &[LogEntry<'a>], received_at: DateTime<Utc>) -> Self {
        let mut columns = LogColumns {
            received_at,
            ..LogColumns::default()
        };
        for entry in entries {
            columns.push(entry);
        }
        columns
    }

    fn push(&mut self, entry: &LogEntry<'a>) {
        let (e, c) = (entry.event, &entry.event.content);
        self.positions.push(entry.position);
        self.message_ids.push(e.message_id.as_str());
        self.sources.push(e.source.as_str());
        self.event_times.push(e.event_time);
        self.movement_ids.push(c.movement_id);
        self.kinds.push(c.kind.as_str());
        self.warehouses.push(c.warehouse_id);
        self.products.push(c.product_id);
        self.quantities.push(c.quantity.get());
        self.occurred.push(c.occurred_at);
        match entry.outcome {
            Outcome::Rejected { reason, .. } => {
                self.outcomes.push("rejected");
                self.reasons.push(Some(reason.as_str()));
                self.stock_afters.push(None);
            }
            Outcome::Applied { stock_after } => {
                self.outcomes.push("applied");
                self.reasons.push(None);
                self.stock_afters.push(Some(stock_after));
            }
            Outcome::Duplicate { .. } => unreachable!("duplicates are answered, not recorded"),
        }
        self.attributes
            .push(serde_json::Value::Object(e.attributes.clone()));
        self.opens.push(entry.opens);
        self.opens_pairs.push(entry.opens_pair);
    }

    /// The applied entries (those with a stock after) as the changes they
    /// are, in `seq` order, given the number each place took: the rows as
    /// the log now holds them.
    fn changes(&self, taken: &[i64]) -> Vec<LoggedChange> {
        let mut changes: Vec<LoggedChange> = (0..self.positions.len())
            .filter_map(|i| {
                let stock_after = self.stock_afters[i]?;
                let event = EventKind::parse(self.kinds[i]);
                assert!(event.is_some(), "the plan writes only event kinds");
                let row = AppliedRow {
                    seq: taken[self.positions[i] as usize - 1],
                    warehouse_id: self.warehouses[i],
                    product_id: self.products[i],
                    event: event?,
                    quantity: self.quantities[i],
                    stock_after,
                    movement_id: self.movement_ids[i],
                    message_id: self.message_ids[i].to_owned(),
                    received_at: self.received_at,
                    opens_pair: self.opens_pairs[i],
                };
                Some(row.into_logged())
            })
            .collect();
        changes.sort_unstable_by_key(|c| c.change.seq);
        changes
    }
}

/// Creates the stock rows of `pairs` that do not exist yet and locks all
/// of them, in (warehouse, product) order, in one pass: a row that does not
/// exist cannot be locked, and two batches that both saw "no row" would
/// both decide on the same empty state. Returns every quantity (0 for the
/// rows it created). The no-op update is what takes the lock of a row that
/// exists; visiting rows in array order is what keeps the lock order.
async fn lock_stock(
    conn: &mut sqlx::PgConnection,
    pairs: &BTreeSet<(Uuid, Uuid)>,
) -> Result<Stock, sqlx::Error> {
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows = sqlx::query!(
        "INSERT INTO stock AS s (warehouse_id, product_id)
         SELECT * FROM unnest($1::uuid[], $2::uuid[])
         ON CONFLICT (warehouse_id, product_id) DO UPDATE SET quantity = s.quantity
         RETURNING s.warehouse_id, s.product_id, s.quantity",
        &warehouses,
        &products,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.warehouse_id, r.product_id), r.quantity))
        .collect())
}

/// The stock rows of `pairs` that exist, without locks.
async fn read_stock(
    conn: impl PgExecutor<'_>,
    pairs: &BTreeSet<(Uuid, Uuid)>,
) -> Result<Stock, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(Stock::new());
    }
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows = sqlx::query!(
        "SELECT s.warehouse_id, s.product_id, s.quantity
         FROM stock s
         JOIN unnest($1::uuid[], $2::uuid[]) AS k(w, p)
           ON s.warehouse_id = k.w AND s.product_id = k.p",
        &warehouses,
        &products,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.warehouse_id, r.product_id), r.quantity))
        .collect())
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
    // keeps that order, so the locks are taken in it. Checked at run time:
    // the query macros cannot describe a `void` column.
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
    // A UNION's columns are all nullable to the macros; the table's own
    // NOT NULLs hold for both halves.
    let rows = sqlx::query_as!(
        HistoryRow,
        r#"SELECT movement_id AS "movement_id!", event AS "event!: EventKind",
                warehouse_id AS "warehouse_id!", product_id AS "product_id!",
                quantity AS "quantity!", occurred_at AS "occurred_at!",
                outcome AS "outcome!: StoredOutcome", reason AS "reason: RejectReason",
                received_at AS "received_at!"
         FROM (SELECT seq, movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                      outcome, reason, received_at
               FROM event_log
               WHERE movement_id = ANY($1) AND reason IS DISTINCT FROM 'conflicting_duplicate'
               UNION ALL
               SELECT seq, movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                      outcome, reason, received_at
               FROM event_log
               WHERE movement_id = ANY($1) AND reason = 'conflicting_duplicate') AS h
         ORDER BY seq"#,
        &ids,
    )
    .fetch_all(conn)
    .await?;
    let mut history: History = HashMap::new();
    for row in rows {
        let quantity =
            Quantity::parse(i64::from(row.quantity)).map_err(|e| sqlx::Error::Decode(e.into()))?;
        let content = EventContent {
            movement_id: row.movement_id,
            kind: row.event,
            warehouse_id: row.warehouse_id,
            product_id: row.product_id,
            quantity,
            occurred_at: row.occurred_at,
        };
        // The audit log's CHECK makes `reason` set exactly on rejections.
        let verdict = match (row.outcome, row.reason) {
            (StoredOutcome::Applied, _) => Verdict::Applied,
            (StoredOutcome::Rejected, Some(reason)) => Verdict::Rejected(reason),
            (StoredOutcome::Rejected, None) => {
                return Err(sqlx::Error::Decode("a rejection without a reason".into()));
            }
        };
        history
            .entry((content.movement_id, content.kind))
            .or_default()
            .push(PriorEvent {
                content,
                verdict,
                processed_at: row.received_at,
            });
    }
    Ok(history)
}

/// The audit log's `outcome`: duplicates are never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
enum StoredOutcome {
    Applied,
    Rejected,
}

/// One audit entry of a movement, as the history needs it.
struct HistoryRow {
    movement_id: Uuid,
    event: EventKind,
    warehouse_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    occurred_at: DateTime<Utc>,
    outcome: StoredOutcome,
    reason: Option<RejectReason>,
    received_at: DateTime<Utc>,
}
