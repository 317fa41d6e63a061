//! `POST /api/v1/movements/{movement_id}/reversal` and `/write-off`: what
//! closes a movement early. A reversal gives each applied half an
//! opposite entry, all or none; a write-off records goods lost on the
//! road, moves no stock, and takes the movement out of transit. Both are
//! asked against the movement as PostgreSQL holds it, applied by the
//! ledger in the same batches as movements, and answered once committed.

use super::corrections::SOURCE;
use super::error::{ApiJson, AppError, ErrorBody};
use super::extract::MovementPath;
use super::lookups::ServerErrors;
use super::state::AppState;
use crate::domain::{
    Closing, CorrectionReason, EventKind, Halves, MovementEvent, MovementView, Outcome, Quantity,
    RejectReason, read_closing,
};
use crate::ledger::reads::ClosingEntry;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

/// How often a closing is asked again when a half of its movement was
/// applied between reading the movement and deciding: a movement has two
/// halves, so twice is enough, and once more is a margin.
const ATTEMPTS: usize = 3;

/// A reversal: the movement was recorded in error.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ReversalRequest {
    /// The idempotency key: the same id with the same content again is a
    /// duplicate; with another reason, note or reference,
    /// `conflicting_duplicate`.
    reversal_id: Uuid,
    reason: CorrectionReason,
    /// At most 500 characters, without U+0000.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    note: Option<String>,
    /// At most 500 characters, without U+0000.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    reference: Option<String>,
}

/// A write-off: the goods of a movement in transit were lost on the road.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct WriteOffRequest {
    /// The idempotency key, as a reversal's.
    write_off_id: Uuid,
    reason: CorrectionReason,
    /// At most 500 characters, without U+0000.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    note: Option<String>,
    /// At most 500 characters, without U+0000.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    reference: Option<String>,
}

/// The answer for an applied reversal or write-off, or for a duplicate of
/// one (which answers as the first did).
#[derive(Serialize, ToSchema)]
pub struct ClosingApplied {
    /// `processed`, or `duplicate` for a re-sent one (applied once).
    #[schema(example = "processed")]
    status: &'static str,
    /// `reversal` or `write_off`.
    #[schema(example = "reversal")]
    kind: &'static str,
    /// The `reversal_id` or `write_off_id`.
    id: Uuid,
    /// Its entries in the audit log: one per half a reversal reversed,
    /// one for a write-off.
    entries: Vec<ClosingEntry>,
    /// The movement now.
    movement: MovementView,
}

/// The answer for a reversal or write-off the ledger refused.
#[derive(Serialize, ToSchema)]
pub struct ClosingRejected {
    #[schema(example = "rejected")]
    status: &'static str,
    /// `insufficient_stock`, `stock_overflow`, `movement_reversed`,
    /// `movement_not_in_transit`, `movement_changed` or
    /// `conflicting_duplicate`.
    #[schema(example = "movement_not_in_transit")]
    code: &'static str,
    detail: &'static str,
    movement_id: Uuid,
    /// For `conflicting_duplicate`: what differs from the one that decided
    /// this id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    differs: Vec<&'static str>,
}

/// The answers of both closing routes, as documented (never built).
#[derive(IntoResponses)]
#[allow(dead_code, clippy::large_enum_variant)]
enum ClosingAnswers {
    /// Applied (`processed`) or already applied (`duplicate`)
    #[response(status = 200)]
    Applied(ClosingApplied),
    /// `invalid_uuid`, `malformed_json` or `unreadable_body`
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `unauthorized`: WEBHOOK_TOKEN is set and the bearer token is missing or wrong
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// `not_found`: no half of this movement has been applied
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Refused; nothing is recorded, so once the reason is gone the same request may apply
    #[response(status = 409)]
    Refused(ClosingRejected),
    /// `payload_too_large`
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// `unsupported_media_type`: not `application/json`
    #[response(status = 415)]
    NotJson(ErrorBody),
    /// `invalid_event`, with every broken field
    #[response(status = 422)]
    Invalid(ErrorBody),
}

