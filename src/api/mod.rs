//! The HTTP API: routes, shared state and the middleware around them.

mod error;
mod health;
mod lookups;
mod webhook;

pub use error::AppError;

use crate::ingest::GroupCommit;
use crate::ingest::kafka::KafkaStatus;
use crate::ledger::Ledger;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

/// The largest webhook body accepted: an event is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub commits: GroupCommit,
    pub kafka: KafkaStatus,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/kafka/webhook", post(webhook::receive))
        .route("/api/v1/movements/{movement_id}", get(lookups::movement))
        .route(
            "/api/v1/movements/{movement_id}/duration",
            get(lookups::movement_duration),
        )
        // The seed's singular path, kept for its clients, and the plural one
        // that matches the list endpoint.
        .route(
            "/api/v1/warehouse/{warehouse_id}/products/{product_id}",
            get(lookups::stock),
        )
        .route(
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}",
            get(lookups::stock),
        )
        .route(
            "/api/v1/warehouses/{warehouse_id}/products",
            get(lookups::warehouse_stock),
        )
        .route("/api/v1/rejections", get(lookups::rejections))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/api/v1/admin/liveness", get(health::live))
        .route("/api/v1/admin/readiness", get(health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("unmatched");
                tracing::info_span!("http", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"code": "method_not_allowed", "detail": "method not allowed for this endpoint"})),
    )
        .into_response()
}
