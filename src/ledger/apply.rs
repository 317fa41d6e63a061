//! Applying a batch of events in one PostgreSQL transaction.
//!
//! A batch costs a fixed handful of set-based statements, whatever its size:
//!
//! 1. create missing stock rows, then lock every stock row the batch names,
//!    in (warehouse, product) order;
//! 2. the same for movement rows, in movement_id order;
//! 3. read the audit log entries of those movements;
//! 4. run the pure rules ([`crate::domain::apply_batch`]) in memory;
//! 5. write changed stock, changed movements and new audit entries back.
//!
//! Every transaction takes its row locks in one global order (stock before
//! movements, each sorted), so concurrent batches from other tasks or other
//! instances wait for each other per (warehouse, product) and per movement
//! but cannot deadlock. Creating missing rows first matters: a row that does
//! not exist cannot be locked, and two batches that both saw "no row" would
//! both decide on the same empty state.

use crate::domain::{
    EventContent, EventKind, LedgerState, MovementEvent, MovementState, Outcome, PriorEvent,
    Quantity, RejectReason, Side, Verdict, apply_batch,
};
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// What a committed batch did, for the caller and for the cache.
#[derive(Debug)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    pub processed_at: DateTime<Utc>,
    /// Every (warehouse, product) the batch locked, changed or not.
    pub stock: Vec<(Uuid, Uuid)>,
    /// Every movement the batch locked.
    pub movements: Vec<Uuid>,
}

/// Runs steps 1–5 on `conn`, which must be inside a transaction.
pub async fn apply_in_transaction(
    conn: &mut PgConnection,
    events: &[MovementEvent],
) -> Result<Applied, sqlx::Error> {
    let pairs: BTreeSet<(Uuid, Uuid)> = events
        .iter()
        .map(|e| (e.content.warehouse_id, e.content.product_id))
        .collect();
    let movement_ids: BTreeSet<Uuid> = events.iter().map(|e| e.content.movement_id).collect();

    let stock = lock_stock(conn, &pairs).await?;
    let movements = lock_movements(conn, &movement_ids).await?;
    let history = load_history(conn, &movement_ids).await?;

    let mut state = LedgerState {
        stock,
        movements,
        history,
    };
    // One timestamp for the whole batch: it commits as one.
    let now = Utc::now().trunc_subsecs(6);
    let effects = apply_batch(&mut state, events, now);

    write_stock(conn, &state.stock, &effects.changed_stock).await?;
    write_movements(conn, &state.movements, &effects.changed_movements).await?;
    write_event_log(conn, events, &effects.outcomes, now).await?;

    // Every locked row is reported, not only the changed ones: the cache
    // drops all of them, so a redelivered batch (all duplicates) still
    // repairs an entry that a crash between commit and invalidation left.
    Ok(Applied {
        outcomes: effects.outcomes,
        processed_at: now,
        stock: pairs.into_iter().collect(),
        movements: movement_ids.into_iter().collect(),
    })
}

