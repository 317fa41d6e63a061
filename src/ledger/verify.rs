//! Recomputing stock from the audit log and comparing it with the stock
//! table and with the figures the log records after each entry, and
//! checking that the halves of every movement agree:
//! `warehouse-stock verify`, and the last step of every reliability test.
//!
//! Each check is one statement that answers its disagreements as readable
//! lines, at most `limit` of them.

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
    sqlx::query_scalar!(
        r#"WITH derived AS (
             SELECT warehouse_id, product_id,
                    sum(coalesce(delta, CASE event WHEN 'arrival' THEN quantity ELSE -quantity END))::bigint AS quantity
             FROM event_log WHERE outcome = 'applied'
             GROUP BY warehouse_id, product_id)
         SELECT format('stock %s/%s: audit log gives %s, stock table has %s',
                       coalesce(d.warehouse_id, s.warehouse_id), coalesce(d.product_id, s.product_id),
                       coalesce(d.quantity, 0), coalesce(s.quantity, 0)) AS "line!"
         FROM derived d
         FULL JOIN stock s ON s.warehouse_id = d.warehouse_id AND s.product_id = d.product_id
         WHERE coalesce(d.quantity, 0) <> coalesce(s.quantity, 0)
         ORDER BY coalesce(d.warehouse_id, s.warehouse_id), coalesce(d.product_id, s.product_id)
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Movements whose two applied halves do not belong together. Every
/// deciding entry is unique per (movement_id, event) by the audit log's
/// index; what no index states is that the two applied halves of a
/// movement agree, which the ledger guarantees by deciding the second half
/// after seeing the first.
async fn movements(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT format('movement %s: the departure of %s from %s and the arrival of %s at %s '
                         'do not belong together',
                         d.movement_id, d.product_id, d.warehouse_id, a.product_id, a.warehouse_id)
                  AS "line!"
         FROM event_log d
         JOIN event_log a ON a.movement_id = d.movement_id
         WHERE d.outcome = 'applied' AND d.event = 'departure'
           AND a.outcome = 'applied' AND a.event = 'arrival'
           AND (d.product_id <> a.product_id OR d.warehouse_id = a.warehouse_id)
         ORDER BY d.movement_id
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Entries whose recorded stock after, or first-change mark, is not what
/// the pair's entries before them give. Each applied entry records the
/// stock right after it, which history and as-of answers are read from: it
/// must be the running sum of the pair's deltas in the ledger's order. An
/// entry marked as its pair's first change (which the feed's alerts trust)
/// must be the first.
async fn history(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT CASE WHEN opens_pair AND nth > 1
                       THEN format('history %s/%s: entry %s is marked as the pair''s first change, '
                                   'and is not', warehouse_id, product_id, seq)
                       ELSE format('history %s/%s: entry %s records stock %s after it, '
                                   'the entries before it give %s', warehouse_id, product_id, seq,
                                   coalesce('Some(' || stock_after || ')', 'None'), running)
                  END AS "line!"
         FROM (SELECT seq, warehouse_id, product_id, stock_after, opens_pair,
                      sum(coalesce(delta, CASE event WHEN 'arrival' THEN quantity ELSE -quantity END))
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
    .await
}
