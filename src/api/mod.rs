//! The HTTP API: the route table, shared state and the middleware around
//! the routes.

mod changes;
mod closings;
mod console;
mod corrections;
mod docs;
mod error;
mod extract;
mod guard;
mod health;
mod levels;
mod lookups;
mod ops;
mod state;
mod webhook;

pub use console::PATH as CONSOLE_PATH;
pub use docs::{ApiDoc, DOCS_PATH, REDOC_PATH, SPEC_PATH};
pub use error::{AppError, UNAVAILABLE_DETAIL};
pub use state::AppState;

use crate::config::HttpSettings;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, Response};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodRouter, delete, get, post, put};
use guard::{BODY_LIMIT, Bound, Guard, LOOKUP_BODY_LIMIT};
use std::time::Duration;
use tower_http::trace::TraceLayer;
use tracing::Span;

/// Who may call a route, and under which limits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Health, metrics and the API description: never refused, so probes
    /// and scrapes keep working under load.
    Operations,
    /// Lookups: bounded concurrency.
    Read,
    /// The feed's long poll: its own bounded concurrency, since a poll
    /// holds its place for as long as it waits.
    Poll,
    /// The webhook: bounded concurrency and, when configured, the token.
    Write,
    /// Settings writes: bounded concurrency and the admin token, always.
    Admin,
}

struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
    access: Access,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        handler,
        access,
    }
}

/// Every route the server answers besides the Swagger UI. This one table
/// builds the router, and the API description is checked against it.
#[allow(
    clippy::too_many_lines,
    reason = "a declaration table: one entry per route"
)]
fn table() -> Vec<Route> {
    use Access::*;
    vec![
        route(
            Method::POST,
            "/api/v1/kafka/webhook",
            Write,
            post(webhook::receive),
        ),
        route(
            Method::POST,
            "/api/v1/adjustments",
            Write,
            post(corrections::adjust),
        ),
        route(
            Method::POST,
            "/api/v1/movements/{movement_id}/reversal",
            Write,
            post(closings::reverse),
        ),
        route(
            Method::POST,
            "/api/v1/movements/{movement_id}/write-off",
            Write,
            post(closings::write_off),
        ),
        route(
            Method::GET,
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}",
            Read,
            get(lookups::stock),
        ),
        // The previous service's singular path, kept for its clients.
        route(
            Method::GET,
            "/api/v1/warehouse/{warehouse_id}/products/{product_id}",
            Read,
            get(lookups::stock_singular),
        ),
        // The path the original task names.
        route(
            Method::GET,
            "/api/warehouses/{warehouse_id}/products/{product_id}",
            Read,
            get(lookups::stock_task_path),
        ),
        route(
            Method::GET,
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}/history",
            Read,
            get(lookups::history),
        ),
        route(
            Method::GET,
            "/api/v1/products/{product_id}/stock",
            Read,
            get(lookups::product_stock),
        ),
        // 1,000 pairs take about 90 KiB of JSON, over the webhook's limit.
        route(
            Method::POST,
            lookups::LOOKUP_PATH,
            Read,
            post(lookups::stock_lookup).layer(DefaultBodyLimit::max(LOOKUP_BODY_LIMIT)),
        ),
        route(
            Method::GET,
            "/api/v1/warehouses/{warehouse_id}/products",
            Read,
            get(lookups::warehouse_stock),
        ),
        route(
            Method::GET,
            "/api/v1/movements/{movement_id}",
            Read,
            get(lookups::movement),
        ),
        route(
            Method::GET,
            "/api/v1/movements",
            Read,
            get(lookups::movements),
        ),
        // The path the original task names.
        route(
            Method::GET,
            "/api/movements/{movement_id}",
            Read,
            get(lookups::movement_task_path),
        ),
        route(
            Method::GET,
            "/api/v1/movements/{movement_id}/duration",
            Read,
            get(lookups::movement_duration),
        ),
        route(
            Method::GET,
            "/api/v1/rejections",
            Read,
            get(lookups::rejections),
        ),
        route(Method::GET, changes::PATH, Poll, get(changes::changes)),
        route(
            Method::GET,
            "/api/v1/alerts/active",
            Read,
            get(levels::active_alerts),
        ),
        route(
            Method::GET,
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
            Read,
            get(levels::pair_threshold),
        ),
        route(
            Method::PUT,
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
            Admin,
            put(levels::set_pair_threshold),
        ),
        route(
            Method::DELETE,
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
            Admin,
            delete(levels::delete_pair_threshold),
        ),
        route(
            Method::GET,
            "/api/v1/products/{product_id}/threshold",
            Read,
            get(levels::product_threshold),
        ),
        route(
            Method::PUT,
            "/api/v1/products/{product_id}/threshold",
            Admin,
            put(levels::set_product_threshold),
        ),
        route(
            Method::DELETE,
            "/api/v1/products/{product_id}/threshold",
            Admin,
            delete(levels::delete_product_threshold),
        ),
        route(Method::GET, "/health/live", Operations, get(health::live)),
        route(Method::GET, "/health/ready", Operations, get(health::ready)),
        route(
            Method::GET,
            "/api/v1/admin/liveness",
            Operations,
            get(health::live_legacy),
        ),
        route(
            Method::GET,
            "/api/v1/admin/readiness",
            Operations,
            get(health::ready_legacy),
        ),
        route(Method::GET, "/metrics", Operations, get(ops::metrics)),
        route(Method::GET, SPEC_PATH, Operations, get(docs::openapi_json)),
        route(
            Method::GET,
            REDOC_PATH,
            Operations,
            get(docs::redoc_page).layer(from_fn(docs::docs_policy)),
        ),
        route(
            Method::GET,
            "/redoc/redoc.standalone.js",
            Operations,
            get(docs::redoc_script).layer(from_fn(docs::docs_policy)),
        ),
    ]
}

