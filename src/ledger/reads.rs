//! Plain PostgreSQL reads behind the lookups. [`super::Ledger`]'s read
//! methods put the cache in front of the current figures and movements;
//! the lists, the history and past figures always read PostgreSQL.

use crate::domain::{
    CorrectionDetails, Differs, EventKind, MovementClosing, MovementState, MovementStatus,
    MovementView, RejectReason, Side,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
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

/// The movement, or `None` when no half of it was applied: its applied
/// entries in the audit log, one per half, and its reversal or write-off.
pub async fn movement(
    pool: &PgPool,
    movement_id: Uuid,
) -> Result<Option<MovementView>, sqlx::Error> {
    // The `reason` condition is the predicate of the audit log's deciding
    // index, which every applied entry is in: it lets PostgreSQL use it.
    let rows = sqlx::query!(
        r#"SELECT event AS "event: EventKind", warehouse_id, product_id, quantity, occurred_at,
                  source, received_at, correction AS "correction: Json<CorrectionDetails>"
           FROM event_log
           WHERE movement_id = $1 AND outcome = 'applied'
             AND reason IS DISTINCT FROM 'conflicting_duplicate'"#,
        movement_id,
    )
    .fetch_all(pool)
    .await?;
    let mut state = MovementState::default();
    let (mut departure_source, mut arrival_source) = (None, None);
    for row in rows {
        if let (true, Some(Json(details))) = (row.event.closes_movement(), &row.correction) {
            if let Some(closing) = MovementClosing::from_details(details, row.received_at) {
                state.close(row.event, closing);
            }
            continue;
        }
        let side = Side {
            warehouse_id: row.warehouse_id,
            quantity: row.quantity,
            at: row.occurred_at,
        };
        state.record(row.event, row.product_id, side);
        match row.event {
            EventKind::Departure => departure_source = Some(row.source),
            EventKind::Arrival => arrival_source = Some(row.source),
            _ => {}
        }
    }
    Ok(state.view(movement_id).map(|view| MovementView {
        departure_source,
        arrival_source,
        ..view
    }))
}

/// Which movements [`movements`] lists; every filter is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct MovementFilter {
    pub status: Option<MovementStatus>,
    /// Either end of the movement.
    pub warehouse_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    /// Only movements whose departure's `data.timestamp` is before this.
    pub departed_before: Option<DateTime<Utc>>,
}

/// One movement's applied halves, as [`movements`] reads them.
struct HalvesRow {
    movement_id: Uuid,
    product_id: Uuid,
    departure_warehouse: Option<Uuid>,
    departure_at: Option<DateTime<Utc>>,
    departure_quantity: Option<i32>,
    departure_source: Option<String>,
    arrival_warehouse: Option<Uuid>,
    arrival_at: Option<DateTime<Utc>>,
    arrival_quantity: Option<i32>,
    arrival_source: Option<String>,
    reversal: Option<Json<CorrectionDetails>>,
    reversed_at: Option<DateTime<Utc>>,
    write_off: Option<Json<CorrectionDetails>>,
    written_off_at: Option<DateTime<Utc>>,
}

impl HalvesRow {
    fn view(self) -> Option<MovementView> {
        let mut state = MovementState::default();
        let halves = [
            (
                EventKind::Departure,
                self.departure_warehouse,
                self.departure_at,
                self.departure_quantity,
            ),
            (
                EventKind::Arrival,
                self.arrival_warehouse,
                self.arrival_at,
                self.arrival_quantity,
            ),
        ];
        for (kind, warehouse, at, quantity) in halves {
            if let (Some(warehouse_id), Some(at), Some(quantity)) = (warehouse, at, quantity) {
                let side = Side {
                    warehouse_id,
                    at,
                    quantity,
                };
                state.record(kind, self.product_id, side);
            }
        }
        let closings = [
            (EventKind::Reversal, self.reversal, self.reversed_at),
            (EventKind::WriteOff, self.write_off, self.written_off_at),
        ];
        for (kind, details, at) in closings {
            if let Some(closing) = details
                .zip(at)
                .and_then(|(Json(d), at)| MovementClosing::from_details(&d, at))
            {
                state.close(kind, closing);
            }
        }
        state.view(self.movement_id).map(|view| MovementView {
            departure_source: self.departure_source,
            arrival_source: self.arrival_source,
            ..view
        })
    }
}

