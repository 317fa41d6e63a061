//! The write plan: a batch's effects as column arrays, and the one
//! statement, generated from the column declarations, that writes them all
//! and checks that what the batch read still holds (see the module above).

use super::read::Stock;
use crate::domain::EventKind;
use crate::domain::{Attributes, LedgerState, MovementEvent, Outcome, RejectReason};
use crate::ledger::change::{AppliedRow, LoggedChange};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgExecutor, Row};
use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;
use uuid::Uuid;

/// The batch's effects as column arrays for the write statement, with what
/// each row is expected to look like before the write.
pub(super) struct WritePlan<'a> {
    /// Stock rows in (warehouse, product) order.
    stock: StockColumns,
    pub(super) log: LogColumns<'a>,
    /// The log's correction columns, in the same order; only a batch that
    /// holds a correction (or an entry with a claim) writes them, so a
    /// batch of movements binds and writes nothing more than it did before
    /// corrections existed.
    corrections: Option<CorrectionColumns>,
    /// The movements whose status the batch changed: those left on the
    /// road, and those that left it.
    open: OpenColumns,
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
pub(super) struct LogColumns<'a> {
    /// Each entry's place in the batch among the entries written (from 1):
    /// entries are written in lock order, and numbered in batch order. Its
    /// column takes the sequence number of that place (see `seqs`).
    pub(super) positions: Vec<i32>,
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
    /// Borrowed from the events: each is written as it is, not copied.
    attributes: Vec<Json<&'a Attributes>>,
    opens: Vec<bool>,
    /// Whether an applied entry is its pair's first change, where the
    /// batch knows it (see `LogEntry::opens_pair`).
    opens_pairs: Vec<bool>,
    /// The pair's stock right after an applied entry; `None` for a
    /// rejected one.
    stock_afters: Vec<Option<i64>>,
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

/// A correction's own columns of its audit entry.
#[derive(Default)]
struct CorrectionColumns {
    /// What an applied correction did to its pair's stock; `None` for a
    /// refused one, and for a movement's half (its kind and quantity say it).
    deltas: Vec<Option<i64>>,
    /// The correction's details; `None` for a movement's half.
    details: Vec<Option<serde_json::Value>>,
    /// The key an entry takes in the deciding index instead of its event
    /// (see [`LogEntry::claim`]); `None` for nearly all.
    claims: Vec<Option<&'static str>>,
}

columns! {
    CORRECTION_COLUMNS for CorrectionColumns, bound by bind_corrections:
    deltas: "int8" => "delta",
    details: "jsonb" => "correction",
    claims: "text" => "claims",
}

/// The movements a batch leaves in transit (rows of `open_movements`),
/// and those it closes.
#[derive(Default)]
struct OpenColumns {
    movements: Vec<Uuid>,
    products: Vec<Uuid>,
    warehouses: Vec<Uuid>,
    quantities: Vec<i32>,
    departed: Vec<DateTime<Utc>>,
    /// Movements that departed and are no longer in transit: their rows go.
    closed: Vec<Uuid>,
}

columns! {
    OPEN_COLUMNS for OpenColumns, bound by bind_open:
    movements: "uuid" => "movement_id",
    products: "uuid" => "product_id",
    warehouses: "uuid" => "warehouse_id",
    quantities: "int4" => "quantity",
    departed: "timestamptz" => "departed_at",
    closed: "uuid" => "closed",
}

