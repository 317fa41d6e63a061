//! `POST /api/v1/kafka/webhook`: one movement event over HTTP, answered after
//! its transaction has committed.

pub mod contract;

use super::error::{AppError, ErrorBody, body_rejection};
use super::guard::BODY_LIMIT;
use super::state::AppState;
use crate::domain::{DecodeError, EventContent, MovementEvent, Outcome, Transport, binding};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use contract::WebhookMessage;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The answer for an applied event, or for a duplicate of one.
#[derive(Serialize, ToSchema)]
pub struct Processed {
    /// `processed`, or `duplicate` for a re-sent event (applied once only).
    #[schema(example = "processed")]
    status: &'static str,
    message_id: String,
    movement_id: Uuid,
    details: Details,
}

#[derive(Serialize, ToSchema)]
pub struct Details {
    /// `arrival` or `departure`.
    #[schema(example = "arrival")]
    event_type: &'static str,
    warehouse_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    /// The stock of the pair right after this event.
    stock_after: i64,
    /// When the event was applied; for a duplicate, when the original was.
    processed_at: DateTime<Utc>,
}

/// The answer for an event the ledger refused, with the reason it stored.
#[derive(Serialize, ToSchema)]
pub struct Rejected {
    #[schema(example = "rejected")]
    status: &'static str,
    /// `insufficient_stock`, `conflicting_duplicate`, `movement_mismatch`
    /// or `stock_overflow`.
    #[schema(example = "insufficient_stock")]
    code: &'static str,
    detail: &'static str,
    message_id: String,
    movement_id: Uuid,
    /// For `conflicting_duplicate`: the `data` fields that differ from the
    /// event that decided this `movement_id` and `event` (`warehouse_id`,
    /// `product_id`, `quantity`, `timestamp`). Absent for other codes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["quantity"]))]
    differs: Vec<&'static str>,
}

/// Accepts one movement event and answers once its transaction has
/// committed. Structured mode takes the whole CloudEvent as JSON; binary
/// mode takes the attributes as `ce-*` headers and `data` as the body.
#[utoipa::path(
    post,
    path = "/api/v1/kafka/webhook",
    tag = "ingest",
    request_body(
        description = "A CloudEvents 1.0 message of type ru.retail.warehouses.movement, or ru.retail.warehouses.adjustment for a correction",
        content(
            (WebhookMessage = "application/json"),
            (WebhookMessage = "application/cloudevents+json"),
        ),
    ),
    security((), ("webhook_token" = [])),
    responses(
        (status = 200, description = "Applied (`processed`) or already applied (`duplicate`)", body = Processed,
            links(
                ("movement" = (operation_id = "movement",
                    parameters(("movement_id" = "$response.body#/movement_id")),
                    description = "The movement this event is half of")),
                ("movement_duration" = (operation_id = "movement_duration",
                    parameters(("movement_id" = "$response.body#/movement_id")),
                    description = "How long the movement took, once both halves are in")),
                ("stock" = (operation_id = "stock",
                    parameters(
                        ("warehouse_id" = "$response.body#/details/warehouse_id"),
                        ("product_id" = "$response.body#/details/product_id"),
                    ),
                    description = "The stock of the pair this event changed")),
                ("history" = (operation_id = "history",
                    parameters(
                        ("warehouse_id" = "$response.body#/details/warehouse_id"),
                        ("product_id" = "$response.body#/details/product_id"),
                    ),
                    description = "The applied events of that pair")),
                ("product_stock" = (operation_id = "product_stock",
                    parameters(("product_id" = "$response.body#/details/product_id")),
                    description = "The product across warehouses and in transit")),
            )
        ),
        (status = 400, description = "`malformed_json` or `unreadable_body`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: WEBHOOK_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 409, description = "Rejected by the ledger, with the stored reason", body = Rejected,
            links(
                ("rejections" = (operation_id = "rejections",
                    description = "The stored rejections, this one among them")),
            )
        ),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_event`, with every broken field", body = ErrorBody),
        (status = 503, description = "`unavailable` (PostgreSQL down), `overloaded` or `timeout`; safe to retry", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(|r| body_rejection(r, BODY_LIMIT))?;
    let event = decode(&headers, &body)?;
    // The event moves into the batch; keep what the answer needs.
    let message_id = event.message_id.clone();
    let content = event.content;
    let receipt = state.commits.submit(event).await?;
    Ok(match receipt.outcome {
        Outcome::Applied { stock_after } => processed(
            "processed",
            message_id,
            &content,
            stock_after,
            receipt.processed_at,
        ),
        Outcome::Duplicate {
            stock_after,
            processed_at,
        } => processed("duplicate", message_id, &content, stock_after, processed_at),
        Outcome::Rejected {
            reason, differs, ..
        } => (
            StatusCode::CONFLICT,
            Json(Rejected {
                status: "rejected",
                code: reason.as_str(),
                detail: reason.describe(),
                message_id,
                movement_id: content.movement_id,
                differs: differs.names(),
            }),
        )
            .into_response(),
    })
}

fn processed(
    status: &'static str,
    message_id: String,
    c: &EventContent,
    stock_after: i64,
    processed_at: DateTime<Utc>,
) -> Response {
    Json(Processed {
        status,
        message_id,
        movement_id: c.movement_id,
        details: Details {
            event_type: c.kind.as_str(),
            warehouse_id: c.warehouse_id,
            product_id: c.product_id,
            quantity: c.quantity.get(),
            stock_after,
            processed_at,
        },
    })
    .into_response()
}

/// Decodes one event from a request's headers and body, through the
/// HTTP CloudEvents binding (`ce-` headers) of [`crate::domain::binding`].
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<MovementEvent, DecodeError> {
    binding::decode(
        Transport::Http,
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DecodeCode;
    use axum::http::HeaderValue;

    const DATA: &str = r#"{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0","warehouse_id":"25718666-6af6-4281-b5a6-3016e36fa557","timestamp":"2025-02-18T12:12:56Z","event":"departure","product_id":"4705204f-498f-4f96-b4ba-df17fb56bf55","quantity":100}"#;

    fn binary_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-id", "m-1"),
            ("ce-source", "WH-1"),
            ("ce-specversion", "1.0"),
            ("ce-type", "ru.retail.warehouses.movement"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn ce_headers_select_binary_mode() {
        let event = decode(&binary_headers(), DATA.as_bytes()).unwrap();
        assert_eq!(event.message_id, "m-1");
        assert_eq!(event.content.quantity.get(), 100);
    }

    #[test]
    fn other_content_types_are_unsupported() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(
            decode(&h, b"{}").unwrap_err().code(),
            DecodeCode::UnsupportedMediaType
        );
        let mut h = binary_headers();
        h.insert("content-type", HeaderValue::from_static("application/xml"));
        assert_eq!(
            decode(&h, DATA.as_bytes()).unwrap_err().code(),
            DecodeCode::UnsupportedMediaType
        );
    }
}
