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
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::time::Instant;
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
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
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

/// Counts and times every request by method, matched route and status.
async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.ledger.metrics().http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.ledger.pool();
    state.ledger.metrics().db_pool(
        pool.size(),
        pool.num_idle(),
        pool.options().get_max_connections(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.ledger.metrics().render(),
    )
        .into_response()
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"code": "method_not_allowed", "detail": "method not allowed for this endpoint"})),
    )
        .into_response()
}
