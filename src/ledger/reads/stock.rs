//! Reads of stock: a pair's figure now and as of a moment, a product
//! across warehouses, a warehouse's list. The current figures are read
//! through the cache by [`super::super::Ledger`]'s lookups; the rest always
//! read PostgreSQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

/// A pair's stock, and the `seq` of the last change it stands on (`None`
/// while the pair has had none): what a counter counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StockFigure {
    pub quantity: i64,
    pub last_seq: Option<i64>,
}

/// The stock of a (warehouse, product), 0 when the pair was never seen,
/// with its last change: one statement, so the two agree.
pub async fn stock(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
) -> Result<StockFigure, sqlx::Error> {
    sqlx::query_as!(
        StockFigure,
        r#"SELECT coalesce((SELECT quantity FROM stock
                            WHERE warehouse_id = $1 AND product_id = $2), 0) AS "quantity!",
                  (SELECT seq FROM event_log
                   WHERE product_id = $2 AND warehouse_id = $1 AND outcome = 'applied'
                   ORDER BY seq DESC LIMIT 1) AS last_seq"#,
        warehouse_id,
        product_id,
    )
    .fetch_one(pool)
    .await
}

/// [`stock`] of many pairs in one statement.
pub async fn stock_figures(
    pool: &PgPool,
    pairs: &[(Uuid, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), StockFigure>, sqlx::Error> {
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"SELECT k.w AS "w!", k.p AS "p!", coalesce(s.quantity, 0) AS "quantity!",
                  (SELECT l.seq FROM event_log l
                   WHERE l.product_id = k.p AND l.warehouse_id = k.w AND l.outcome = 'applied'
                   ORDER BY l.seq DESC LIMIT 1) AS last_seq
           FROM unnest($1::uuid[], $2::uuid[]) AS k(w, p)
           LEFT JOIN stock s ON s.warehouse_id = k.w AND s.product_id = k.p"#,
        &warehouses,
        &products,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let figure = StockFigure {
                quantity: r.quantity,
                last_seq: r.last_seq,
            };
            ((r.w, r.p), figure)
        })
        .collect())
}

/// The quantities of many pairs in one statement, without locks; a pair
/// never seen is absent from the answer (it reads as 0). The lookups and
/// the ledger's optimistic attempts both read stock rows this way.
pub async fn stock_many(
    conn: impl PgExecutor<'_>,
    pairs: impl IntoIterator<Item = (Uuid, Uuid)>,
) -> Result<HashMap<(Uuid, Uuid), i64>, sqlx::Error> {
    let (warehouses, products): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
    if warehouses.is_empty() {
        return Ok(HashMap::new());
    }
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

/// The stock of a pair as it stood at `as_of` on the ledger's clock: after
/// the last applied entry (in the ledger's order) applied at or before it.
/// Along one pair's entries that clock does not go backwards (see
/// `apply::PENDING`), so this is the figure the pair had at that moment.
///
/// The walk back from the newest entry stops after `scan` entries:
/// `None` when the moment lies further back than that.
pub async fn stock_as_of(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
    as_of: DateTime<Utc>,
    scan: i64,
) -> Result<Option<StockFigure>, sqlx::Error> {
    // An applied entry always has its `stock_after` (the audit log's CHECK).
    // The outer LIMIT pulls the walk only as far as the first match.
    let last = sqlx::query!(
        r#"SELECT seq AS "seq!", stock_after AS "stock_after!" FROM (
               SELECT seq, stock_after, received_at FROM event_log
               WHERE warehouse_id = $1 AND product_id = $2 AND outcome = 'applied'
               ORDER BY seq DESC
               LIMIT $4) AS walk
           WHERE received_at <= $3
           ORDER BY seq DESC
           LIMIT 1"#,
        warehouse_id,
        product_id,
        as_of,
        scan,
    )
    .fetch_optional(pool)
    .await?;
    if let Some(l) = last {
        return Ok(Some(StockFigure {
            quantity: l.stock_after,
            last_seq: Some(l.seq),
        }));
    }
    // No entry at or before `as_of` within the walk: the pair did not exist
    // yet, unless the walk stopped at its bound.
    let walked = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM (
               SELECT 1 FROM event_log
               WHERE warehouse_id = $1 AND product_id = $2 AND outcome = 'applied'
               ORDER BY seq DESC
               LIMIT $3) AS walk"#,
        warehouse_id,
        product_id,
        scan,
    )
    .fetch_one(pool)
    .await?;
    Ok((walked < scan).then_some(StockFigure {
        quantity: 0,
        last_seq: None,
    }))
}