/// One page of movements.
#[derive(Debug)]
pub struct MovementsPage {
    pub items: Vec<MovementView>,
    /// Where the walk stopped when it stopped at its bound with fewer than
    /// `limit` movements: the next page starts after it.
    pub resume_after: Option<Uuid>,
}

/// Movement views matching `filter`, by movement_id, after `after`. Keyed
/// by movement_id, a page walk under concurrent writes never repeats a
/// movement and never skips one that matched throughout.
///
/// A page walks at most `scan` entries of the deciding index: a filter
/// that matches few movements costs its caller more pages (each with
/// `resume_after`), never one walk of the whole log.
pub async fn movements(
    pool: &PgPool,
    filter: MovementFilter,
    after: Option<Uuid>,
    limit: i64,
    scan: i64,
) -> Result<MovementsPage, sqlx::Error> {
    if filter.status != Some(MovementStatus::InTransit) {
        let window = sqlx::query!(
            r#"WITH w AS (
                   SELECT movement_id FROM event_log
                   WHERE reason IS DISTINCT FROM 'conflicting_duplicate'
                     AND ($1::uuid IS NULL OR movement_id > $1)
                   ORDER BY movement_id
                   LIMIT $2)
               SELECT (SELECT movement_id FROM w ORDER BY movement_id DESC LIMIT 1) AS last,
                      (SELECT count(*) FROM w) AS "n!""#,
            after,
            scan,
        )
        .fetch_one(pool)
        .await?;
        // A window that ran out before `scan` entries reached the log's end.
        let until = window.last.filter(|_| window.n >= scan);
        let items = movement_views(pool, filter, after, until, None, limit).await?;
        return Ok(MovementsPage {
            items,
            resume_after: until,
        });
    }
    // The movements on the road are few and have a table of their own
    // (migration 17): a page costs the same however long the log is.
    let ids = sqlx::query_scalar!(
        "SELECT movement_id FROM open_movements
         WHERE ($1::uuid IS NULL OR movement_id > $1)
           AND ($2::uuid IS NULL OR product_id = $2)
           AND ($3::uuid IS NULL OR warehouse_id = $3)
           AND ($4::timestamptz IS NULL OR departed_at < $4)
         ORDER BY movement_id
         LIMIT $5",
        after,
        filter.product_id,
        filter.warehouse_id,
        filter.departed_before,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let items = movement_views(pool, filter, None, None, Some(&ids), limit).await?;
    Ok(MovementsPage {
        items,
        resume_after: None,
    })
}

