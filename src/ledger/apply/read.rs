//! What a batch decides on: the stock of its pairs and the audit history
//! of its movements, read without locks (optimistic) or after taking every
//! lock in the global order (locking; see the module above).

use crate::domain::{
    CorrectionDetails, EventContent, EventKind, MovementClosing, MovementState, PriorEvent,
    Quantity, Recorded, RejectReason, Side, Verdict,
};
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use sqlx::types::Json;
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// The stock of the pairs a batch read (a pair never seen is absent).
pub(super) type Stock = HashMap<(Uuid, Uuid), i64>;
/// The movements of a batch as the audit log gives them.
pub(super) type Movements = HashMap<Uuid, MovementState>;
/// The audit entries of a batch's movements, by idempotency key.
pub(super) type History = HashMap<(Uuid, EventKind), Vec<PriorEvent>>;

/// Creates the stock rows of `pairs` that do not exist yet and locks all
/// of them, in (warehouse, product) order, in one pass: a row that does not
/// exist cannot be locked, and two batches that both saw "no row" would
/// both decide on the same empty state. Returns every quantity (0 for the
/// rows it created). The no-op update is what takes the lock of a row that
/// exists; visiting rows in array order is what keeps the lock order.
pub(super) async fn lock_stock(
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

/// The advisory lock class of movements: the first key of
/// `pg_advisory_xact_lock(int4, int4)`, so that these locks share no key
/// with advisory locks taken for other purposes.
const MOVEMENT_LOCKS: i32 = 0x5753_4d56;

/// Takes a transaction-scoped advisory lock per movement of `ids`, in key
/// order. A movement has no row of its own to lock; its key is its id
/// folded to 32 bits, and two movements that fold to one key merely share
/// a lock.
pub(super) async fn lock_movements(
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
pub(super) fn opened_movements(history: &History) -> HashSet<Uuid> {
    history
        .values()
        .flatten()
        .filter(|prior| prior.verdict != Verdict::Rejected(RejectReason::ConflictingDuplicate))
        .map(|prior| prior.content.movement_id)
        .collect()
}

/// The movements as the audit log gives them: each applied entry is one
/// half, or what closed the movement.
pub(super) fn movements_from(history: &History) -> Movements {
    let mut movements = Movements::new();
    for prior in history.values().flatten() {
        if prior.verdict == Verdict::Applied {
            let c = &prior.content;
            let movement = movements.entry(c.movement_id).or_default();
            match prior.correction.as_deref() {
                Some(details) if c.kind.closes_movement() => {
                    if let Some(closing) =
                        MovementClosing::from_details(details, prior.processed_at)
                    {
                        movement.close(c.kind, closing);
                    }
                }
                _ => movement.record(c.kind, c.product_id, Side::of(c)),
            }
        }
    }
    movements
}

/// The audit entries of the movements `ids`, oldest first. The two halves
/// of the union match the two partial unique indexes of the log: the entry
/// that decided each (movement_id, event), and the rare later entries that
/// were refused as conflicting duplicates.
pub(super) async fn read_history(
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
                received_at AS "received_at!",
                correction AS "correction: Json<CorrectionDetails>",
                seq AS "seq!", delta, stock_after
         FROM (SELECT seq, movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                      outcome, reason, received_at, correction, delta, stock_after
               FROM event_log
               WHERE movement_id = ANY($1) AND reason IS DISTINCT FROM 'conflicting_duplicate'
               UNION ALL
               SELECT seq, movement_id, event, warehouse_id, product_id, quantity, occurred_at,
                      outcome, reason, received_at, correction, delta, stock_after
               FROM event_log
               WHERE movement_id = ANY($1) AND reason = 'conflicting_duplicate') AS h
         ORDER BY seq"#,
        &ids,
    )
    .fetch_all(conn)
    .await?;
    let mut history: History = HashMap::new();
    for row in rows {
        let prior = row.into_prior()?;
        let c = &prior.content;
        history
            .entry((c.movement_id, c.kind.idempotency_kind()))
            .or_default()
            .push(prior);
    }
    Ok(history)
}

impl HistoryRow {
    /// The entry as the rules know a prior event.
    fn into_prior(self) -> Result<PriorEvent, sqlx::Error> {
        // A half's quantity is checked again on the way in; a correction's
        // may be 0 (a count) or negative (an adjustment).
        let quantity = if self.event.is_correction() {
            Quantity::stored(self.quantity)
        } else {
            Quantity::parse(i64::from(self.quantity)).map_err(|e| sqlx::Error::Decode(e.into()))?
        };
        // The audit log's CHECK makes `reason` set exactly on rejections.
        let verdict = match (self.outcome, self.reason) {
            (StoredOutcome::Applied, _) => Verdict::Applied,
            (StoredOutcome::Rejected, Some(reason)) => Verdict::Rejected(reason),
            (StoredOutcome::Rejected, None) => {
                return Err(sqlx::Error::Decode("a rejection without a reason".into()));
            }
        };
        // An applied entry always has its stock after (the same CHECK).
        let recorded = match (verdict, self.stock_after) {
            (Verdict::Applied, Some(stock_after)) => Some(Recorded {
                seq: self.seq,
                delta: self.event.entry_delta(self.quantity, self.delta, self.seq),
                stock_after,
            }),
            _ => None,
        };
        Ok(PriorEvent {
            content: EventContent {
                movement_id: self.movement_id,
                kind: self.event,
                warehouse_id: self.warehouse_id,
                product_id: self.product_id,
                quantity,
                occurred_at: self.occurred_at,
            },
            correction: self.correction.map(|Json(details)| Box::new(details)),
            verdict,
            processed_at: self.received_at,
            recorded,
        })
    }
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
    correction: Option<Json<CorrectionDetails>>,
    seq: i64,
    delta: Option<i64>,
    stock_after: Option<i64>,
}

/// The stock of each `(seq, w, p)` asked for right after the pair's last
/// applied change at or before `seq` (absent where it had none by then):
/// what counts made against a basis correct from. Read only for batches
/// that hold such counts, along the product-history index.
pub(super) async fn read_basis(
    conn: impl PgExecutor<'_>,
    asked: &BTreeSet<(i64, Uuid, Uuid)>,
) -> Result<HashMap<(i64, Uuid, Uuid), i64>, sqlx::Error> {
    if asked.is_empty() {
        return Ok(HashMap::new());
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for &(seq, w, p) in asked {
        columns.0.push(seq);
        columns.1.push(w);
        columns.2.push(p);
    }
    let rows = sqlx::query!(
        r#"SELECT u.seq AS "seq!", u.w AS "w!", u.p AS "p!",
                  (SELECT l.stock_after FROM event_log l
                   WHERE l.product_id = u.p AND l.warehouse_id = u.w
                     AND l.outcome = 'applied' AND l.seq <= u.seq
                   ORDER BY l.seq DESC LIMIT 1) AS stock
           FROM unnest($1::int8[], $2::uuid[], $3::uuid[]) AS u(seq, w, p)"#,
        &columns.0,
        &columns.1,
        &columns.2,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some(((r.seq, r.w, r.p), r.stock?)))
        .collect())
}