/// A product across warehouses: the total, what is on the road, and one
/// page of the warehouses holding it.
#[derive(Debug, Clone)]
pub struct ProductFigures {
    /// The sum over every warehouse.
    pub total: i64,
    /// The departure quantities of movements that departed and have not
    /// arrived, nor been reversed or written off.
    pub in_transit: i64,
    /// Warehouses holding more than 0, by warehouse_id.
    pub items: Vec<WarehouseQuantity>,
}

/// One warehouse's quantity of a product.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WarehouseQuantity {
    pub warehouse_id: Uuid,
    pub quantity: i64,
}

/// A product's figures, read in one statement so that the total, the
/// transit sum and the page come from one snapshot.
pub async fn product_stock(
    pool: &PgPool,
    product_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<ProductFigures, sqlx::Error> {
    let row = sqlx::query!(
        // The holders come from the stock table's product index
        // (migration 16): a row per warehouse that ever had the product,
        // however long its history.
        r#"WITH holders AS MATERIALIZED (
                 SELECT warehouse_id, quantity FROM stock WHERE product_id = $1)
             SELECT
                (SELECT coalesce(sum(quantity), 0)::int8 FROM holders) AS "total!",
                (SELECT coalesce(sum(quantity), 0)::int8
                 FROM open_movements WHERE product_id = $1) AS "in_transit!",
                (SELECT coalesce(json_agg(json_build_object(
                            'warehouse_id', warehouse_id, 'quantity', quantity)
                            ORDER BY warehouse_id), '[]')
                 FROM (SELECT warehouse_id, quantity FROM holders
                       WHERE quantity > 0 AND ($2::uuid IS NULL OR warehouse_id > $2)
                       ORDER BY warehouse_id
                       LIMIT $3) AS page) AS "items!: sqlx::types::Json<Vec<WarehouseQuantity>>""#,
        product_id,
        after,
        limit,
    )
    .fetch_one(pool)
    .await?;
    Ok(ProductFigures {
        total: row.total,
        in_transit: row.in_transit,
        items: row.items.0,
    })
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
    sqlx::query_as!(
        StockItem,
        "SELECT product_id, quantity FROM stock
         WHERE warehouse_id = $1 AND quantity > 0 AND ($2::uuid IS NULL OR product_id > $2)
         ORDER BY product_id
         LIMIT $3",
        warehouse_id,
        after,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// A warehouse's stock list as it stood at `as_of` on the ledger's
/// clock, ordered by product_id, after `after`: each pair's last applied
/// entry at or before it, found along the product index from the
/// warehouse's stock rows (every pair that ever had an entry has one).
///
/// Each pair's walk back stops after `scan / limit` entries, so a page
/// walks at most `scan`: `None` when a pair of the page lies further back
/// than that.
pub async fn warehouse_stock_as_of(
    pool: &PgPool,
    warehouse_id: Uuid,
    as_of: DateTime<Utc>,
    after: Option<Uuid>,
    limit: i64,
    scan: i64,
) -> Result<Option<Vec<StockItem>>, sqlx::Error> {
    let per_pair = (scan / limit.max(1)).max(1);
    // `walked` is worked out only for a pair with no entry within its
    // walk: it tells a pair that did not exist yet (left out) from one
    // whose moment lies beyond the walk.
    let rows = sqlx::query!(
        r#"SELECT product_id AS "product_id!", quantity, walked FROM (
               SELECT s.product_id, l.stock_after AS quantity,
                      CASE WHEN l.stock_after IS NULL THEN (
                          SELECT count(*) FROM (
                              SELECT 1 FROM event_log
                              WHERE product_id = s.product_id
                                AND warehouse_id = s.warehouse_id AND outcome = 'applied'
                              ORDER BY seq DESC
                              LIMIT $5) AS walk) END AS walked
               FROM stock s
               LEFT JOIN LATERAL (
                   SELECT stock_after FROM (
                       SELECT seq, stock_after, received_at FROM event_log
                       WHERE product_id = s.product_id AND warehouse_id = s.warehouse_id
                         AND outcome = 'applied'
                       ORDER BY seq DESC
                       LIMIT $5) AS walk
                   WHERE received_at <= $2
                   ORDER BY seq DESC
                   LIMIT 1) AS l ON true
               WHERE s.warehouse_id = $1 AND ($3::uuid IS NULL OR s.product_id > $3)) AS p
           WHERE quantity > 0 OR walked >= $5
           ORDER BY product_id
           LIMIT $4"#,
        warehouse_id,
        as_of,
        after,
        limit,
        per_pair,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.quantity.map(|quantity| StockItem {
                product_id: r.product_id,
                quantity,
            })
        })
        .collect())
}