impl OpenColumns {
    /// Every movement an applied half, reversal or write-off of the batch
    /// touched, by the status the batch left it in: a departure leaves its
    /// movement in transit (unless the batch also closed it), and anything
    /// else applied to a movement takes it off the road.
    fn new(entries: &[LogEntry<'_>], decided: &LedgerState) -> Self {
        let mut columns = OpenColumns::default();
        let touched: BTreeSet<Uuid> = entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Applied { .. }))
            .filter(|e| {
                !e.event.content.kind.is_correction() || e.event.content.kind.closes_movement()
            })
            .map(|e| e.event.content.movement_id)
            .collect();
        for id in touched {
            // A movement the rules hold no state for never departed.
            let Some(movement) = decided.movements.get(&id) else {
                continue;
            };
            match movement.on_the_road() {
                Some((product, departure)) => {
                    columns.movements.push(id);
                    columns.products.push(product);
                    columns.warehouses.push(departure.warehouse_id);
                    columns.quantities.push(departure.quantity);
                    columns.departed.push(departure.at);
                }
                // Only a movement that departed can have a row to delete.
                // Arrivals of new stock are most events, and asking for
                // each of them cost 6% of PostgreSQL's work in the Kafka
                // bench: a lookup each, or, where the cached plan is a
                // sequential scan, a comparison with every row scanned.
                None if movement.departure.is_some() => columns.closed.push(id),
                None => {}
            }
        }
        columns
    }
}

/// The write statement, generated once from [`STOCK_COLUMNS`] and
/// [`LOG_COLUMNS`] (and, for batches that hold a correction, once more with
/// [`CORRECTION_COLUMNS`]). Each part returns the rows it wrote; a part that wrote
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
static WRITE_STATEMENT: LazyLock<String> = LazyLock::new(|| write_statement(&[]));
static WRITE_STATEMENT_CORRECTING: LazyLock<String> =
    LazyLock::new(|| write_statement(CORRECTION_COLUMNS));

/// `columns`' names, each after `prefix`, as a list.
fn column_names(columns: &[&Column], prefix: &str) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("{prefix}{}", c.name))
        .collect();
    list.join(", ")
}

/// The statement's array parameters, numbered in the order they are
/// asked for, which is the order they are bound in.
#[derive(Default)]
struct Params {
    next: usize,
}

impl Params {
    /// The next parameter of each of `columns`, as a list.
    fn take(&mut self, columns: &[&Column]) -> String {
        let list: Vec<String> = columns
            .iter()
            .map(|c| {
                self.next += 1;
                format!("${}::{}[]", self.next, c.ty)
            })
            .collect();
        list.join(", ")
    }
}

fn write_statement(extra: &[Column]) -> String {
    let stock: Vec<&Column> = STOCK_COLUMNS.iter().collect();
    let log: Vec<&Column> = LOG_COLUMNS.iter().chain(extra).collect();
    let open: Vec<&Column> = OPEN_COLUMNS.iter().collect();
    let (opened, closed) = open.split_at(open.len() - 1);
    let mut params = Params::default();
    let stock_params = params.take(&stock);
    let log_params = params.take(&log);
    let opened_params = params.take(opened);
    let closed_param = params.take(closed);
    let opened_columns = column_names(opened, "");
    let stock_columns = column_names(&stock, "");
    let log_columns = column_names(&log, "");
    // The first parameter of each part gives its row count.
    let stock_rows = format!("cardinality($1::{}[])", STOCK_COLUMNS[0].ty);
    let log_rows = format!(
        "cardinality(${}::{}[])",
        STOCK_COLUMNS.len() + 1,
        LOG_COLUMNS[0].ty
    );
    let log_values = column_names(&log, "u.").replacen("u.seq", "(SELECT seq FROM seqs)[u.seq]", 1);
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
    stamp AS MATERIALIZED (
        SELECT clock_timestamp() AS at
        WHERE coalesce(cardinality((SELECT seq FROM seqs)), 0) >= 0),
    logged AS (
        INSERT INTO event_log ({log_columns}, received_at)
        SELECT {log_values}, (SELECT at FROM stamp)
        FROM unnest({log_params}) AS u({log_columns})
        RETURNING 1),
    opened AS (
        INSERT INTO open_movements ({opened_columns})
        SELECT * FROM unnest({opened_params})
        ON CONFLICT (movement_id) DO NOTHING
        RETURNING 1),
    closed AS (
        DELETE FROM open_movements WHERE movement_id = ANY({closed_param})
        RETURNING 1)
    SELECT CASE WHEN (SELECT count(*) FROM stock_written WHERE expected_quantity IS NULL)
                     = {stock_rows}
                 AND (SELECT count(*) FROM logged) = {log_rows}
                 AND (SELECT count(*) FROM opened) + (SELECT count(*) FROM closed) >= 0
                THEN 0 ELSE ledger_conflict() END AS checked,
           (SELECT seq FROM seqs) AS taken,
           (SELECT at FROM stamp) AS stamped"
    )
}

