//! The OpenAPI description of the API, generated from the handlers' own
//! annotations and types, and the two pages that render it: Swagger UI at
//! `/docs` and ReDoc at `/redoc`, as the earlier service had. Their assets
//! are compiled in, so nothing is fetched at build or run time.

use super::error::ErrorBody;
use super::{changes, health, lookups, ops, webhook};
use crate::domain::EVENT_TIME_MILLIS;
use crate::domain::{FieldError, MovementStatus, MovementView};
use crate::ledger::reads::{HistoryItem, Rejection, StockItem, WarehouseQuantity};
use axum::Json;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use serde::Serialize;
use std::sync::{Arc, LazyLock};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, OpenApi as Spec, PathItem, RefOr, ResponseBuilder,
    path::OperationBuilder,
};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};
use uuid::Uuid;

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
        changes::pair_threshold,
        changes::set_pair_threshold,
        changes::delete_pair_threshold,
        changes::product_threshold,
        changes::set_product_threshold,
        changes::delete_product_threshold,
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
        MovementMessage, MovementData, EventTime, lookups::StockView, HistoryItem, lookups::ProductStock,
        WarehouseQuantity, crate::ledger::log::Change, changes::ChangePage, changes::ThresholdBody,
        changes::PairThreshold, changes::ProductThreshold
    )),
    modifiers(&Extras),
    tags(
        (name = "ingest", description = "Movement events over HTTP"),
        (name = "stock", description = "Stock figures"),
        (name = "movements", description = "Transfers between warehouses"),
        (name = "audit", description = "The audit log"),
        (name = "changes", description = "The stock-change feed and low-stock levels"),
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
                        "ADMIN_TOKEN; without that setting, admin writes answer 403",
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
        describe_extensions(spec);
    }
}

/// Extension attributes: any other member of the message, kept in the
/// audit log as JSON, so no string in them, name or value, may hold U+0000.
fn describe_extensions(spec: &mut Spec) {
    let components = spec.components.get_or_insert_with(Default::default);
    let value_ref = || RefOr::Ref(Ref::from_schema_name("ExtensionValue"));
    let no_nul = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(NO_NUL_PATTERN))
            .build()
    };
    let value = OneOfBuilder::new()
        .description(Some("Any JSON value without U+0000 in its strings"))
        .item(no_nul())
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(ArrayBuilder::new().items(value_ref()))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(value_ref()))
                .property_names(Some(no_nul())),
        );
    components
        .schemas
        .insert("ExtensionValue".into(), Schema::OneOf(value.build()).into());
    if let Some(RefOr::T(Schema::Object(message))) = components.schemas.get_mut("MovementMessage") {
        message.additional_properties = Some(Box::new(value_ref().into()));
        message.property_names = Some(Box::new(Schema::Object(no_nul())));
        // The derive takes only a literal pattern; these are shared.
        for name in ["id", "source"] {
            if let Some(RefOr::T(Schema::Object(field))) = message.properties.get_mut(name) {
                field.pattern = Some(TEXT_PATTERN.into());
            }
        }
    }
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

/// The webhook's message as documented. The parser reads the JSON by hand
/// (see `domain::event`) so that it can name every broken field; this type
/// only describes the contract.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MovementMessage {
    /// Unique per message; re-sending the same event keeps it. Not blank,
    /// and without U+0000.
    #[schema(example = "4f7c6a9e-0b7d-4f7e-8a35-0d5d3f5f2a11")]
    id: String,
    /// Who sent it, such as a warehouse system. Not blank, and without
    /// U+0000.
    #[schema(example = "warehouse-7")]
    source: String,
    #[schema(inline)]
    specversion: SpecVersion,
    #[schema(inline)]
    r#type: MovementType,
    /// Epoch milliseconds (integer) or an RFC 3339 timestamp.
    #[schema(example = 1737370800000i64)]
    time: Option<EventTime>,
    /// `application/json`, in any case, optionally with parameters.
    #[schema(
        pattern = r"^\s*[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn]\s*(;[\s\S]*)?$",
        example = "application/json"
    )]
    datacontenttype: Option<String>,
    data: MovementData,
}

/// Not blank (some character that is not Unicode White_Space, which is
/// what the parser trims), and no U+0000 anywhere (PostgreSQL cannot store
/// it). The class is spelled out because regex engines disagree on `\s`.
const TEXT_PATTERN: &str = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";
/// No U+0000 anywhere.
const NO_NUL_PATTERN: &str = r"^[^\u0000]*$";

/// The CloudEvents version: only 1.0.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum SpecVersion {
    #[serde(rename = "1.0")]
    V1,
}

/// The one event type this service takes.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
enum MovementType {
    #[serde(rename = "ru.retail.warehouses.movement")]
    Movement,
}

/// Whether goods arrived at the warehouse or departed from it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum EventName {
    Arrival,
    Departure,
}

/// The CloudEvent `time` in either form the service accepts: epoch
/// milliseconds or an RFC 3339 timestamp, for the same span of years. The
/// schema is written by hand because the derive cannot bound a variant.
#[derive(Serialize)]
#[allow(dead_code)]
pub enum EventTime {}

impl utoipa::PartialSchema for EventTime {
    fn schema() -> RefOr<Schema> {
        let millis = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(*EVENT_TIME_MILLIS.start()))
            .maximum(Some(*EVENT_TIME_MILLIS.end()))
            .description(Some("Epoch milliseconds, for the years 0000 to 9999"));
        let timestamp = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An RFC 3339 timestamp"));
        OneOfBuilder::new()
            .item(millis)
            .item(timestamp)
            .description(Some(
                "Epoch milliseconds (integer) or an RFC 3339 timestamp",
            ))
            .into()
    }
}

impl ToSchema for EventTime {}

/// What happened: goods arrived at or departed from a warehouse.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MovementData {
    /// Shared by the departure and the arrival of one transfer.
    movement_id: Uuid,
    warehouse_id: Uuid,
    product_id: Uuid,
    #[schema(inline, example = "departure")]
    event: EventName,
    /// RFC 3339 with an offset; stored to the microsecond.
    #[schema(value_type = String, format = DateTime, example = "2025-01-20T10:00:00Z")]
    timestamp: String,
    /// 1 to 2147483647.
    #[schema(minimum = 1, maximum = 2147483647, example = 10)]
    quantity: i32,
}
