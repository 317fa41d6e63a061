//! `GET /metrics`, and the middleware that feeds its HTTP figures.

use super::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let metrics = &state.metrics;
    let (open, idle, max) = state.ledger.pool_figures();
    metrics.db_pool(open, idle, max);
    // The readiness check, so that alerts can follow it: a scrape every
    // few seconds adds one `SELECT 1` and one Redis PING.
    let components = super::health::check(&state).await;
    metrics.dependency_up("db", components.db == "ok");
    metrics.dependency_up("redis", components.redis == "ok");
    if components.kafka != "disabled" {
        // A stuck consumer reaches the brokers; its own gauge says it is
        // stuck (`kafka_batch_failing_seconds`).
        metrics.dependency_up("kafka", components.kafka != "down");
        metrics.kafka_batch_failing(state.kafka.failing_for());
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
        .into_response()
}

/// Counts and times every request by method, matched route and status.
pub async fn count_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.metrics.http_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The method as a metric label: hyper accepts any token as a method, so a
/// label taken from the request would let callers grow the series without
/// bound. Methods outside the standard set are counted as `other`.
fn method_label(method: &Method) -> &'static str {
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", |standard| standard.as_str())
}
