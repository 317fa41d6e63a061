//! Reads of movements: one movement's view, and pages of them by status,
//! warehouse, product or departure time.

use crate::domain::{
    CorrectionDetails, EventKind, MovementClosing, MovementState, MovementStatus, MovementView,
    Side,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

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
        let mut state = MovementState::of_halves(
            self.product_id,
            [
                (
                    EventKind::Departure,
                    self.departure_warehouse,
                    self.departure_quantity,
                    self.departure_at,
                ),
                (
                    EventKind::Arrival,
                    self.arrival_warehouse,
                    self.arrival_quantity,
                    self.arrival_at,
                ),
            ],
        );
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