/// The views of the movements matching `filter` after `after` (and up to
/// `until`), or of exactly `ids` where given: the movements' entries
/// grouped along the deciding index.
async fn movement_views(
    pool: &PgPool,
    filter: MovementFilter,
    after: Option<Uuid>,
    until: Option<Uuid>,
    ids: Option<&[Uuid]>,
    limit: i64,
) -> Result<Vec<MovementView>, sqlx::Error> {
    let status = filter.status.map(MovementStatus::as_str);
    // The halves are grouped in movement_id order along the audit log's
    // deciding index (whose predicate the `reason` condition repeats), so
    // a page stops reading once it has `limit` movements.
    let rows = sqlx::query_as!(
        HalvesRow,
        r#"SELECT m.movement_id AS "movement_id!", m.product_id AS "product_id!",
                  m.departure_warehouse, m.departure_at, m.departure_quantity, m.departure_source,
                  m.arrival_warehouse, m.arrival_at, m.arrival_quantity, m.arrival_source,
                  m.reversal AS "reversal: Json<CorrectionDetails>", m.reversed_at,
                  m.write_off AS "write_off: Json<CorrectionDetails>", m.written_off_at
         FROM (
             SELECT movement_id,
                    (array_agg(product_id))[1] AS product_id,
                    (array_agg(warehouse_id) FILTER (WHERE event = 'departure'))[1] AS departure_warehouse,
                    (array_agg(occurred_at) FILTER (WHERE event = 'departure'))[1] AS departure_at,
                    (array_agg(quantity) FILTER (WHERE event = 'departure'))[1] AS departure_quantity,
                    (array_agg(source) FILTER (WHERE event = 'departure'))[1] AS departure_source,
                    (array_agg(warehouse_id) FILTER (WHERE event = 'arrival'))[1] AS arrival_warehouse,
                    (array_agg(occurred_at) FILTER (WHERE event = 'arrival'))[1] AS arrival_at,
                    (array_agg(quantity) FILTER (WHERE event = 'arrival'))[1] AS arrival_quantity,
                    (array_agg(source) FILTER (WHERE event = 'arrival'))[1] AS arrival_source,
                    (array_agg(correction) FILTER (WHERE event = 'reversal'))[1] AS reversal,
                    (array_agg(received_at) FILTER (WHERE event = 'reversal'))[1] AS reversed_at,
                    (array_agg(correction) FILTER (WHERE event = 'write_off'))[1] AS write_off,
                    (array_agg(received_at) FILTER (WHERE event = 'write_off'))[1] AS written_off_at
             FROM event_log
             WHERE outcome = 'applied' AND reason IS DISTINCT FROM 'conflicting_duplicate'
               AND event IN ('arrival', 'departure', 'reversal', 'write_off')
               AND ($1::uuid IS NULL OR movement_id > $1)
               AND ($2::uuid IS NULL OR product_id = $2)
               AND ($7::uuid[] IS NULL OR movement_id = ANY($7))
               AND ($8::uuid IS NULL OR movement_id <= $8)
             GROUP BY movement_id
         ) AS m
         WHERE ($3::uuid IS NULL OR m.departure_warehouse = $3 OR m.arrival_warehouse = $3)
           AND ($4::timestamptz IS NULL OR m.departure_at < $4)
           AND ($5::text IS NULL OR $5 = CASE
                   WHEN m.reversed_at IS NOT NULL THEN 'reversed'
                   WHEN m.departure_at IS NOT NULL AND m.arrival_at IS NOT NULL THEN 'completed'
                   WHEN m.departure_at IS NOT NULL AND m.written_off_at IS NOT NULL
                       THEN 'written_off'
                   WHEN m.departure_at IS NOT NULL THEN 'in_transit'
                   ELSE 'arrived' END)
         ORDER BY m.movement_id
         LIMIT $6"#,
        after,
        filter.product_id,
        filter.warehouse_id,
        filter.departed_before,
        status,
        limit,
        ids,
        until,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(HalvesRow::view).collect())
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

/// One applied entry of a pair's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryItem {
    /// Position in the audit log; pass it as `after` for the next page.
    pub seq: i64,
    pub message_id: String,
    /// The CloudEvent `source`.
    pub source: String,
    pub movement_id: Uuid,
    #[schema(value_type = String, example = "arrival")]
    pub event: EventKind,
    /// The event's quantity; a count's is what it found, an adjustment's
    /// the signed change asked for.
    pub quantity: i32,
    /// +quantity for an arrival, -quantity for a departure, and for a
    /// correction what it did to the stock (0 for a count that confirmed it).
    pub delta: i64,
    /// The pair's stock right after this entry.
    pub stock_after: i64,
    /// The event's `data.timestamp`; a correction's request time.
    pub occurred_at: DateTime<Utc>,
    /// When the ledger applied it (its own clock: PostgreSQL's).
    pub applied_at: DateTime<Utc>,
    /// A correction's reason: `cycle_count`, `damaged`, `lost`, `found`,
    /// `correction` or `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A correction's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A correction's reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A pair's applied entries in the order the ledger applied them, after
/// audit position `after`.
pub async fn history(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<HistoryItem>, sqlx::Error> {
    sqlx::query_as!(
        HistoryItem,
        r#"SELECT seq, message_id, source, movement_id, event AS "event: EventKind", quantity,
                  coalesce(delta, CASE WHEN event = 'arrival' THEN quantity::int8
                                       ELSE -quantity::int8 END) AS "delta!",
                  stock_after AS "stock_after!", occurred_at, received_at AS applied_at,
                  correction->>'reason' AS reason, correction->>'note' AS note,
                  correction->>'reference' AS reference
           FROM event_log
           WHERE warehouse_id = $1 AND product_id = $2 AND outcome = 'applied' AND seq > $3
           ORDER BY seq
           LIMIT $4"#,
        warehouse_id,
        product_id,
        after.unwrap_or(0),
        limit,
    )
    .fetch_all(pool)
    .await
}

/// A pair's applied entries before audit position `before` (the newest
/// when `None`), newest first: the most recent stretch of its history.
pub async fn recent_history(
    pool: &PgPool,
    warehouse_id: Uuid,
    product_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<HistoryItem>, sqlx::Error> {
    sqlx::query_as!(
        HistoryItem,
        r#"SELECT seq, message_id, source, movement_id, event AS "event: EventKind", quantity,
                  coalesce(delta, CASE WHEN event = 'arrival' THEN quantity::int8
                                       ELSE -quantity::int8 END) AS "delta!",
                  stock_after AS "stock_after!", occurred_at, received_at AS applied_at,
                  correction->>'reason' AS reason, correction->>'note' AS note,
                  correction->>'reference' AS reference
           FROM event_log
           WHERE warehouse_id = $1 AND product_id = $2 AND outcome = 'applied' AND seq < $3
           ORDER BY seq DESC
           LIMIT $4"#,
        warehouse_id,
        product_id,
        before.unwrap_or(i64::MAX),
        limit,
    )
    .fetch_all(pool)
    .await
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

/// A pair below the low-stock level in force for it now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActiveAlert {
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    /// `depleted` at 0, `low` otherwise.
    #[schema(example = "low")]
    pub level: String,
    /// The stock now.
    pub quantity: i64,
    /// The level in force: the pair's own, else its product's.
    pub threshold: i64,
    /// `pair` or `product`: where the level comes from.
    #[schema(example = "pair")]
    pub threshold_from: String,
    /// The change that took the pair below the mark it is under now (the
    /// level, or 1 when depleted), and when the ledger applied it;
    /// `null` for a pair that has had no change.
    pub crossed_seq: Option<i64>,
    pub crossed_at: Option<DateTime<Utc>>,
}

/// The pairs below their level now, depleted first, then by how long they
/// have been below. The work is bounded by the levels set (an admin's
/// doing) and the holders of the products that have a default level.
pub async fn active_alerts(pool: &PgPool, limit: i64) -> Result<Vec<ActiveAlert>, sqlx::Error> {
    sqlx::query_as!(
        ActiveAlert,
        r#"WITH levels AS (
               SELECT warehouse_id, product_id, low, 'pair' AS src FROM stock_thresholds
               UNION ALL
               SELECT s.warehouse_id, pt.product_id, pt.low, 'product'
               FROM product_thresholds pt
               JOIN stock s ON s.product_id = pt.product_id
               WHERE NOT EXISTS (SELECT 1 FROM stock_thresholds st
                                 WHERE st.product_id = s.product_id
                                   AND st.warehouse_id = s.warehouse_id))
           SELECT l.warehouse_id AS "warehouse_id!", l.product_id AS "product_id!",
                  CASE WHEN s.quantity = 0 THEN 'depleted' ELSE 'low' END AS "level!",
                  s.quantity, l.low AS "threshold!", l.src AS "threshold_from!",
                  c.seq AS "crossed_seq?", c.received_at AS "crossed_at?"
           FROM levels l
           JOIN stock s ON s.warehouse_id = l.warehouse_id AND s.product_id = l.product_id
           LEFT JOIN LATERAL (
               SELECT e.seq, e.received_at FROM event_log e
               WHERE e.product_id = l.product_id AND e.warehouse_id = l.warehouse_id
                 AND e.outcome = 'applied'
                 AND e.seq > coalesce((
                     SELECT max(a.seq) FROM event_log a
                     WHERE a.product_id = l.product_id AND a.warehouse_id = l.warehouse_id
                       AND a.outcome = 'applied'
                       AND a.stock_after >= CASE WHEN s.quantity = 0 THEN 1 ELSE l.low END), 0)
               ORDER BY e.seq
               LIMIT 1) AS c ON true
           WHERE s.quantity < l.low OR s.quantity = 0 AND l.low > 0
           ORDER BY s.quantity = 0 DESC, c.seq NULLS FIRST, l.product_id, l.warehouse_id
           LIMIT $1"#,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// How many events were rejected since `since`, counting back from the
/// newest along the rejections index and stopping at `cap`.
pub async fn rejections_since(
    pool: &PgPool,
    since: DateTime<Utc>,
    cap: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM (
               SELECT 1 FROM event_log
               WHERE outcome = 'rejected' AND received_at > $1
               ORDER BY seq DESC
               LIMIT $2) AS r"#,
        since,
        cap,
    )
    .fetch_one(pool)
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
    reason: Option<RejectReason>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Rejection>, sqlx::Error> {
    // `reason` is set on every rejection (the audit log's CHECK); the
    // decided entry is there only for a conflicting duplicate.
    let rows = sqlx::query_as!(
        RejectionRow,
        r#"SELECT r.seq, r.message_id, r.source, r.movement_id, r.event, r.warehouse_id,
                r.product_id, r.quantity, r.occurred_at, r.reason AS "reason!", r.received_at,
                d.warehouse_id AS "decided_warehouse_id?", d.product_id AS "decided_product_id?",
                d.quantity AS "decided_quantity?", d.occurred_at AS "decided_occurred_at?"
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
           AND ($3::text IS NULL OR r.reason = $3)
         ORDER BY r.seq
         LIMIT $2"#,
        after.unwrap_or(0),
        limit,
        reason.map(RejectReason::as_str),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Rejection::from).collect())
}

/// What an applied correction did, as its entry holds it.
#[derive(Debug, Clone)]
pub struct CorrectionEntry {
    /// Its place in the log.
    pub seq: i64,
    pub delta: i64,
    pub stock_after: i64,
    pub applied_at: DateTime<Utc>,
    /// A count's basis, and the stock right after it, which it corrected
    /// from (its quantity found minus its delta).
    pub basis: Option<(i64, i64)>,
}

/// The applied correction of `id`, if it has one: read along the audit
/// log's deciding index.
pub async fn correction(pool: &PgPool, id: Uuid) -> Result<Option<CorrectionEntry>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT seq, quantity, delta AS "delta!", stock_after AS "stock_after!",
                  received_at, (correction->>'basis_seq')::int8 AS basis_seq
           FROM event_log
           WHERE movement_id = $1 AND outcome = 'applied'
             AND reason IS DISTINCT FROM 'conflicting_duplicate'
             AND event IN ('count', 'adjustment')"#,
        id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| CorrectionEntry {
        seq: r.seq,
        delta: r.delta,
        stock_after: r.stock_after,
        applied_at: r.received_at,
        basis: r
            .basis_seq
            .map(|seq| (seq, i64::from(r.quantity) - r.delta)),
    }))
}

