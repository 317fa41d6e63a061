//! The OpenAPI description of the API, generated from the handlers' own
//! annotations and types, and the two pages that render it: Swagger UI at
//! `/docs` and ReDoc at `/redoc`, as the earlier service had. Their assets
//! are compiled in, so nothing is fetched at build or run time.

use super::error::ErrorBody;
use super::{changes, closings, corrections, health, levels, lookups, ops, webhook};
use crate::domain::{FieldError, MovementStatus, MovementView};
use crate::ledger::reads::{HistoryItem, Rejection, StockItem, WarehouseQuantity};
use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use std::sync::{Arc, LazyLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, OpenApi as Spec, PathItem, ResponseBuilder, path::OperationBuilder,
};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the UI is served.
pub const DOCS_PATH: &str = "/docs";
/// Where the description is served.
pub const SPEC_PATH: &str = "/openapi.json";
/// Where ReDoc's page is served; its script is at `{REDOC_PATH}/redoc.standalone.js`.
pub const REDOC_PATH: &str = "/redoc";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "warehouse-stock",
        description = "Exact, never-negative warehouse stock from CloudEvents movement events, \
                       with stock and movement lookups read through Redis."
    ),
    paths(
        webhook::receive,
        corrections::adjust,
        closings::reverse,
        closings::write_off,
        lookups::stock,
        lookups::stock_singular,
        lookups::stock_task_path,
        lookups::history,
        lookups::product_stock,
        lookups::stock_lookup,
        lookups::warehouse_stock,
        lookups::movement,
        lookups::movement_task_path,
        lookups::movements,
        lookups::movement_duration,
        lookups::rejections,
        changes::changes,
        levels::active_alerts,
        levels::pair_threshold,
        levels::set_pair_threshold,
        levels::delete_pair_threshold,
        levels::product_threshold,
        levels::set_product_threshold,
        levels::delete_product_threshold,
        health::live,
        health::ready,
        health::live_legacy,
        health::ready_legacy,
        ops::metrics,
        openapi_json,
        redoc_page,
        redoc_script,
    ),
    components(schemas(
        ErrorBody, FieldError, MovementView, MovementStatus, StockItem, Rejection,
        webhook::contract::MovementMessage, webhook::contract::MovementData,
        webhook::contract::AdjustmentMessage, webhook::contract::WebhookMessage,
        webhook::contract::EventTime, lookups::StockView, HistoryItem, lookups::ProductStock,
        WarehouseQuantity, crate::ledger::log::Change, changes::ChangePage, levels::ThresholdBody,
        levels::ActiveAlerts, crate::feed::active::ActiveAlert, crate::domain::RejectReason,
        levels::PairThreshold, levels::ProductThreshold, corrections::AdjustmentRequest,
        corrections::CountRequest, corrections::ChangeRequest, corrections::AdjustmentApplied,
        corrections::AdjustmentRejected, crate::domain::CorrectionReason,
        closings::ReversalRequest, closings::WriteOffRequest, closings::ClosingApplied,
        closings::ClosingRejected, crate::ledger::reads::ClosingEntry,
        crate::domain::MovementClosing
    )),
    modifiers(&Extras),
    tags(
        (name = "ingest", description = "Movement events over HTTP"),
        (name = "stock", description = "Stock figures"),
        (name = "movements", description = "Transfers between warehouses"),
        (name = "audit", description = "The audit log"),
        (name = "changes", description = "The stock-change feed and low-stock levels"),
        (name = "corrections", description = "Counts and adjustments of stock, reversals and write-offs of movements"),
        (name = "operations", description = "Health, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// What the derive cannot express: the bearer scheme of the webhook and the
/// UI's own page.
struct Extras;

impl Modify for Extras {
    fn modify(&self, spec: &mut Spec) {
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "webhook_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Required only when WEBHOOK_TOKEN is set"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "ADMIN_TOKEN; without that setting, admin writes answer 403 \
                         (401 to a request that presents no token)",
                    ))
                    .build(),
            ),
        );
        let page = OperationBuilder::new()
            .tag("operations")
            .summary(Some("This description, rendered by Swagger UI"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The Swagger UI page")
                    .content("text/html", ContentBuilder::new().build())
                    .build(),
            )
            .build();
        spec.paths
            .paths
            .insert(DOCS_PATH.into(), PathItem::new(HttpMethod::Get, page));
        webhook::contract::describe_extensions(spec);
        // The derive fills the licence from the package's, which names
        // none: an empty one would show as a bare "License:" line.
        if spec
            .info
            .license
            .as_ref()
            .is_some_and(|l| l.name.is_empty())
        {
            spec.info.license = None;
        }
    }
}

/// The policy of the description's pages: scripts only from this origin
/// and never inline. ReDoc and Swagger UI set inline styles, draw icons
/// from data: URLs, and ReDoc searches in a worker it starts from a blob.
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; \
                           style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                           font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
                           form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Sends [`DOCS_POLICY`] with an answer of the description's pages. It
/// layers those routes only: a layer over every route cost the cached
/// lookups a tenth of their rate.
pub async fn docs_policy(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_POLICY),
    );
    response
}

static SPEC: LazyLock<Arc<Spec>> = LazyLock::new(|| Arc::new(ApiDoc::openapi()));

/// The OpenAPI 3 description of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Json<Arc<Spec>> {
    Json(SPEC.clone())
}

/// ReDoc's page. Only local addresses: the script is this binary's own, and
/// no web fonts are linked, so the page works on a closed network.
const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html>
  <head>
    <title>warehouse-stock API</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>body { margin: 0; padding: 0; }</style>
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/redoc/redoc.standalone.js"></script>
  </body>
</html>
"#;

/// ReDoc 2.5.4's standalone bundle, vendored under `assets/` (MIT).
const REDOC_SCRIPT: &[u8] = include_bytes!("../../assets/redoc-2.5.4/redoc.standalone.js");

/// This description, rendered by ReDoc.
#[utoipa::path(
    get,
    path = "/redoc",
    tag = "operations",
    responses((status = 200, description = "The ReDoc page", content_type = "text/html"))
)]
pub async fn redoc_page() -> Html<&'static str> {
    Html(REDOC_HTML)
}

/// The script of the ReDoc page.
#[utoipa::path(
    get,
    path = "/redoc/redoc.standalone.js",
    tag = "operations",
    responses((status = 200, description = "ReDoc's standalone bundle", content_type = "text/javascript"))
)]
pub async fn redoc_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // It changes only with the binary; a day keeps reloads cheap.
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        REDOC_SCRIPT,
    )
}

/// The Swagger UI, pointed at [`SPEC_PATH`].
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new(DOCS_PATH).config(Config::from(SPEC_PATH))
}
