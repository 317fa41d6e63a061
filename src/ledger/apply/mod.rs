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
//!   `event_log_decides` (below).
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
//!
//! ## Memory
//!
//! A full batch's write binds a few hundred kilobytes of arrays, and a
//! connection keeps the buffer a message once grew. The pool hands its
//! idle connections out in turn, so every one of them would come to hold
//! a batch's worth (5.8 MB of the heap at the 1M-record ingest's peak,
//! with the default 16 connections). The write gives its buffer back
//! after each attempt instead, taken or not, at the cost of growing it
//! again next time (BENCHMARKS.md, "Memory").

mod plan;
mod read;
mod receipt;

use super::change::Change;
use super::remembered::RememberedStock;
use super::tail::Logged;
use crate::domain::{EventKind, LedgerState, MovementEvent, Outcome, apply_batch};
use chrono::{DateTime, Utc};
use plan::WritePlan;
use read::{
    History, Stock, lock_movements, lock_stock, movements_from, opened_movements, read_basis,
    read_history,
};
use sqlx::{Connection, PgConnection, PgPool};
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
    /// What it wrote to the audit log, for the log's tail; empty unless
    /// the caller asked for it.
    pub(super) logged: Logged,
    /// For a batch that holds a correction or a closing, each event's
    /// committed change: its own, or for a duplicate the one that decided
    /// it (`None` for the others). Empty for a batch of movements.
    pub changes: Vec<Option<Change>>,
    /// The stock of every pair of the batch as the batch left it.
    pub quantities: HashMap<(Uuid, Uuid), i64>,
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
    let keys = Keys {
        pairs: &pairs,
        movements: &movement_ids,
    };
    let written = match mode {
        Mode::Optimistic { recall } => {
            // Only a first attempt trusts what the process remembers: a
            // batch run again met a change it did not know of.
            let recalled = if recall {
                remembered.recall(&pairs)
            } else {
                Stock::new()
            };
            attempt_optimistic(pool, events, keys, recalled, changes).await?
        }
        Mode::Locking => attempt_locking(pool, events, keys, changes).await?,
    };
    remembered.remember(&written.stock);

    // Every row read is reported, not only the changed ones: the cache
    // drops all of them, so a redelivered batch (all duplicates) still
    // repairs an entry that a crash between commit and invalidation left.
    Ok(Applied {
        outcomes: written.outcomes,
        processed_at: written.at,
        stock: pairs.into_iter().collect(),
        movements: movement_ids.into_iter().collect(),
        logged: written.logged,
        changes: written.changes,
        quantities: written.stock,
    })
}

/// The rows a batch names: its pairs and its movements, in lock order.
#[derive(Clone, Copy)]
struct Keys<'a> {
    pairs: &'a BTreeSet<(Uuid, Uuid)>,
    movements: &'a BTreeSet<Uuid>,
}

/// What an attempt wrote: the outcomes, the stock of the batch's pairs as
/// the batch left it, what it logged, and its `applied_at`.
struct Written {
    outcomes: Vec<Outcome>,
    stock: Stock,
    logged: Logged,
    at: DateTime<Utc>,
    changes: Vec<Option<Change>>,
}

/// Reads without locks, taking the `recalled` quantities instead of
/// reading them, and writes in one statement that checks what was read.
async fn attempt_optimistic(
    pool: &PgPool,
    events: &[MovementEvent],
    keys: Keys<'_>,
    recalled: Stock,
    changes: bool,
) -> Result<Written, sqlx::Error> {
    let unknown: BTreeSet<(Uuid, Uuid)> = keys
        .pairs
        .iter()
        .filter(|pair| !recalled.contains_key(pair))
        .copied()
        .collect();
    let counted = counted_from(events);
    let (mut stock, history, basis) = tokio::try_join!(
        super::reads::stock::stock_many(pool, unknown),
        read_history(pool, keys.movements),
        read_basis(pool, &counted),
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
        basis,
    };
    // The decision needs no connection: one is taken only for the write.
    let decided = decide(events, read);
    let mut conn = pool.acquire().await?;
    write(&mut conn, decided, changes).await
}

/// Creates and locks every row first, inside a transaction, then reads
/// and writes as the optimistic attempt does.
async fn attempt_locking(
    pool: &PgPool,
    events: &[MovementEvent],
    keys: Keys<'_>,
    changes: bool,
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let stock = lock_stock(&mut tx, keys.pairs).await?;
    lock_movements(&mut tx, keys.movements).await?;
    let history = read_history(&mut *tx, keys.movements).await?;
    let basis = read_basis(&mut *tx, &counted_from(events)).await?;
    let read = Read {
        stock,
        recalled: HashSet::new(),
        history,
        basis,
    };
    let written = write(&mut tx, decide(events, read), changes).await?;
    tx.commit().await?;
    Ok(written)
}

