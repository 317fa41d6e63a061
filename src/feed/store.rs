//! The feed's reads and writes in PostgreSQL: changes out of the audit
//! log, low-stock levels, and the relay's position.

use super::Change;
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// Which changes a reader follows; both filters are optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeFilter {
    pub warehouse_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
}

/// Up to `limit` changes with `after < seq <= horizon`, in `seq` order.
pub async fn changes(
    pool: &PgPool,
    after: i64,
    horizon: i64,
    filter: ChangeFilter,
    limit: i64,
) -> Result<Vec<Change>, sqlx::Error> {
    if horizon <= after {
        return Ok(Vec::new());
    }
    // Two statements, so that each gets a plan for its index: a product's
    // changes walk `event_log_product_history`, the rest the log's order.
    let rows = match filter.product_id {
        Some(product) => {
            sqlx::query_as!(
                ChangeRow,
                r#"SELECT seq, warehouse_id, product_id, event, quantity,
                          stock_after AS "stock_after!", movement_id, message_id, received_at
                   FROM event_log
                   WHERE product_id = $1 AND ($2::uuid IS NULL OR warehouse_id = $2)
                     AND outcome = 'applied' AND seq > $3 AND seq <= $4
                   ORDER BY seq LIMIT $5"#,
                product,
                filter.warehouse_id,
                after,
                horizon,
                limit,
            )
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as!(
                ChangeRow,
                r#"SELECT seq, warehouse_id, product_id, event, quantity,
                          stock_after AS "stock_after!", movement_id, message_id, received_at
                   FROM event_log
                   WHERE seq > $1 AND seq <= $2 AND outcome = 'applied'
                     AND ($3::uuid IS NULL OR warehouse_id = $3)
                   ORDER BY seq LIMIT $4"#,
                after,
                horizon,
                filter.warehouse_id,
                limit,
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(ChangeRow::into_change).collect())
}

/// A change as the relay publishes it: with what its alerts depend on.
#[derive(Debug, Clone)]
pub struct RelayedChange {
    pub change: Change,
    /// The pair's low-stock level when the relay read it.
    pub level: Option<i64>,
    /// Whether the pair had no change before this one.
    pub first_change: bool,
}

/// Up to `limit` changes after `after`, up to `horizon`, for the relay.
pub async fn relayed_changes(
    pool: &PgPool,
    after: i64,
    horizon: i64,
    limit: i64,
) -> Result<Vec<RelayedChange>, sqlx::Error> {
    if horizon <= after {
        return Ok(Vec::new());
    }
    // Only a change from 0 can be a pair's first. The ledger marks the
    // first change of a pair it found no stock row of (`opens_pair`, see
    // migration 8); only the other changes from 0 look for an earlier one
    // (in the product-history index), and `OR` stops at the mark.
    // The levels are looked up per change only where any level is set: the
    // uncorrelated `EXISTS` runs once per statement, and `CASE` skips the
    // two lookups without one (a join probed both indexes for every row).
    let rows = sqlx::query!(
        r#"SELECT e.seq, e.warehouse_id, e.product_id, e.event, e.quantity,
                  e.stock_after AS "stock_after!", e.movement_id, e.message_id, e.received_at,
                  CASE WHEN (SELECT EXISTS (SELECT 1 FROM stock_thresholds)
                                    OR EXISTS (SELECT 1 FROM product_thresholds))
                       THEN COALESCE((SELECT st.low FROM stock_thresholds st
                                      WHERE st.product_id = e.product_id
                                        AND st.warehouse_id = e.warehouse_id),
                                     (SELECT pt.low FROM product_thresholds pt
                                      WHERE pt.product_id = e.product_id))
                  END AS low,
                  CASE WHEN e.event = 'arrival' AND e.stock_after = e.quantity
                       THEN e.opens_pair OR NOT EXISTS (SELECT 1 FROM event_log p
                                        WHERE p.product_id = e.product_id
                                          AND p.warehouse_id = e.warehouse_id
                                          AND p.outcome = 'applied' AND p.seq < e.seq)
                       ELSE false END AS "first_change!"
           FROM event_log e
           WHERE e.seq > $1 AND e.seq <= $2 AND e.outcome = 'applied'
           ORDER BY e.seq LIMIT $3"#,
        after,
        horizon,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RelayedChange {
            change: ChangeRow {
                seq: r.seq,
                warehouse_id: r.warehouse_id,
                product_id: r.product_id,
                event: r.event,
                quantity: r.quantity,
                stock_after: r.stock_after,
                movement_id: r.movement_id,
                message_id: r.message_id,
                received_at: r.received_at,
            }
            .into_change(),
            level: r.low,
            first_change: r.first_change,
        })
        .collect())
}

struct ChangeRow {
    seq: i64,
    warehouse_id: Uuid,
    product_id: Uuid,
    event: String,
    quantity: i32,
    stock_after: i64,
    movement_id: Uuid,
    message_id: String,
    received_at: DateTime<Utc>,
}

impl ChangeRow {
    fn into_change(self) -> Change {
        let quantity = i64::from(self.quantity);
        let delta = if self.event == "arrival" {
            quantity
        } else {
            -quantity
        };
        Change {
            seq: self.seq,
            warehouse_id: self.warehouse_id,
            product_id: self.product_id,
            delta,
            quantity: self.stock_after,
            movement_id: self.movement_id,
            event: self.event,
            message_id: self.message_id,
            changed_at: self.received_at,
        }
    }
}

/// How many changes are committed after `position`, counted up to `cap`.
pub async fn changes_after(pool: &PgPool, position: i64, cap: i64) -> Result<i64, sqlx::Error> {
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM (SELECT 1 FROM event_log
                                          WHERE seq > $1 AND outcome = 'applied' LIMIT $2) AS c"#,
        position,
        cap,
    )
    .fetch_one(pool)
    .await?;
    Ok(n)
}

