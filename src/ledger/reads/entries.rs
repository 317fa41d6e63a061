//! Reads of single audit entries: a pair's history, the rejections, and
//! what one correction or closing wrote.

use crate::domain::{Differs, EventKind, RejectReason};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

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

/// An applied entry as the history reads it: a half's delta is not stored.
struct HistoryRow {
    seq: i64,
    message_id: String,
    source: String,
    movement_id: Uuid,
    event: EventKind,
    quantity: i32,
    delta: Option<i64>,
    stock_after: i64,
    occurred_at: DateTime<Utc>,
    applied_at: DateTime<Utc>,
    reason: Option<String>,
    note: Option<String>,
    reference: Option<String>,
}

impl From<HistoryRow> for HistoryItem {
    fn from(r: HistoryRow) -> Self {
        HistoryItem {
            seq: r.seq,
            message_id: r.message_id,
            source: r.source,
            movement_id: r.movement_id,
            event: r.event,
            quantity: r.quantity,
            delta: r.event.entry_delta(r.quantity, r.delta, r.seq),
            stock_after: r.stock_after,
            occurred_at: r.occurred_at,
            applied_at: r.applied_at,
            reason: r.reason,
            note: r.note,
            reference: r.reference,
        }
    }
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
    let rows = sqlx::query_as!(
        HistoryRow,
        r#"SELECT seq, message_id, source, movement_id, event AS "event: EventKind", quantity,
                  delta, stock_after AS "stock_after!", occurred_at, received_at AS applied_at,
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
    .await?;
    Ok(rows.into_iter().map(HistoryItem::from).collect())
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
    let rows = sqlx::query_as!(
        HistoryRow,
        r#"SELECT seq, message_id, source, movement_id, event AS "event: EventKind", quantity,
                  delta, stock_after AS "stock_after!", occurred_at, received_at AS applied_at,
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
    .await?;
    Ok(rows.into_iter().map(HistoryItem::from).collect())
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
    #[schema(value_type = String)]
    pub event: EventKind,
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
    event: EventKind,
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
        r#"SELECT r.seq, r.message_id, r.source, r.movement_id, r.event AS "event: EventKind",
                r.warehouse_id,
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
