//! Recomputing stock and movements from the audit log and comparing them
//! with the tables: `warehouse-stock verify`, and the last step of every
//! reliability test.

use sqlx::{PgPool, Row};

/// Every disagreement between the tables and the audit log, one readable
/// line each (at most `limit` of each kind). Empty means consistent.
pub async fn verify(pool: &PgPool, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    let mut diff = Vec::new();
    let stock = sqlx::query(
        "WITH derived AS (
             SELECT warehouse_id, product_id,
                    sum(CASE event WHEN 'arrival' THEN quantity ELSE -quantity END)::bigint AS quantity
             FROM event_log WHERE outcome = 'applied'
             GROUP BY warehouse_id, product_id)
         SELECT coalesce(d.warehouse_id, s.warehouse_id)::text,
                coalesce(d.product_id, s.product_id)::text,
                coalesce(d.quantity, 0), coalesce(s.quantity, 0)
         FROM derived d
         FULL JOIN stock s ON s.warehouse_id = d.warehouse_id AND s.product_id = d.product_id
         WHERE coalesce(d.quantity, 0) <> coalesce(s.quantity, 0)
         ORDER BY 1, 2
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    for row in stock {
        diff.push(format!(
            "stock {}/{}: audit log gives {}, stock table has {}",
            row.try_get::<String, _>(0)?,
            row.try_get::<String, _>(1)?,
            row.try_get::<i64, _>(2)?,
            row.try_get::<i64, _>(3)?,
        ));
    }

    let movements = sqlx::query(
        "WITH dep AS (
             SELECT movement_id, product_id, warehouse_id, occurred_at, quantity
             FROM event_log WHERE outcome = 'applied' AND event = 'departure'),
         arr AS (
             SELECT movement_id, product_id, warehouse_id, occurred_at, quantity
             FROM event_log WHERE outcome = 'applied' AND event = 'arrival'),
         derived AS (
             SELECT movement_id, coalesce(dep.product_id, arr.product_id) AS product_id,
                    dep.warehouse_id AS sw, dep.occurred_at AS dt, dep.quantity AS dq,
                    arr.warehouse_id AS dw, arr.occurred_at AS at, arr.quantity AS aq
             FROM dep FULL JOIN arr USING (movement_id)),
         stored AS (
             SELECT * FROM movements
             WHERE source_warehouse_id IS NOT NULL OR destination_warehouse_id IS NOT NULL)
         SELECT coalesce(d.movement_id, m.movement_id)::text,
                CASE WHEN d.movement_id IS NULL THEN 'nothing'
                     ELSE format('product %s, departure %s/%s/%s, arrival %s/%s/%s',
                                 d.product_id, d.sw, d.dt, d.dq, d.dw, d.at, d.aq) END,
                CASE WHEN m.movement_id IS NULL THEN 'nothing'
                     ELSE format('product %s, departure %s/%s/%s, arrival %s/%s/%s',
                                 m.product_id, m.source_warehouse_id, m.departure_time,
                                 m.departure_quantity, m.destination_warehouse_id,
                                 m.arrival_time, m.arrival_quantity) END
         FROM derived d FULL JOIN stored m ON m.movement_id = d.movement_id
         WHERE (d.product_id, d.sw, d.dt, d.dq, d.dw, d.at, d.aq) IS DISTINCT FROM
               (m.product_id, m.source_warehouse_id, m.departure_time, m.departure_quantity,
                m.destination_warehouse_id, m.arrival_time, m.arrival_quantity)
         ORDER BY 1
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    for row in movements {
        diff.push(format!(
            "movement {}: audit log gives {}; movements table has {}",
            row.try_get::<String, _>(0)?,
            row.try_get::<String, _>(1)?,
            row.try_get::<String, _>(2)?,
        ));
    }
    Ok(diff)
}
