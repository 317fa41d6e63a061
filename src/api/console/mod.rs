//! The operator console at `/console`: server-rendered pages built from
//! the same ledger reads the API answers with, and one script of our own
//! for what must run in the browser (local times, sortable tables, forms
//! that call the API with the admin token, the live feed).
//!
//! Every asset is compiled into the binary and every page sends a
//! Content-Security-Policy that allows only this origin and no inline
//! script, so the console works on a closed network. maud escapes every
//! value it renders, so an event's `source` or a note shows as text.

mod assets;
mod chart;
mod headers;
mod layout;
mod lists;
mod page;
mod pages;

pub use assets::router as assets;
pub use page::PATH;
use page::PageError;

use super::error::AppError;
use super::state::AppState;
use axum::Router;
use axum::middleware::from_fn;
use axum::routing::get;

/// The pages, each a read of the ledger: they count against the read
/// limit as the API's lookups do.
pub fn pages() -> Router<AppState> {
    Router::new()
        .route(PATH, get(pages::overview))
        .route("/console/search", get(pages::search))
        .route("/console/warehouses/{warehouse_id}", get(pages::warehouse))
        .route(
            "/console/warehouses/{warehouse_id}/products.csv",
            get(pages::warehouse_csv),
        )
        .route(
            "/console/warehouses/{warehouse_id}/products/{product_id}",
            get(pages::pair),
        )
        .route("/console/products/{product_id}", get(pages::product))
        .route("/console/movements", get(lists::movements))
        .route("/console/movements/{movement_id}", get(lists::movement))
        .route("/console/rejections", get(lists::rejections))
        .route("/console/changes", get(lists::changes))
        .route("/console/alerts", get(lists::alerts))
        .route("/console/{*rest}", get(not_found))
        .layer(from_fn(headers::secure_headers))
}

/// Answers `NOT_FOUND` pages for paths under `/console` that name nothing.
pub async fn not_found() -> PageError {
    PageError::from(AppError::NotFound("no such console page".into()))
}