/// `(method, path)` of every route the server answers, the Swagger UI page
/// included, as written in the route table.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    let mut routes: Vec<_> = table().into_iter().map(|r| (r.method, r.path)).collect();
    routes.push((Method::GET, DOCS_PATH));
    routes
}

pub fn router(state: AppState, http: &HttpSettings) -> Router {
    let guard = Guard::new(http);
    let mut router = Router::new();
    for Route {
        path,
        handler,
        access,
        ..
    } in table()
    {
        let limit = |bound| from_fn_with_state(guard.limit(bound), guard::limit_concurrency);
        let handler = match access {
            Access::Operations => handler,
            Access::Read => handler.layer(limit(Bound::Reads)),
            Access::Poll => handler.layer(limit(Bound::Polls)),
            Access::Write => handler
                .layer(from_fn_with_state(guard.clone(), guard::require_token))
                .layer(limit(Bound::Writes)),
            Access::Admin => handler
                .layer(from_fn_with_state(guard.clone(), guard::require_admin))
                .layer(limit(Bound::Writes)),
        };
        router = router.route(path, handler);
    }
    let read_limit = from_fn_with_state(guard.limit(Bound::Reads), guard::limit_concurrency);
    router
        .merge(console::pages().layer(read_limit))
        .merge(console::assets())
        .merge(Router::from(docs::swagger_ui()).layer(from_fn(docs::docs_policy)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(guard, guard::time_limit))
        .layer(from_fn_with_state(state.clone(), ops::count_request))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        route,
                        status = tracing::field::Empty,
                        latency_ms = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|response: &Response<_>, latency: Duration, span: &Span| {
                    span.record("status", response.status().as_u16());
                    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
                    // One line per request is an access log; it is DEBUG so
                    // that the default level stays quiet at 10k requests/s.
                    tracing::debug!("finished");
                })
                .on_failure(()),
        )
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed("method not allowed for this endpoint".into())
}
