//! Plain PostgreSQL reads behind the lookup endpoints. The cache sits in
//! front of the first two; the paginated lists always read PostgreSQL.

use crate::domain::{EventKind, MovementState, MovementView, Side};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
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
    let rows = sqlx::query(
        "SELECT event, warehouse_id, product_id, quantity, occurred_at
         FROM event_log
         WHERE movement_id = $1 AND outcome = 'applied'
           AND reason IS DISTINCT FROM 'conflicting_duplicate'",
    )
    .bind(movement_id)
    .fetch_all(pool)
    .await?;
    let mut state = MovementState::default();
    for row in rows {
        let event: &str = row.try_get(0)?;
        let kind = EventKind::parse(event)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown event {event:?}").into()))?;
        let side = Side {
            warehouse_id: row.try_get(1)?,
            quantity: row.try_get(3)?,
            at: row.try_get(4)?,
        };
        state.record(kind, row.try_get(2)?, side);
    }
    Ok(state.view(movement_id))
}

/// One line of a warehouse's stock list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM stock
         WHERE warehouse_id = $1 AND quantity > 0 AND ($2::uuid IS NULL OR product_id > $2)
         ORDER BY product_id
         LIMIT $3",
    )
    .bind(warehouse_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(StockItem {
                product_id: row.try_get(0)?,
                quantity: row.try_get(1)?,
            })
        })
        .collect()
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
}

/// Rejected events, oldest first, after audit position `after`.
pub async fn rejections(
    pool: &PgPool,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Rejection>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, message_id, source, movement_id, event, warehouse_id, product_id,
                quantity, occurred_at, reason, received_at
         FROM event_log
         WHERE outcome = 'rejected' AND seq > $1
         ORDER BY seq
         LIMIT $2",
    )
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Rejection {
                seq: row.try_get(0)?,
                message_id: row.try_get(1)?,
                source: row.try_get(2)?,
                movement_id: row.try_get(3)?,
                event: row.try_get(4)?,
                warehouse_id: row.try_get(5)?,
                product_id: row.try_get(6)?,
                quantity: row.try_get(7)?,
                timestamp: row.try_get(8)?,
                reason: row.try_get(9)?,
                received_at: row.try_get(10)?,
            })
        })
        .collect()
}
