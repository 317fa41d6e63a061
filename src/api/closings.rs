//! `POST /api/v1/movements/{movement_id}/reversal` and `/write-off`: what
//! closes a movement early. A reversal gives each applied half an
//! opposite entry, all or none; a write-off records goods lost on the
//! road, moves no stock, and takes the movement out of transit. Both are
//! asked against the movement as PostgreSQL holds it, applied by the
//! ledger, and answered from what it committed.

use super::corrections::SOURCE;
use super::error::{ApiJson, AppError, ErrorBody};
use super::extract::MovementPath;
use super::lookups::ServerErrors;
use super::state::AppState;
use crate::domain::{CorrectionReason, EventKind, MovementView, RejectReason, read_closing};
use crate::ledger::Closed;
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

/// Reads the request and asks the ledger, which expands it into entries
/// against the movement as it stands and answers from what it committed.
async fn close(
    state: &AppState,
    movement_id: Uuid,
    kind: EventKind,
    body: &Value,
) -> Result<Response, AppError> {
    let closing = read_closing(kind, body).map_err(super::corrections::invalid)?;
    match state
        .ledger
        .close(&closing, movement_id, SOURCE, Utc::now())
        .await?
    {
        Closed::Done {
            duplicate,
            entries,
            movement,
        } => Ok(Json(ClosingApplied {
            status: if duplicate { "duplicate" } else { "processed" },
            kind: closing.kind.as_str(),
            id: closing.id,
            entries,
            movement: *movement,
        })
        .into_response()),
        Closed::Refused { reason, differs } => Ok(refused(movement_id, reason, differs.names())),
        Closed::NotFound => Err(AppError::NotFound(format!(
            "movement {movement_id} not found"
        ))),
    }
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
