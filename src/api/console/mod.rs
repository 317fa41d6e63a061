//! The operator console at `/console`: server-rendered pages built from
//! the same ledger reads the API answers with, and one script of our own
//! for what must run in the browser (local times, sortable tables, forms
//! that call the API with the admin token, the live feed).
//!
//! Every asset is compiled into the binary and every page sends a
//! Content-Security-Policy that allows only this origin and no inline
//! script, so the console works on a closed network. maud escapes every
//! value it renders, so an event's `source` or a note shows as text.

mod chart;
mod layout;
mod lists;
mod pages;

use super::AppState;
use super::error::AppError;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Where the console is served.
pub const PATH: &str = "/console";

const STYLESHEET: &str = include_str!("../../../assets/console/console.css");
const SCRIPT: &str = include_str!("../../../assets/console/console.js");
const ICON: &str = include_str!("../../../assets/console/icon.svg");

const STYLESHEET_PATH: &str = "/console/assets/console.css";
const SCRIPT_PATH: &str = "/console/assets/console.js";
const ICON_PATH: &str = "/console/assets/icon.svg";

/// Only this origin, and no inline script or style: whatever an event
/// carries cannot run, and the page loads nothing from elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self'; connect-src 'self'; form-action 'self'; \
                      base-uri 'none'; frame-ancestors 'none'";

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
        .layer(from_fn(secure_headers))
}

/// The console's own assets, served without a limit as the API's
/// description is: they are constants.
pub fn assets() -> Router<AppState> {
    Router::new()
        .route(STYLESHEET_PATH, get(|| asset("text/css", STYLESHEET)))
        .route(SCRIPT_PATH, get(|| asset("text/javascript", SCRIPT)))
        .route(ICON_PATH, get(|| asset("image/svg+xml", ICON)))
        .route("/favicon.ico", get(|| asset("image/svg+xml", ICON)))
        .layer(from_fn(secure_headers))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // They change only with the binary.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A page's failure, shown as a readable page with the status and code
/// the API answers for the same fault.
pub struct PageError(AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, body) = self.0.into_answer();
        let title = status.canonical_reason().unwrap_or("Error");
        let markup = layout::page(
            title,
            maud::html! {
                div.error {
                    p { strong { (status.as_u16()) " " (title) } " · " code { (body.code) } }
                    p { (body.detail) }
                }
                p { a href=(PATH) { "Back to the overview" } }
            },
        );
        (status, markup).into_response()
    }
}

/// A rendered page.
pub type Page = Result<Html<String>, PageError>;

/// Rows on a page of a list.
const ROWS: i64 = 100;

/// An optional query value: to a form, absent and empty are the same.
fn given(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Answers `NOT_FOUND` pages for paths under `/console` that name nothing.
pub async fn not_found() -> PageError {
    PageError(AppError::NotFound("no such console page".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn an_error_page_carries_the_api_code_and_no_markup_from_its_detail() {
        let error = PageError(AppError::bad_request(
            "invalid_uuid",
            "warehouse_id must be a UUID, got \"<b>x</b>\"",
        ));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("invalid_uuid"), "{text}");
        assert!(text.contains("&lt;b&gt;x&lt;/b&gt;"), "{text}");
        assert!(!text.contains("<b>x</b>"), "{text}");
    }
}