/// Whether a decision depended on its pair's stock row: every row the
/// batch changes, every row whose quantity refused an event, and every
/// `recalled` (remembered) row a duplicate reports. The latter two are
/// written back unchanged, which checks that the refusal, or the reported
/// quantity, still holds when the batch commits. (A duplicate of a row
/// read in this attempt reports what was committed when it was read,
/// which is true without the check.)
fn depends_on_row(outcome: &Outcome, recalled: bool) -> bool {
    match outcome {
        Outcome::Applied { .. } => true,
        Outcome::Rejected {
            reason: RejectReason::InsufficientStock | RejectReason::StockOverflow,
            replayed: false,
            ..
        } => true,
        Outcome::Duplicate { .. } => recalled,
        _ => false,
    }
}

impl StockColumns {
    /// The `checked` rows in (warehouse, product) order, each with the
    /// quantity the batch decided on and the one it `read`.
    fn new(checked: BTreeSet<(Uuid, Uuid)>, stock: &Stock, read: &Stock) -> Self {
        let mut columns = StockColumns::default();
        for pair in checked {
            columns.warehouses.push(pair.0);
            columns.products.push(pair.1);
            columns
                .quantities
                .push(stock.get(&pair).copied().unwrap_or(0));
            columns.expected.push(read.get(&pair).copied());
        }
        columns
    }
}

impl<'a> WritePlan<'a> {
    /// `decided` is the state the rules left: the stock the batch decided
    /// on, and the claims they gave its entries. `opened` holds the
    /// movements the batch read a deciding audit entry of; the first
    /// deciding entry the batch writes for any other movement opens it.
    pub(super) fn new(
        read: &Stock,
        recalled: &HashSet<(Uuid, Uuid)>,
        decided: &LedgerState,
        mut opened: HashSet<Uuid>,
        events: &'a [MovementEvent],
        outcomes: &[Outcome],
    ) -> Self {
        debug_assert_eq!(events.len(), outcomes.len(), "one outcome per event");
        // A correction's delta is its stock after minus the pair's stock
        // right before it, which earlier entries of the batch may have
        // moved: followed here only for a batch that holds a correction.
        let mut running: Option<Stock> = events
            .iter()
            .any(|e| e.content.kind.is_correction())
            .then(|| read.clone());

        let mut checked: BTreeSet<(Uuid, Uuid)> = BTreeSet::new();
        // The pairs the batch found no stock row of and has written an
        // applied entry for.
        let mut opened_pairs: HashSet<(Uuid, Uuid)> = HashSet::new();
        let mut entries = Vec::new();
        for (place, (event, outcome)) in events.iter().zip(outcomes).enumerate() {
            let c = &event.content;
            let pair = (c.warehouse_id, c.product_id);
            if depends_on_row(outcome, recalled.contains(&pair)) {
                checked.insert(pair);
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
                let opens_pair = matches!(outcome, Outcome::Applied { .. })
                    && !read.contains_key(&pair)
                    && opened_pairs.insert(pair);
                let delta = match (outcome, running.as_mut()) {
                    (Outcome::Applied { stock_after }, Some(running)) => {
                        let before = running.insert(pair, *stock_after).unwrap_or(0);
                        c.kind.is_correction().then_some(stock_after - before)
                    }
                    _ => None,
                };
                entries.push(LogEntry {
                    position: entries.len() as i32 + 1,
                    event,
                    outcome: *outcome,
                    decides,
                    opens,
                    opens_pair,
                    delta,
                    claim: decided.claims.get(&place).copied(),
                });
            }
        }
        entries.sort_by_key(LogEntry::lock_key);
        let extra = running.is_some() || entries.iter().any(|e| e.claim.is_some());
        WritePlan {
            stock: StockColumns::new(checked, &decided.stock, read),
            log: LogColumns::from_entries(&entries),
            corrections: extra.then(|| CorrectionColumns::from_entries(&entries)),
            open: OpenColumns::new(&entries, decided),
        }
    }

