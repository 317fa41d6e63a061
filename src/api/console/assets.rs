//! The console's own stylesheet, script and icon, compiled into the binary
//! so that the console works on a closed network.

use crate::api::state::AppState;
use axum::Router;
use axum::http::header;
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const STYLESHEET: &str = include_str!("../../../assets/console/console.css");
const SCRIPT: &str = include_str!("../../../assets/console/console.js");
const ICON: &str = include_str!("../../../assets/console/icon.svg");

pub const STYLESHEET_PATH: &str = "/console/assets/console.css";
pub const SCRIPT_PATH: &str = "/console/assets/console.js";
pub const ICON_PATH: &str = "/console/assets/icon.svg";

/// The console's own assets, served without a limit as the API's
/// description is: they are constants.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(STYLESHEET_PATH, get(|| asset("text/css", STYLESHEET)))
        .route(SCRIPT_PATH, get(|| asset("text/javascript", SCRIPT)))
        .route(ICON_PATH, get(|| asset("image/svg+xml", ICON)))
        .route("/favicon.ico", get(|| asset("image/svg+xml", ICON)))
        .layer(from_fn(super::headers::secure_headers))
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
