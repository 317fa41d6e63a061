//! Plain PostgreSQL reads behind the lookup endpoints. The cache sits in
//! front of the first two; the paginated lists always read PostgreSQL.

use crate::domain::{Differs, EventKind, MovementState, MovementView, Side};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Quantity of a (warehouse, product); 0 when the pair was never seen.
pub async fn stock(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
) -> Result<i64, sqlx::Error> {
    let quantity: Option<i64> = sqlx::query_scalar(
        "SELECT quantity FROM stock WHERE warehouse_id = $1 AND product_id = $2",
    )
    .bind(warehouse_id)
    .bind(product_id)
    .fetch_optional(pool)
    .await?;
    Ok(quantity.unwrap_or(0))
}

/// The movement, or `None` when no half of it was applied: its applied
/// entries in the audit log, one per half.
pub async fn movement(
    pool: &PgPool,
    movement_id: Uuid,
) -> Result<Option<MovementView>, sqlx::Error> {
    // The `reason` condition is the predicate of the audit log's deciding
    // index, which every applied entry is in: it lets PostgreSQL use it.
    let rows: Vec<(EventKind, Uuid, Uuid, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event, warehouse_id, product_id, quantity, occurred_at
         FROM event_log
         WHERE movement_id = $1 AND outcome = 'applied'
           AND reason IS DISTINCT FROM 'conflicting_duplicate'",
    )
    .bind(movement_id)
    .fetch_all(pool)
    .await?;
    let mut state = MovementState::default();
    for (kind, warehouse_id, product_id, quantity, at) in rows {
        let side = Side {
            warehouse_id,
            quantity,
            at,
        };
        state.record(kind, product_id, side);
    }
    Ok(state.view(movement_id))
}

/// One line of a warehouse's stock list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StockItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Products in stock at a warehouse, ordered by product_id, after `after`.
pub async fn warehouse_stock(
    pool: &PgPool,
    warehouse_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<StockItem>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_id, quantity FROM stock
         WHERE warehouse_id = $1 AND quantity > 0 AND ($2::uuid IS NULL OR product_id > $2)
         ORDER BY product_id
         LIMIT $3",
    )
    .bind(warehouse_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One rejected event from the audit log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Position in the audit log; pass it as `after` for the next page.
    pub seq: i64,
    pub message_id: String,
    pub source: String,
    pub movement_id: Uuid,
    pub event: String,
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i32,
    pub timestamp: DateTime<Utc>,
    pub reason: String,
    pub received_at: DateTime<Utc>,
    /// For `conflicting_duplicate`: the `data` fields that differ from the
    /// entry that decided this `movement_id` and `event`. Absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differs: Vec<&'static str>,
}

/// A rejected entry, and for a conflicting duplicate the content of the
/// entry that decided its key.
#[derive(sqlx::FromRow)]
struct RejectionRow {
    seq: i64,
    message_id: String,
    source: String,
    movement_id: Uuid,
    event: String,
    warehouse_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    occurred_at: DateTime<Utc>,
    reason: String,
    received_at: DateTime<Utc>,
    decided_warehouse_id: Option<Uuid>,
    decided_product_id: Option<Uuid>,
    decided_quantity: Option<i32>,
    decided_occurred_at: Option<DateTime<Utc>>,
}

impl From<RejectionRow> for Rejection {
    fn from(r: RejectionRow) -> Self {
        // Derived from the log's own rows, the same rule the ledger
        // answered with: nothing extra is stored per rejection.
        let differs = match (
            r.decided_warehouse_id,
            r.decided_product_id,
            r.decided_quantity,
            r.decided_occurred_at,
        ) {
            (Some(w), Some(p), Some(q), Some(t)) => Differs::from_flags([
                w != r.warehouse_id,
                p != r.product_id,
                q != r.quantity,
                t != r.occurred_at,
            ])
            .names(),
            _ => Vec::new(),
        };
        Rejection {
            seq: r.seq,
            message_id: r.message_id,
            source: r.source,
            movement_id: r.movement_id,
            event: r.event,
            warehouse_id: r.warehouse_id,
            product_id: r.product_id,
            quantity: r.quantity,
            timestamp: r.occurred_at,
            reason: r.reason,
            received_at: r.received_at,
            differs,
        }
    }
}

/// Rejected events, oldest first, after audit position `after`.
pub async fn rejections(
    pool: &PgPool,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Rejection>, sqlx::Error> {
    let rows: Vec<RejectionRow> = sqlx::query_as(
        "SELECT r.seq, r.message_id, r.source, r.movement_id, r.event, r.warehouse_id,
                r.product_id, r.quantity, r.occurred_at, r.reason, r.received_at,
                d.warehouse_id AS decided_warehouse_id, d.product_id AS decided_product_id,
                d.quantity AS decided_quantity, d.occurred_at AS decided_occurred_at
         FROM event_log r
         LEFT JOIN LATERAL (
             SELECT warehouse_id, product_id, quantity, occurred_at
             FROM event_log d
             WHERE r.reason = 'conflicting_duplicate'
               AND d.movement_id = r.movement_id AND d.event = r.event
               AND d.reason IS DISTINCT FROM 'conflicting_duplicate'
             LIMIT 1
         ) d ON true
         WHERE r.outcome = 'rejected' AND r.seq > $1
         ORDER BY r.seq
         LIMIT $2",
    )
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Rejection::from).collect())
}