    /// The applied entries as the changes they are (see
    /// [`LogColumns::changes`]).
    pub(super) fn changes(&self, written: &Executed) -> Vec<LoggedChange> {
        self.log.changes(written, self.corrections.as_ref())
    }

    /// Writes everything in one statement (see [`WRITE_STATEMENT`]), and
    /// returns the numbers its entries took and the time it stamped them
    /// with.
    pub(super) async fn execute(&self, conn: impl PgExecutor<'_>) -> Result<Executed, sqlx::Error> {
        let statement = match self.corrections {
            Some(_) => WRITE_STATEMENT_CORRECTING.as_str(),
            None => WRITE_STATEMENT.as_str(),
        };
        let query = bind_log(bind_stock(sqlx::query(statement), &self.stock), &self.log);
        let query = match &self.corrections {
            Some(corrections) => bind_corrections(query, corrections),
            None => query,
        };
        let query = bind_open(query, &self.open);
        let row = query.fetch_one(conn).await?;
        // No entries, no numbers: `array_agg` of nothing is null.
        let taken: Option<Vec<i64>> = row.try_get("taken")?;
        Ok(Executed {
            taken: taken.unwrap_or_default(),
            at: row.try_get("stamped")?,
        })
    }
}

/// What the write statement gave back.
pub(super) struct Executed {
    /// The numbers its entries took, ascending: the entry at place `i`
    /// took the `i`-th.
    pub taken: Vec<i64>,
    /// The batch's `applied_at` (the log's `received_at`): the database's
    /// clock once the batch held its transaction id and its rows, which is
    /// what lets the horizon tell when no later commit can be stamped at
    /// or before a moment (see `horizon`).
    pub at: DateTime<Utc>,
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
    /// An applied correction's delta.
    delta: Option<i64>,
    /// Its key in the deciding index in place of its event, if the rules
    /// gave it one ([`crate::domain::rules::claim`]).
    claim: Option<&'static str>,
}

impl LogEntry<'_> {
    /// The order every batch inserts its entries in: by the key of the
    /// unique index each one enters, movement first. Two batches that race
    /// for two keys thus wait for each other at the first of them, never
    /// each at a different one.
    #[allow(clippy::type_complexity)]
    fn lock_key(&self) -> (Uuid, bool, &'static str, Uuid, Uuid, i32, DateTime<Utc>) {
        let c = &self.event.content;
        let event = match (self.opens, self.claim) {
            (true, _) => "open",
            (false, Some(claim)) => claim,
            (false, None) => c.kind.as_str(),
        };
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

impl CorrectionColumns {
    fn from_entries(entries: &[LogEntry<'_>]) -> Self {
        let mut columns = CorrectionColumns::default();
        for entry in entries {
            columns.deltas.push(entry.delta);
            columns.claims.push(entry.claim);
            columns.details.push(
                entry
                    .event
                    .correction
                    .as_ref()
                    .and_then(|d| serde_json::to_value(d).ok()),
            );
        }
        columns
    }
}

impl<'a> LogColumns<'a> {
    fn from_entries(entries: &[LogEntry<'a>]) -> Self {
        let mut columns = LogColumns::default();
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
        self.attributes.push(Json(&e.attributes));
        self.opens.push(entry.opens);
        self.opens_pairs.push(entry.opens_pair);
    }

    /// The applied entries (those with a stock after) as the changes they
    /// are, in `seq` order, given the number each place took: the rows as
    /// the log now holds them.
    fn changes(
        &self,
        written: &Executed,
        corrections: Option<&CorrectionColumns>,
    ) -> Vec<LoggedChange> {
        let taken = &written.taken;
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
                    delta: corrections.and_then(|c| c.deltas[i]),
                    stock_after,
                    movement_id: self.movement_ids[i],
                    message_id: self.message_ids[i].to_owned(),
                    received_at: written.at,
                    opens_pair: self.opens_pairs[i],
                };
                Some(row.into_logged())
            })
            .collect();
        changes.sort_unstable_by_key(|c| c.change.seq);
        changes
    }
}