/// One stock row: a warehouse's quantity of a product.
#[derive(Debug, Clone, Copy)]
pub struct Holding {
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i64,
}

/// The stock rows of `pairs` and of every holder of `products`, each
/// once: bounded by the pairs asked and the holders of those products.
pub async fn holdings(
    pool: &PgPool,
    pairs: &[(Uuid, Uuid)],
    products: &[Uuid],
) -> Result<Vec<Holding>, sqlx::Error> {
    let (warehouses, pair_products): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    sqlx::query_as!(
        Holding,
        r#"SELECT s.warehouse_id AS "warehouse_id!", s.product_id AS "product_id!",
                  s.quantity AS "quantity!"
           FROM stock s JOIN unnest($1::uuid[], $2::uuid[]) AS k(w, p)
                ON s.warehouse_id = k.w AND s.product_id = k.p
           UNION
           SELECT warehouse_id, product_id, quantity FROM stock WHERE product_id = ANY($3)"#,
        &warehouses,
        &pair_products,
        products,
    )
    .fetch_all(pool)
    .await
}

/// For each `(warehouse, product, mark)`, the first applied change after
/// the pair's last change that left it at or above `mark`, and when the
/// ledger applied it: the change that took the pair under the mark.
/// Absent for a pair with no such change.
pub async fn under_since(
    pool: &PgPool,
    marks: &[(Uuid, Uuid, i64)],
) -> Result<HashMap<(Uuid, Uuid), (i64, DateTime<Utc>)>, sqlx::Error> {
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for &(w, p, mark) in marks {
        columns.0.push(w);
        columns.1.push(p);
        columns.2.push(mark);
    }
    let rows = sqlx::query!(
        r#"SELECT u.w AS "w!", u.p AS "p!", c.seq, c.received_at
           FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS u(w, p, mark)
           JOIN LATERAL (
               SELECT e.seq, e.received_at FROM event_log e
               WHERE e.product_id = u.p AND e.warehouse_id = u.w AND e.outcome = 'applied'
                 AND e.seq > coalesce((
                     SELECT max(a.seq) FROM event_log a
                     WHERE a.product_id = u.p AND a.warehouse_id = u.w
                       AND a.outcome = 'applied' AND a.stock_after >= u.mark), 0)
               ORDER BY e.seq
               LIMIT 1) AS c ON true"#,
        &columns.0,
        &columns.1,
        &columns.2,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.w, r.p), (r.seq, r.received_at)))
        .collect())
}
