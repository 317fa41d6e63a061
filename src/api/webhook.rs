//! `POST /api/v1/kafka/webhook`: one movement event over HTTP, answered after
//! its transaction has committed.

use super::error::{AppError, body_rejection};
use super::{AppState, BODY_LIMIT};
use crate::domain::{EventContent, Outcome};
use crate::ingest::webhook::decode;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

#[derive(Serialize)]
struct Processed {
    status: &'static str,
    message_id: String,
    movement_id: Uuid,
    details: Details,
}

#[derive(Serialize)]
struct Details {
    event_type: &'static str,
    warehouse_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    stock_after: i64,
    processed_at: DateTime<Utc>,
}

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
        Outcome::Rejected { reason, .. } => (
            StatusCode::CONFLICT,
            Json(json!({
                "status": "rejected",
                "code": reason.as_str(),
                "detail": reason.describe(),
                "message_id": message_id,
                "movement_id": content.movement_id,
            })),
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
