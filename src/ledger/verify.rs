//! Recomputing stock from the audit log and comparing it with the stock
//! table and with the figures the log records after each entry, and
//! checking that the halves of every movement agree:
//! `warehouse-stock verify`, and the last step of every reliability test.

use sqlx::PgPool;

/// Every disagreement between the tables and the audit log, one readable
/// line each (at most `limit` of each kind). Empty means consistent.
pub async fn verify(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let mut diff = stock(pool, limit).await?;
    diff.extend(movements(pool, limit).await?);
    diff.extend(history(pool, limit).await?);
    Ok(diff)
}

/// The stock table against the sum of each pair's applied entries.
async fn stock(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH derived AS (
             SELECT warehouse_id, product_id,
                    sum(CASE event WHEN 'arrival' THEN quantity ELSE -quantity END)::bigint AS quantity
             FROM event_log WHERE outcome = 'applied'
             GROUP BY warehouse_id, product_id)
         SELECT coalesce(d.warehouse_id, s.warehouse_id) AS "warehouse_id!",
                coalesce(d.product_id, s.product_id) AS "product_id!",
                coalesce(d.quantity, 0) AS "derived!", coalesce(s.quantity, 0) AS "stored!"
         FROM derived d
         FULL JOIN stock s ON s.warehouse_id = d.warehouse_id AND s.product_id = d.product_id
         WHERE coalesce(d.quantity, 0) <> coalesce(s.quantity, 0)
         ORDER BY 1, 2
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            format!(
                "stock {}/{}: audit log gives {}, stock table has {}",
                row.warehouse_id, row.product_id, row.derived, row.stored,
            )
        })
        .collect())
}

/// Movements whose two applied halves do not belong together.
async fn movements(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    // Every deciding entry is unique per (movement_id, event) by the audit
    // log's index; what no index states is that the two applied halves of
    // a movement agree, which the ledger guarantees by deciding the second
    // half after seeing the first.
    let rows = sqlx::query!(
        r#"SELECT d.movement_id,
                format('departure of %s from %s', d.product_id, d.warehouse_id) AS "departure!",
                format('arrival of %s at %s', a.product_id, a.warehouse_id) AS "arrival!"
         FROM event_log d
         JOIN event_log a ON a.movement_id = d.movement_id
         WHERE d.outcome = 'applied' AND d.event = 'departure'
           AND a.outcome = 'applied' AND a.event = 'arrival'
           AND (d.product_id <> a.product_id OR d.warehouse_id = a.warehouse_id)
         ORDER BY 1
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            format!(
                "movement {}: the {} and the {} do not belong together",
                row.movement_id, row.departure, row.arrival,
            )
        })
        .collect())
}

/// Entries whose recorded stock after, or first-change mark, is not what
/// the pair's entries before them give.
async fn history(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    // Each applied entry records the stock right after it, which history
    // and as-of answers are read from: it must be the running sum of the
    // pair's deltas in the ledger's order. An entry marked as its pair's
    // first change (which the feed's alerts trust) must be the first.
    let rows = sqlx::query!(
        r#"SELECT seq AS "seq!", warehouse_id AS "warehouse_id!", product_id AS "product_id!",
                stock_after, running AS "running!", opens_pair AND nth > 1 AS "misplaced!"
         FROM (SELECT seq, warehouse_id, product_id, stock_after, opens_pair,
                      sum(CASE event WHEN 'arrival' THEN quantity ELSE -quantity END)
                          OVER pair::bigint AS running,
                      row_number() OVER pair AS nth
               FROM event_log WHERE outcome = 'applied'
               WINDOW pair AS (PARTITION BY warehouse_id, product_id ORDER BY seq)) AS h
         WHERE stock_after IS DISTINCT FROM running OR (opens_pair AND nth > 1)
         ORDER BY seq
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            if row.misplaced {
            format!(
                "history {}/{}: entry {} is marked as the pair's first change, and is not",
                row.warehouse_id, row.product_id, row.seq,
            )
        } else {
            format!(
                "history {}/{}: entry {} records stock {:?} after it, the entries before it give {}",
                row.warehouse_id, row.product_id, row.seq, row.stock_after, row.running,
            )
            }
        })
        .collect())
}