/// One entry of an applied reversal or write-off.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClosingEntry {
    /// Its place in the audit log, and so in the change feed.
    pub seq: i64,
    pub warehouse_id: Uuid,
    /// For a reversal's entry: the half it reverses, `departure` or
    /// `arrival`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "arrival")]
    pub reverses: Option<EventKind>,
    /// What it did to the pair's stock: the departure's quantity back, the
    /// arrival's away; 0 for a write-off.
    pub delta: i64,
    /// The pair's stock right after it.
    pub stock_after: i64,
    pub applied_at: DateTime<Utc>,
}

/// The applied entries of the movement's `kind` of closing (a reversal or
/// a write-off), in the ledger's order: read along the deciding index.
pub async fn closing(
    pool: &PgPool,
    movement_id: Uuid,
    kind: EventKind,
) -> Result<Vec<ClosingEntry>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT seq, warehouse_id, delta AS "delta!", stock_after AS "stock_after!",
                  received_at, correction->>'reverses' AS reverses
           FROM event_log
           WHERE movement_id = $1 AND outcome = 'applied'
             AND reason IS DISTINCT FROM 'conflicting_duplicate' AND event = $2
           ORDER BY seq"#,
        movement_id,
        kind.as_str(),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ClosingEntry {
            seq: r.seq,
            warehouse_id: r.warehouse_id,
            reverses: r.reverses.as_deref().and_then(EventKind::parse),
            delta: r.delta,
            stock_after: r.stock_after,
            applied_at: r.received_at,
        })
        .collect())
}
