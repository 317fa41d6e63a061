//! The feed's reads and writes in PostgreSQL: changes out of the audit
//! log, low-stock levels, and the relay's position.

use super::{AppliedEntry, Change};
use crate::ledger::tail::TailedChange;
use sqlx::{PgExecutor, PgPool};
use std::collections::{HashMap, HashSet};
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
                AppliedEntry,
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
                AppliedEntry,
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
    Ok(rows.into_iter().map(AppliedEntry::into_change).collect())
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

/// Up to `limit` changes after `after`, up to `horizon`, for the relay:
/// the spans the ledger's tail does not hold, read from the log and
/// completed as the tail's changes are ([`complete`]).
pub async fn relayed_changes(
    pool: &PgPool,
    after: i64,
    horizon: i64,
    limit: i64,
) -> Result<Vec<RelayedChange>, sqlx::Error> {
    if horizon <= after {
        return Ok(Vec::new());
    }
    let rows = sqlx::query!(
        r#"SELECT seq, warehouse_id, product_id, event, quantity,
                  stock_after AS "stock_after!", movement_id, message_id, received_at, opens_pair
           FROM event_log
           WHERE seq > $1 AND seq <= $2 AND outcome = 'applied'
           ORDER BY seq LIMIT $3"#,
        after,
        horizon,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let changes = rows
        .into_iter()
        .map(|r| TailedChange {
            change: AppliedEntry {
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
            opens_pair: r.opens_pair,
        })
        .collect();
    complete(pool, changes).await
}

/// Changes as the relay publishes them, with what their alerts depend on
/// that the ledger's tail ([`LogTail`](crate::ledger::tail)) cannot know:
/// the levels in effect, where any level is set, and whether an unmarked
/// change from 0 is its pair's first.
pub async fn complete(
    pool: &PgPool,
    changes: Vec<TailedChange>,
) -> Result<Vec<RelayedChange>, sqlx::Error> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // Only a change from 0 can be a pair's first. The ledger marks the
    // first change of a pair it found no stock row of (`opens_pair`, see
    // migration 8); only the other changes from 0 look for an earlier one
    // (in the product-history index).
    let from_zero = |c: &Change| c.delta > 0 && c.before() == 0;
    let mut probe = (Vec::new(), Vec::new(), Vec::new());
    for t in &changes {
        let c = &t.change;
        if from_zero(c) && !t.opens_pair {
            probe.0.push(c.seq);
            probe.1.push(c.warehouse_id);
            probe.2.push(c.product_id);
        }
    }
    let first: HashSet<i64> = if probe.0.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar!(
            r#"SELECT u.seq AS "seq!" FROM unnest($1::int8[], $2::uuid[], $3::uuid[]) AS u(seq, w, p)
               WHERE NOT EXISTS (SELECT 1 FROM event_log l
                                 WHERE l.product_id = u.p AND l.warehouse_id = u.w
                                   AND l.outcome = 'applied' AND l.seq < u.seq)"#,
            &probe.0,
            &probe.1,
            &probe.2,
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect()
    };
    let any_level = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM stock_thresholds)
                  OR EXISTS (SELECT 1 FROM product_thresholds) AS "any!""#
    )
    .fetch_one(pool)
    .await?;
    let levels: HashMap<(Uuid, Uuid), i64> = if any_level {
        let pairs: HashSet<(Uuid, Uuid)> = changes
            .iter()
            .map(|t| (t.change.warehouse_id, t.change.product_id))
            .collect();
        let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
        sqlx::query!(
            r#"SELECT u.w AS "w!", u.p AS "p!",
                      COALESCE((SELECT st.low FROM stock_thresholds st
                                WHERE st.product_id = u.p AND st.warehouse_id = u.w),
                               (SELECT pt.low FROM product_thresholds pt
                                WHERE pt.product_id = u.p)) AS low
               FROM unnest($1::uuid[], $2::uuid[]) AS u(w, p)"#,
            &warehouses,
            &products,
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .filter_map(|r| Some(((r.w, r.p), r.low?)))
        .collect()
    } else {
        HashMap::new()
    };
    Ok(changes
        .into_iter()
        .map(|t| {
            let c = t.change;
            RelayedChange {
                level: levels.get(&(c.warehouse_id, c.product_id)).copied(),
                first_change: from_zero(&c) && (t.opens_pair || first.contains(&c.seq)),
                change: c,
            }
        })
        .collect())
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
