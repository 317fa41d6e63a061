//! Recomputing stock from the audit log and comparing it with the stock
//! table and with the figures the log records after each entry, and
//! checking that the halves of every movement agree, that what closed a
//! movement early undid exactly what it names, and that the table of
//! movements on the road holds exactly those:
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
    diff.extend(closings(pool, limit).await?);
    diff.extend(open_movements(pool, limit).await?);
    Ok(diff)
}

/// The table of movements on the road against the audit log: every
/// applied departure with no applied arrival, reversal or write-off has
/// its row, as the departure says, and no other movement has one.
async fn open_movements(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH derived AS (
             SELECT d.movement_id, d.product_id, d.warehouse_id, d.quantity,
                    d.occurred_at AS departed_at
             FROM event_log d
             WHERE d.event = 'departure' AND d.outcome = 'applied'
               AND NOT EXISTS (
                   SELECT 1 FROM event_log c
                   WHERE c.movement_id = d.movement_id
                     AND c.event IN ('arrival', 'reversal', 'write_off')
                     AND c.outcome = 'applied'
                     AND c.reason IS DISTINCT FROM 'conflicting_duplicate'))
         SELECT format('movement %s: the audit log has it on the road as %s, open_movements as %s',
                       coalesce(d.movement_id, o.movement_id),
                       CASE WHEN d.movement_id IS NULL THEN 'not'
                            ELSE format('%s of %s from %s at %s', d.quantity, d.product_id,
                                        d.warehouse_id, d.departed_at) END,
                       CASE WHEN o.movement_id IS NULL THEN 'not'
                            ELSE format('%s of %s from %s at %s', o.quantity, o.product_id,
                                        o.warehouse_id, o.departed_at) END) AS "line!"
         FROM derived d
         FULL JOIN open_movements o ON o.movement_id = d.movement_id
         WHERE (d.movement_id, d.product_id, d.warehouse_id, d.quantity, d.departed_at)
               IS DISTINCT FROM (o.movement_id, o.product_id, o.warehouse_id, o.quantity, o.departed_at)
         ORDER BY coalesce(d.movement_id, o.movement_id)
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
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

/// Reversals and write-offs that do not match their movement: a
/// reversal's entry must undo exactly the applied half it names (at its
/// warehouse, by its quantity), a movement has at most one reversal and
/// one write-off, a write-off moves nothing and closes a departure, and
/// no half is applied after its movement's reversal.
async fn closings(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH closing AS (
             SELECT c.seq, c.movement_id, c.event, c.warehouse_id, c.product_id, c.delta,
                    c.correction->>'reverses' AS reverses,
                    coalesce(c.correction->>'reversal_id', c.correction->>'write_off_id') AS id,
                    h.warehouse_id AS half_warehouse, h.product_id AS half_product,
                    h.quantity AS half_quantity
             FROM event_log c
             LEFT JOIN event_log h
               ON h.movement_id = c.movement_id AND h.outcome = 'applied'
              AND h.reason IS DISTINCT FROM 'conflicting_duplicate'
              AND h.event = CASE c.event WHEN 'write_off' THEN 'departure'
                                         ELSE c.correction->>'reverses' END
             WHERE c.outcome = 'applied' AND c.event IN ('reversal', 'write_off'))
         SELECT line AS "line!" FROM (
             SELECT seq, format('%s %s of movement %s does not undo the %s it names',
                                event, seq, movement_id, coalesce(reverses, 'departure')) AS line
             FROM closing
             WHERE half_quantity IS NULL OR half_warehouse <> warehouse_id
                OR half_product <> product_id
                OR delta <> CASE WHEN event = 'write_off' THEN 0
                                 WHEN reverses = 'departure' THEN half_quantity
                                 ELSE -half_quantity END
             UNION ALL
             SELECT min(seq), format('movement %s has %s %s ids', movement_id, count(DISTINCT id),
                                     event)
             FROM closing GROUP BY movement_id, event HAVING count(DISTINCT id) > 1
             UNION ALL
             SELECT h.seq, format('movement %s: %s %s was applied after its reversal %s',
                                  h.movement_id, h.event, h.seq, r.seq)
             FROM closing r
             JOIN event_log h ON h.movement_id = r.movement_id AND h.seq > r.seq
              AND h.outcome = 'applied' AND h.event IN ('arrival', 'departure')
             WHERE r.event = 'reversal') AS found
         ORDER BY seq
         LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
}