/// Reverses a movement recorded in error: the departure's quantity goes
/// back to its warehouse and the arrival's leaves its destination, all or
/// nothing. A half that arrives later is refused as `movement_reversed`.
#[utoipa::path(
    post,
    path = "/api/v1/movements/{movement_id}/reversal",
    tag = "corrections",
    params(MovementPath),
    request_body = ReversalRequest,
    security((), ("webhook_token" = [])),
    responses(ClosingAnswers, ServerErrors)
)]
pub async fn reverse(
    State(state): State<AppState>,
    MovementPath { movement_id }: MovementPath,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, AppError> {
    close(&state, movement_id, EventKind::Reversal, &body).await
}

/// Writes off a movement in transit whose goods were lost on the road:
/// stock does not change (they already left), and it no longer counts as
/// in transit. If its arrival comes after all, it applies and completes
/// the movement, which keeps the write-off in its record.
#[utoipa::path(
    post,
    path = "/api/v1/movements/{movement_id}/write-off",
    tag = "corrections",
    params(MovementPath),
    request_body = WriteOffRequest,
    security((), ("webhook_token" = [])),
    responses(ClosingAnswers, ServerErrors)
)]
pub async fn write_off(
    State(state): State<AppState>,
    MovementPath { movement_id }: MovementPath,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, AppError> {
    close(&state, movement_id, EventKind::WriteOff, &body).await
}

/// Reads the request, then asks the ledger against the movement as it
/// stands, again if a half of it was applied meanwhile.
async fn close(
    state: &AppState,
    movement_id: Uuid,
    kind: EventKind,
    body: &Value,
) -> Result<Response, AppError> {
    let closing = read_closing(kind, body).map_err(super::corrections::invalid)?;
    let not_found = || AppError::NotFound(format!("movement {movement_id} not found"));
    for _ in 0..ATTEMPTS {
        let movement = state
            .ledger
            .movement_now(movement_id)
            .await?
            .ok_or_else(not_found)?;
        let entries = entries(&closing, &movement);
        if entries.is_empty() {
            // A write-off of a movement whose departure is unseen.
            return Ok(refused(
                movement_id,
                RejectReason::MovementNotInTransit,
                Vec::new(),
            ));
        }
        let receipts = state.commits.submit_together(entries).await?;
        let outcome = receipts.first().map(|r| r.outcome);
        let status = match outcome {
            Some(Outcome::Applied { .. }) => "processed",
            Some(Outcome::Duplicate { .. }) => "duplicate",
            Some(Outcome::Rejected {
                reason: RejectReason::MovementChanged,
                ..
            }) => continue,
            Some(Outcome::Rejected {
                reason: RejectReason::MovementNotFound,
                ..
            }) => return Err(not_found()),
            Some(Outcome::Rejected {
                reason, differs, ..
            }) => return Ok(refused(movement_id, reason, differs.names())),
            None => return Err(AppError::Internal(anyhow::anyhow!("no receipt"))),
        };
        return answer(state, movement_id, &closing, status).await;
    }
    Ok(refused(
        movement_id,
        RejectReason::MovementChanged,
        Vec::new(),
    ))
}

/// The closing's entries against `movement` as read.
fn entries(closing: &Closing, movement: &MovementView) -> Vec<MovementEvent> {
    let side = |warehouse: Option<Uuid>, quantity: Option<i32>| {
        Some((warehouse?, Quantity::parse(i64::from(quantity?)).ok()?))
    };
    let halves = Halves {
        movement_id: movement.movement_id,
        product_id: movement.product_id,
        departure: side(movement.source_warehouse_id, movement.departure_quantity),
        arrival: side(movement.destination_warehouse_id, movement.arrival_quantity),
    };
    closing.entries(&halves, SOURCE, Utc::now())
}

/// 200 with the closing's entries and the movement as it now stands.
async fn answer(
    state: &AppState,
    movement_id: Uuid,
    closing: &Closing,
    status: &'static str,
) -> Result<Response, AppError> {
    let entries = state.ledger.closing(movement_id, closing.kind).await?;
    let movement = state.ledger.movement_now(movement_id).await?;
    let movement = movement.ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "movement {movement_id} closed but not in the log"
        ))
    })?;
    Ok(Json(ClosingApplied {
        status,
        kind: closing.kind.as_str(),
        id: closing.id,
        entries,
        movement,
    })
    .into_response())
}

fn refused(movement_id: Uuid, reason: RejectReason, differs: Vec<&'static str>) -> Response {
    let detail = match reason {
        RejectReason::InsufficientStock => {
            "the arrival's warehouse no longer holds the quantity that arrived"
        }
        other => other.describe(),
    };
    let answer = ClosingRejected {
        status: "rejected",
        code: reason.as_str(),
        detail,
        movement_id,
        differs,
    };
    (StatusCode::CONFLICT, Json(answer)).into_response()
}