/// What a batch decides on: the stock of its pairs that exist (read, or
/// `recalled` from what the process remembers) and the audit history of
/// its movements.
struct Read {
    stock: Stock,
    recalled: HashSet<(Uuid, Uuid)>,
    history: History,
    /// What counts made against a basis correct from.
    basis: HashMap<(i64, Uuid, Uuid), i64>,
}

/// The `(basis_seq, warehouse, product)` of every count in `events` made
/// against a basis: none in a batch of movements.
fn counted_from(events: &[MovementEvent]) -> BTreeSet<(i64, Uuid, Uuid)> {
    events
        .iter()
        .filter_map(|e| {
            let seq = e.correction.as_ref()?.basis_seq?;
            (e.content.kind == EventKind::Count).then_some((
                seq,
                e.content.warehouse_id,
                e.content.product_id,
            ))
        })
        .collect()
}

/// What the rules are given as the batch's time. The batch's `applied_at`
/// (the audit log's `received_at`) is stamped by the write statement
/// itself, from the database's clock once the batch holds its transaction
/// id and its stock rows ([`plan::Executed::at`]), and put in the outcomes
/// where this stands. So:
///
/// - along the entries of one pair the clock never goes backwards: a batch
///   writing a pair stamps after the batch before it committed, whichever
///   instance ran either, and "the stock as of t" has one answer;
/// - no batch commits later with a time at or before a moment the horizon
///   has declared final (see `horizon`), so an `as_of` answer, once given,
///   never changes.
///
/// The rules only carry the time into the outcomes; none compares it.
const PENDING: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;

/// The outcomes with the batch's stamped time where the rules left
/// [`PENDING`]: a duplicate of an event earlier in the same batch.
fn stamped(mut outcomes: Vec<Outcome>, at: DateTime<Utc>) -> Vec<Outcome> {
    for outcome in &mut outcomes {
        if let Outcome::Duplicate { processed_at, .. } = outcome
            && *processed_at == PENDING
        {
            *processed_at = at;
        }
    }
    outcomes
}

/// What the rules decided for a batch over what it read: the outcomes,
/// the stock the batch leaves, and the one statement that writes it.
struct Decided<'a> {
    events: &'a [MovementEvent],
    outcomes: Vec<Outcome>,
    stock: Stock,
    plan: WritePlan<'a>,
    /// Where each event's change comes from; empty for a batch of
    /// movements ([`receipt`]).
    sources: Vec<receipt::Source>,
}

/// Runs the rules over what was read and plans the write of their
/// effects, with the checks that what they relied on still holds.
fn decide<'a>(events: &'a [MovementEvent], read: Read) -> Decided<'a> {
    let opened = opened_movements(&read.history);
    let mut state = LedgerState {
        stock: read.stock.clone(),
        movements: movements_from(&read.history),
        history: read.history,
        basis: read.basis,
        claims: HashMap::new(),
    };
    let outcomes = apply_batch(&mut state, events, PENDING);
    let sources = if receipt::wanted(events) {
        receipt::sources(events, &outcomes, &state)
    } else {
        Vec::new()
    };
    let plan = WritePlan::new(
        &read.stock,
        &read.recalled,
        &state,
        opened,
        events,
        &outcomes,
    );
    Decided {
        events,
        outcomes,
        stock: state.stock,
        plan,
        sources,
    }
}

/// Writes what was `decided` on `conn`, then gives the connection's write
/// buffer back whether the write took or not (see "Memory"). What it
/// logged carries its changes if `changes`.
async fn write(
    conn: &mut PgConnection,
    decided: Decided<'_>,
    changes: bool,
) -> Result<Written, sqlx::Error> {
    let Decided {
        events,
        outcomes,
        stock,
        plan,
        sources,
    } = decided;
    let executed = plan.execute(&mut *conn).await;
    conn.shrink_buffers();
    let written = executed?;
    let outcomes = stamped(outcomes, written.at);
    // Numbers without their changes would read as entries that are not
    // changes, so the tail gets both or nothing (and then the relay reads
    // the batch from the log). There is a number per entry, always.
    let tailed = changes && written.taken.len() == plan.log.positions.len();
    // The changes are built once, for the tail and the receipts alike.
    let built = (tailed || !sources.is_empty()).then(|| plan.changes(&written));
    let answers = match &built {
        Some(built) if !sources.is_empty() => {
            receipt::changes(events, &outcomes, &sources, built, &written.taken)
        }
        _ => Vec::new(),
    };
    let logged = match built {
        Some(changes) if tailed => Logged {
            changes,
            taken: written.taken,
        },
        _ => Logged::default(),
    };
    Ok(Written {
        outcomes,
        stock,
        logged,
        at: written.at,
        changes: answers,
    })
}
