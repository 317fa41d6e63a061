//! `POST /api/v1/adjustments`: a count or an adjustment of one pair's
//! stock, applied by the ledger in the same batches as movements, and
//! answered once it has committed.

use super::error::{ApiJson, AppError, ErrorBody};
use super::lookups::ServerErrors;
use super::state::AppState;
use crate::domain::{CorrectionReason, MovementEvent, Outcome, ParseError, RejectReason};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use uuid::Uuid;

/// The CloudEvents-style `source` the audit log records for corrections
/// made over this API.
pub const SOURCE: &str = "warehouse-stock:api";

/// Declares one kind of adjustment request: the fields every correction
/// has, and those of its kind between them. These types only describe the
/// contract; the request is read by `MovementEvent::from_adjustment`.
macro_rules! request {
    ($(#[$($doc:tt)*])* $name:ident { $($(#[$($attr:tt)*])* $field:ident: $ty:ty,)* }) => {
        $(#[$($doc)*])*
        #[derive(Deserialize, Serialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct $name {
            /// The idempotency key: the same id with the same content again is a
            /// duplicate; with other content, `conflicting_duplicate`.
            adjustment_id: Uuid,
            warehouse_id: Uuid,
            product_id: Uuid,
            $($(#[$($attr)*])* $field: $ty,)*
            /// Compare-and-set: refused with `stale_quantity` unless the stock is
            /// this when the correction is applied.
            #[schema(minimum = 0, maximum = 9223372036854775807i64)]
            expected_quantity: Option<i64>,
            reason: CorrectionReason,
            /// At most 500 characters, without U+0000.
            #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
            note: Option<String>,
            /// At most 500 characters, without U+0000.
            #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
            reference: Option<String>,
        }
    };
}

request! {
    /// A count: the quantity found on the shelf.
    CountRequest {
        #[schema(inline)]
        kind: CountKind,
        /// The quantity counted.
        #[schema(minimum = 0, maximum = 2147483647, example = 42)]
        quantity: i64,
        /// The `seq` of the last change the counter had seen for this pair (a
        /// stock answer's `last_seq`, or the history's): the correction is then
        /// `quantity` minus the stock right after that change, applied on top
        /// of everything since. Without it the count sets the stock.
        #[schema(minimum = 0, maximum = 9223372036854775807i64)]
        basis_seq: Option<i64>,
    }
}

request! {
    /// An adjustment: a signed change of the stock.
    ChangeRequest {
        #[schema(inline)]
        kind: AdjustmentKind,
        /// The change: positive adds, negative takes away; never 0.
        #[schema(inline)]
        quantity: SignedChange,
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[allow(dead_code)]
enum CountKind {
    #[serde(rename = "count")]
    Count,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[allow(dead_code)]
enum AdjustmentKind {
    #[serde(rename = "adjustment")]
    Adjustment,
}

/// A whole number from -2147483647 to 2147483647, other than 0. The
/// schema is written by hand because the derive cannot bound a variant.
#[derive(Deserialize, Serialize)]
#[allow(dead_code)]
enum SignedChange {}

impl utoipa::PartialSchema for SignedChange {
    fn schema() -> RefOr<Schema> {
        let side = |least: i64, most: i64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(least))
                .maximum(Some(most))
        };
        OneOfBuilder::new()
            .item(side(1, i64::from(i32::MAX)))
            .item(side(-i64::from(i32::MAX), -1))
            .description(Some(
                "The change: positive adds, negative takes away; never 0",
            ))
            .into()
    }
}

impl ToSchema for SignedChange {}

/// A count or an adjustment, told apart by `kind`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AdjustmentRequest {
    Count(CountRequest),
    Adjustment(ChangeRequest),
}

/// The answer for an applied correction, or for a duplicate of one (which
/// answers as the first did).
#[derive(Serialize, ToSchema)]
pub struct AdjustmentApplied {
    /// `processed`, or `duplicate` for a re-sent correction (applied once).
    #[schema(example = "processed")]
    status: &'static str,
    adjustment_id: Uuid,
    /// `count` or `adjustment`.
    #[schema(example = "count")]
    kind: &'static str,
    /// The entry's place in the audit log, and so in the change feed.
    seq: i64,
    /// What it did to the stock: 0 for a count that confirmed it.
    delta: i64,
    /// The pair's stock right after it.
    stock_after: i64,
    applied_at: DateTime<Utc>,
    /// A count's basis, as asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    basis_seq: Option<i64>,
    /// The stock right after the basis, which the count corrected from.
    #[serde(skip_serializing_if = "Option::is_none")]
    basis_quantity: Option<i64>,
}

/// The answer for a correction the ledger refused, with the stored reason.
#[derive(Serialize, ToSchema)]
pub struct AdjustmentRejected {
    #[schema(example = "rejected")]
    status: &'static str,
    /// `insufficient_stock`, `stale_quantity`, `conflicting_duplicate` or
    /// `stock_overflow`.
    #[schema(example = "stale_quantity")]
    code: &'static str,
    detail: &'static str,
    adjustment_id: Uuid,
    /// For `conflicting_duplicate`: what differs from the correction that
    /// decided this id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    differs: Vec<&'static str>,
    /// For `stale_quantity`: the pair's stock now.
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<i64>,
}

/// Records a count (the quantity found) or an adjustment (a signed change)
/// of a pair's stock, with a reason. It applies now, on top of everything
/// before it, and never takes stock below 0.
#[utoipa::path(
    post,
    path = "/api/v1/adjustments",
    tag = "corrections",
    request_body = AdjustmentRequest,
    security((), ("webhook_token" = [])),
    responses(
        (status = 200, description = "Applied (`processed`) or already applied (`duplicate`)", body = AdjustmentApplied),
        (status = 400, description = "`malformed_json` or `unreadable_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: WEBHOOK_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 409, description = "Refused by the ledger, with the stored reason", body = AdjustmentRejected),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_event`, with every broken field", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn adjust(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, AppError> {
    let event = MovementEvent::from_adjustment(&body, SOURCE, Utc::now()).map_err(invalid)?;
    let (id, kind) = (event.content.movement_id, event.content.kind);
    let found = i64::from(event.content.quantity.get());
    let basis_seq = event.correction.as_ref().and_then(|d| d.basis_seq);
    let receipt = state.commits.submit(event).await?;
    let status = match receipt.outcome {
        Outcome::Applied { .. } => "processed",
        Outcome::Duplicate { .. } => "duplicate",
        Outcome::Rejected {
            reason, differs, ..
        } => {
            let answer = AdjustmentRejected {
                status: "rejected",
                code: reason.as_str(),
                detail: reason.describe(),
                adjustment_id: id,
                differs: differs.names(),
                // The stock the refusal was decided on, as the batch left it.
                stock: (reason == RejectReason::StaleQuantity).then_some(receipt.stock),
            };
            return Ok((StatusCode::CONFLICT, Json(answer)).into_response());
        }
    };
    // The receipt carries the entry: the correction's own, or the one a
    // duplicate repeats.
    let change = receipt.change.ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "correction {id} committed without its entry"
        ))
    })?;
    Ok(Json(AdjustmentApplied {
        status,
        adjustment_id: id,
        kind: kind.as_str(),
        seq: change.seq,
        delta: change.delta,
        stock_after: change.quantity,
        applied_at: change.changed_at,
        basis_seq,
        // A count corrected from the stock right after its basis: what it
        // found minus what it did.
        basis_quantity: basis_seq.map(|_| found - change.delta),
    })
    .into_response())
}

/// 422 `invalid_event`, naming the request an adjustment.
pub(super) fn invalid(e: ParseError) -> AppError {
    match e {
        ParseError::Invalid(errors) => {
            let fields: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            AppError::InvalidEvent {
                detail: format!("invalid adjustment: {}", fields.join("; ")),
                errors,
            }
        }
        malformed => malformed.into(),
    }
}