/// A low-stock level and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub low: i64,
    /// Whether it is the pair's own (or its product's default).
    pub own: bool,
}

/// The level in effect for a pair: its own, else its product's.
pub async fn level(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
) -> Result<Option<Level>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT (SELECT low FROM stock_thresholds WHERE product_id = $2 AND warehouse_id = $1) AS own,
                  (SELECT low FROM product_thresholds WHERE product_id = $2) AS product"#,
        warehouse_id,
        product_id,
    )
    .fetch_one(pool)
    .await?;
    Ok(match (row.own, row.product) {
        (Some(low), _) => Some(Level { low, own: true }),
        (None, Some(low)) => Some(Level { low, own: false }),
        (None, None) => None,
    })
}

pub async fn set_pair_level(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
    low: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO stock_thresholds (warehouse_id, product_id, low) VALUES ($1, $2, $3)
         ON CONFLICT (product_id, warehouse_id) DO UPDATE SET low = excluded.low, updated_at = now()",
        warehouse_id,
        product_id,
        low,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes a pair's own level; `false` when it had none.
pub async fn delete_pair_level(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM stock_thresholds WHERE product_id = $2 AND warehouse_id = $1",
        warehouse_id,
        product_id,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn product_level(pool: &PgPool, product_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT low FROM product_thresholds WHERE product_id = $1",
        product_id
    )
    .fetch_optional(pool)
    .await
}

pub async fn set_product_level(
    pool: &PgPool,
    product_id: Uuid,
    low: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO product_thresholds (product_id, low) VALUES ($1, $2)
         ON CONFLICT (product_id) DO UPDATE SET low = excluded.low, updated_at = now()",
        product_id,
        low,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes a product's default level; `false` when it had none.
pub async fn delete_product_level(pool: &PgPool, product_id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM product_thresholds WHERE product_id = $1",
        product_id
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The relay's position for `topic`, created at 0 the first time.
pub async fn relay_position(conn: impl PgExecutor<'_>, topic: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH created AS (
               INSERT INTO change_relay (topic) VALUES ($1)
               ON CONFLICT (topic) DO NOTHING RETURNING position)
           SELECT position AS "position!" FROM created
           UNION ALL
           SELECT position FROM change_relay WHERE topic = $1"#,
        topic,
    )
    .fetch_one(conn)
    .await
}

pub async fn advance_relay(
    conn: impl PgExecutor<'_>,
    topic: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE change_relay SET position = $2, updated_at = now()
         WHERE topic = $1 AND position < $2",
        topic,
        position,
    )
    .execute(conn)
    .await?;
    Ok(())
}