async fn lock_stock(
    conn: &mut PgConnection,
    pairs: &BTreeSet<(Uuid, Uuid)>,
) -> Result<HashMap<(Uuid, Uuid), i64>, sqlx::Error> {
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    // The arrays are sorted, and unnest yields them in order, so rows are
    // created in the global lock order too.
    sqlx::query(
        "INSERT INTO stock (warehouse_id, product_id)
         SELECT * FROM unnest($1::uuid[], $2::uuid[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&warehouses)
    .bind(&products)
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT s.warehouse_id, s.product_id, s.quantity
         FROM stock s
         JOIN unnest($1::uuid[], $2::uuid[]) AS k(w, p)
           ON s.warehouse_id = k.w AND s.product_id = k.p
         ORDER BY s.warehouse_id, s.product_id
         FOR UPDATE OF s",
    )
    .bind(&warehouses)
    .bind(&products)
    .fetch_all(&mut *conn)
    .await?;
    let mut quantities = HashMap::with_capacity(rows.len());
    for row in rows {
        let pair: (Uuid, Uuid) = (row.try_get(0)?, row.try_get(1)?);
        quantities.insert(pair, row.try_get::<i64, _>(2)?);
    }
    Ok(quantities)
}

async fn lock_movements(
    conn: &mut PgConnection,
    ids: &BTreeSet<Uuid>,
) -> Result<HashMap<Uuid, MovementState>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    sqlx::query(
        "INSERT INTO movements (movement_id)
         SELECT * FROM unnest($1::uuid[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query(
        "SELECT movement_id, product_id,
                source_warehouse_id, departure_time, departure_quantity,
                destination_warehouse_id, arrival_time, arrival_quantity
         FROM movements
         WHERE movement_id = ANY($1)
         ORDER BY movement_id
         FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut movements = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get(0)?;
        movements.insert(id, movement_from_row(&row, 1)?);
    }
    Ok(movements)
}

/// Reads a movement from the eight columns starting at `first`: product,
/// then warehouse, time and quantity of the departure and of the arrival.
pub(crate) fn movement_from_row(
    row: &sqlx::postgres::PgRow,
    first: usize,
) -> Result<MovementState, sqlx::Error> {
    let side = |at: usize| -> Result<Option<Side>, sqlx::Error> {
        let warehouse: Option<Uuid> = row.try_get(at)?;
        let time: Option<DateTime<Utc>> = row.try_get(at + 1)?;
        let quantity: Option<i32> = row.try_get(at + 2)?;
        Ok(match (warehouse, time, quantity) {
            (Some(warehouse_id), Some(at), Some(quantity)) => Some(Side {
                warehouse_id,
                at,
                quantity,
            }),
            _ => None,
        })
    };
    Ok(MovementState {
        product_id: row.try_get(first)?,
        departure: side(first + 1)?,
        arrival: side(first + 4)?,
    })
}

async fn load_history(
    conn: &mut PgConnection,
    ids: &BTreeSet<Uuid>,
) -> Result<HashMap<(Uuid, EventKind), Vec<PriorEvent>>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let rows = sqlx::query(
        "SELECT movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                outcome, reason, received_at
         FROM event_log
         WHERE movement_id = ANY($1)
         ORDER BY seq",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut history: HashMap<(Uuid, EventKind), Vec<PriorEvent>> = HashMap::new();
    for row in rows {
        let kind = decode_kind(row.try_get(1)?)?;
        let quantity = Quantity::parse(i64::from(row.try_get::<i32, _>(4)?))
            .map_err(|e| sqlx::Error::Decode(e.into()))?;
        let content = EventContent {
            movement_id: row.try_get(0)?,
            kind,
            warehouse_id: row.try_get(2)?,
            product_id: row.try_get(3)?,
            quantity,
            occurred_at: row.try_get(5)?,
        };
        let verdict = match (
            row.try_get::<&str, _>(6)?,
            row.try_get::<Option<&str>, _>(7)?,
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
                processed_at: row.try_get(8)?,
            });
    }
    Ok(history)
}

fn decode_kind(s: &str) -> Result<EventKind, sqlx::Error> {
    EventKind::parse(s).ok_or_else(|| sqlx::Error::Decode(format!("unknown event {s:?}").into()))
}

async fn write_stock(
    conn: &mut PgConnection,
    stock: &HashMap<(Uuid, Uuid), i64>,
    changed: &HashSet<(Uuid, Uuid)>,
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let n = changed.len();
    let (mut w, mut p, mut q) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for pair in changed {
        w.push(pair.0);
        p.push(pair.1);
        q.push(stock[pair]);
    }
    sqlx::query(
        "UPDATE stock s
         SET quantity = u.quantity, updated_at = now()
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS u(w, p, quantity)
         WHERE s.warehouse_id = u.w AND s.product_id = u.p",
    )
    .bind(&w)
    .bind(&p)
    .bind(&q)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_movements(
    conn: &mut PgConnection,
    movements: &HashMap<Uuid, MovementState>,
    changed: &HashSet<Uuid>,
) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let n = changed.len();
    let (mut ids, mut products) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut dw, mut dt, mut dq) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut aw, mut at, mut aq) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for id in changed {
        let m = &movements[id];
        ids.push(*id);
        products.push(m.product_id);
        dw.push(m.departure.map(|s| s.warehouse_id));
        dt.push(m.departure.map(|s| s.at));
        dq.push(m.departure.map(|s| s.quantity));
        aw.push(m.arrival.map(|s| s.warehouse_id));
        at.push(m.arrival.map(|s| s.at));
        aq.push(m.arrival.map(|s| s.quantity));
    }
    sqlx::query(
        "UPDATE movements m
         SET product_id = u.product_id,
             source_warehouse_id = u.dw, departure_time = u.dt, departure_quantity = u.dq,
             destination_warehouse_id = u.aw, arrival_time = u.at, arrival_quantity = u.aq
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::int4[],
                     $6::uuid[], $7::timestamptz[], $8::int4[])
              AS u(id, product_id, dw, dt, dq, aw, at, aq)
         WHERE m.movement_id = u.id",
    )
    .bind(&ids)
    .bind(&products)
    .bind(&dw)
    .bind(&dt)
    .bind(&dq)
    .bind(&aw)
    .bind(&at)
    .bind(&aq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_event_log(
    conn: &mut PgConnection,
    events: &[MovementEvent],
    outcomes: &[Outcome],
    received_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let recorded: Vec<(&MovementEvent, &Outcome)> = events
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| o.is_recorded())
        .collect();
    if recorded.is_empty() {
        return Ok(());
    }
    let n = recorded.len();
    let mut message_ids = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut event_times = Vec::with_capacity(n);
    let mut movement_ids = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut warehouses = Vec::with_capacity(n);
    let mut products = Vec::with_capacity(n);
    let mut quantities = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut verdicts = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    for (e, outcome) in recorded {
        let c = &e.content;
        message_ids.push(e.message_id.as_str());
        sources.push(e.source.as_str());
        event_times.push(e.event_time);
        movement_ids.push(c.movement_id);
        kinds.push(c.kind.as_str());
        warehouses.push(c.warehouse_id);
        products.push(c.product_id);
        quantities.push(c.quantity.get());
        occurred.push(c.occurred_at);
        match outcome {
            Outcome::Rejected { reason, .. } => {
                verdicts.push("rejected");
                reasons.push(Some(reason.as_str()));
            }
            _ => {
                verdicts.push("applied");
                reasons.push(None);
            }
        }
        attributes.push(serde_json::Value::Object(e.attributes.clone()));
    }
    sqlx::query(
        "INSERT INTO event_log (message_id, source, event_time, movement_id, event,
                                warehouse_id, product_id, quantity, occurred_at,
                                outcome, reason, attributes, received_at)
         SELECT *, $13::timestamptz
         FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[], $5::text[],
                     $6::uuid[], $7::uuid[], $8::int4[], $9::timestamptz[],
                     $10::text[], $11::text[], $12::jsonb[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&message_ids)
    .bind(&sources)
    .bind(&event_times)
    .bind(&movement_ids)
    .bind(&kinds)
    .bind(&warehouses)
    .bind(&products)
    .bind(&quantities)
    .bind(&occurred)
    .bind(&verdicts)
    .bind(&reasons)
    .bind(&attributes)
    .bind(received_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
