//! The read endpoints: stock (now, as of a moment, in bulk, across
//! warehouses), a pair's history, movements, a warehouse's stock list and
//! the rejected events. Each asks the ledger, which owns every read and
//! its cache.

use super::error::{ApiJson, AppError, ErrorBody};
use super::extract::{
    Limit, MovementPath, Page, PairPath, ProductPath, SeqPage, SeqPageParams, UuidPage,
    UuidPageParams, WarehousePath, next_cursor, query_extractor,
};
use super::state::AppState;
use crate::domain::{MovementStatus, MovementView, RejectReason};
use crate::ledger::reads::{HistoryItem, MovementFilter, Rejection, StockItem, WarehouseQuantity};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, IntoResponses, ToSchema};
use uuid::Uuid;

/// The most pairs one bulk lookup may ask for.
pub const MAX_LOOKUP: usize = 1000;

/// The bulk lookup's route, which counts against the read bound by its
/// size.
pub const LOOKUP_PATH: &str = "/api/v1/stock/lookup";

/// The stock of one product at one warehouse.
#[derive(Serialize, ToSchema)]
pub struct StockView {
    warehouse_id: Uuid,
    product_id: Uuid,
    /// 0 for a pair the ledger has never seen.
    quantity: i64,
    /// The `seq` of the change this figure stands on: the pair's last
    /// change (by then, with `as_of`), `null` while it has had none. A
    /// counter passes it as a count's `basis_seq`.
    last_seq: Option<i64>,
    /// The moment asked for with `?as_of=`; absent for the current stock.
    #[serde(skip_serializing_if = "Option::is_none")]
    as_of: Option<DateTime<Utc>>,
}

/// `?as_of=`, parsed by hand so that a bad value gets our error shape.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockParams {
    /// An RFC 3339 moment: answer the stock as it stood then, on the
    /// ledger's clock (when it applied each event). Answered once final
    /// (503 `as_of_not_final` if not within 2 s; 400 `as_of_in_future`
    /// past that). Not cached.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-02-18T12:00:00Z")]
    as_of: Option<String>,
}

query_extractor! {
    /// The stock lookups' query, parsed.
    StockQuery from StockParams { as_of: Option<DateTime<Utc>> }
}

/// What any lookup may answer when the service, not the request, is at
/// fault; each route lists its own answers beside these.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum ServerErrors {
    /// `unavailable`, `overloaded` or `timeout`
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `internal`
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// The answers of both stock routes, as documented.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum StockAnswers {
    /// Current stock; read through the cache
    #[response(status = 200)]
    Found(StockView),
    /// `invalid_uuid` (an id is not a UUID), `invalid_query`,
    /// `as_of_in_future`, or `as_of_too_far_back` (the pair changed more
    /// often since `as_of` than one read walks back, `READ_SCAN_LIMIT`)
    #[response(status = 400)]
    BadId(ErrorBody),
    /// `unavailable`, `overloaded`, `timeout`, or `as_of_not_final` (no
    /// answer yet for a moment that a batch still running could be
    /// applied at or before)
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `internal`
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// The stock of a product at a warehouse, now or as of a moment.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{warehouse_id}/products/{product_id}",
    tag = "stock",
    params(PairPath, StockParams),
    responses(StockAnswers)
)]
pub async fn stock(
    State(state): State<AppState>,
    PairPath {
        warehouse_id,
        product_id,
    }: PairPath,
    StockQuery { as_of }: StockQuery,
) -> Result<Json<StockView>, AppError> {
    let figure = match as_of {
        Some(t) => {
            settled(&state, t).await?;
            state
                .ledger
                .stock_as_of(warehouse_id, product_id, t)
                .await?
                .ok_or_else(too_far_back)?
        }
        None => state.ledger.stock(warehouse_id, product_id).await?,
    };
    Ok(Json(StockView {
        warehouse_id,
        product_id,
        quantity: figure.quantity,
        last_seq: figure.last_seq,
        as_of,
    }))
}

/// Declares a route that answers exactly as `$target` does, under a path
/// that earlier clients use: `$target`'s documentation with another path.
macro_rules! alias {
    ($(#[$doc:meta])* $name:ident = $target:ident, $path:tt, $tag:tt,
     params($($params:tt)*), responses($answers:ident), ($($arg:ident: $ty:ty),+) -> $out:ty) => {
        $(#[$doc])*
        #[utoipa::path(get, path = $path, tag = $tag, params($($params)*), responses($answers))]
        pub async fn $name(state: State<AppState>, $($arg: $ty),+) -> Result<Json<$out>, AppError> {
            $target(state, $($arg),+).await
        }
    };
}

alias! {
    /// The same answer under the previous service's singular path, kept so that
    /// its clients switch without changes.
    stock_singular = stock, "/api/v1/warehouse/{warehouse_id}/products/{product_id}", "stock",
    params(PairPath, StockParams),
    responses(StockAnswers),
    (ids: PairPath, query: StockQuery) -> StockView
}

alias! {
    /// The same answer under the path the original task names.
    stock_task_path = stock, "/api/warehouses/{warehouse_id}/products/{product_id}", "stock",
    params(PairPath, StockParams),
    responses(StockAnswers),
    (ids: PairPath, query: StockQuery) -> StockView
}

/// The answers of both movement routes, as documented (never built, so
/// the size of its variants costs nothing).
#[derive(IntoResponses)]
#[allow(dead_code, clippy::large_enum_variant)]
enum MovementAnswers {
    /// The movement; read through the cache
    #[response(status = 200)]
    Found(MovementView),
    /// `invalid_uuid`
    #[response(status = 400)]
    BadId(ErrorBody),
    /// `not_found`: no applied event has this movement_id
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// `unavailable`, `overloaded` or `timeout`
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `internal`
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// A movement by its `movement_id`: where from, where to, when, how long it
/// took and how much went missing.
#[utoipa::path(
    get,
    path = "/api/v1/movements/{movement_id}",
    tag = "movements",
    params(MovementPath),
    responses(MovementAnswers)
)]
pub async fn movement(
    State(state): State<AppState>,
    MovementPath { movement_id }: MovementPath,
) -> Result<Json<MovementView>, AppError> {
    find_movement(&state, movement_id).await.map(Json)
}

alias! {
    /// The same answer under the path the original task names.
    movement_task_path = movement, "/api/movements/{movement_id}", "movements",
    params(MovementPath),
    responses(MovementAnswers),
    (id: MovementPath) -> MovementView
}

/// `?status=&warehouse_id=&product_id=&departed_before=&limit=&after=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MovementParams {
    /// `in_transit`, `arrived`, `completed`, `reversed` or `written_off`.
    #[param(value_type = Option<MovementStatus>)]
    status: Option<String>,
    /// Movements with this warehouse at either end.
    #[param(value_type = Option<Uuid>)]
    warehouse_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    product_id: Option<String>,
    /// An RFC 3339 moment: only movements that departed (by the
    /// departure's `data.timestamp`) before it, for shipments out too long.
    #[param(value_type = Option<String>, format = DateTime)]
    departed_before: Option<String>,
    /// Page size, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_after` of the previous page.
    #[param(value_type = Option<Uuid>)]
    after: Option<String>,
}

query_extractor! {
    /// The movement list's query, parsed.
    MovementQuery from MovementParams {
        status: Option<MovementStatus>,
        warehouse_id: Option<Uuid>,
        product_id: Option<Uuid>,
        departed_before: Option<DateTime<Utc>>,
        limit: Limit,
        after: Option<Uuid>,
    }
}

/// Movements, by movement_id.
#[derive(Serialize, ToSchema)]
pub struct MovementPage {
    items: Vec<MovementView>,
    /// Pass as `after` for the next page; absent on the last page. A page
    /// walks a bounded stretch of the log (`READ_SCAN_LIMIT` entries), so
    /// under a filter it may hold fewer than `limit` movements, or none,
    /// and still have a next one.
    next_after: Option<Uuid>,
}

/// Movements by status, warehouse, product and departure time, a page at a
/// time: for example the shipments that left and never arrived.
#[utoipa::path(
    get,
    path = "/api/v1/movements",
    tag = "movements",
    params(MovementParams),
    responses(
        (status = 200, description = "One page by movement_id, read from PostgreSQL", body = MovementPage),
        (status = 400, description = "`invalid_uuid` or `invalid_query`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn movements(
    State(state): State<AppState>,
    query: MovementQuery,
) -> Result<Json<MovementPage>, AppError> {
    let filter = MovementFilter {
        status: query.status,
        warehouse_id: query.warehouse_id,
        product_id: query.product_id,
        departed_before: query.departed_before,
    };
    let (Limit(limit), after) = (query.limit, query.after);
    let page = state.ledger.movements(filter, after, limit).await?;
    let next_after = next_cursor(&page.items, limit, |m| m.movement_id).or(page.resume_after);
    Ok(Json(MovementPage {
        items: page.items,
        next_after,
    }))
}

/// How long a completed movement took.
#[derive(Serialize, ToSchema)]
pub struct DurationView {
    movement_id: Uuid,
    duration_seconds: f64,
    departure_time: DateTime<Utc>,
    arrival_time: DateTime<Utc>,
}

/// How long a movement took, from departure to arrival.
#[utoipa::path(
    get,
    path = "/api/v1/movements/{movement_id}/duration",
    tag = "movements",
    params(MovementPath),
    responses(
        (status = 200, description = "Both halves are applied", body = DurationView),
        (status = 400, description = "`invalid_uuid`, or `movement_incomplete` while a half is missing (400, as the service this one replaces answers)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn movement_duration(
    State(state): State<AppState>,
    MovementPath { movement_id }: MovementPath,
) -> Result<Json<DurationView>, AppError> {
    let m = find_movement(&state, movement_id).await?;
    match (m.duration_seconds, m.departure_time, m.arrival_time) {
        (Some(duration_seconds), Some(departure_time), Some(arrival_time)) => {
            Ok(Json(DurationView {
                movement_id,
                duration_seconds,
                departure_time,
                arrival_time,
            }))
        }
        // 400, not 409: the service this one replaces answers 400 here,
        // and its clients check for that.
        _ => Err(AppError::BadRequest {
            code: "movement_incomplete",
            detail: format!(
                "movement {movement_id} has no {} yet, so it has no duration",
                if m.departure_time.is_none() {
                    "departure"
                } else {
                    "arrival"
                }
            ),
        }),
    }
}

async fn find_movement(state: &AppState, movement_id: Uuid) -> Result<MovementView, AppError> {
    state
        .ledger
        .movement(movement_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("movement {movement_id} not found")))
}

/// Products in stock at a warehouse, by product_id.
#[derive(Serialize, ToSchema)]
pub struct StockPage {
    pub(super) items: Vec<StockItem>,
    /// Pass as `after` for the next page; absent on the last page.
    pub(super) next_after: Option<Uuid>,
}

/// Rejected events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct RejectionPage {
    items: Vec<Rejection>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// The products in stock (quantity > 0) at a warehouse, a page at a time,
/// now or as of a moment; as JSON, or as CSV for `Accept: text/csv`.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{warehouse_id}/products",
    tag = "stock",
    params(WarehousePath, UuidPageParams, StockParams),
    responses(
        (status = 200, description = "One page, read from PostgreSQL. As CSV, a header row \
            `warehouse_id,product_id,quantity` and a row per product; a `Link` header \
            (`rel=\"next\"`) names the next page",
            content((StockPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`invalid_uuid`, `invalid_query`, `as_of_in_future`, or `as_of_too_far_back` \
            (a pair of the page changed more often since `as_of` than a page walks back: \
            `READ_SCAN_LIMIT` divided by `limit`)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn warehouse_stock(
    State(state): State<AppState>,
    WarehousePath { warehouse_id }: WarehousePath,
    Page { limit, after }: UuidPage,
    StockQuery { as_of }: StockQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let page = stock_page(&state, warehouse_id, as_of, after, limit).await?;
    if !wants_csv(&headers) {
        return Ok(Json(page).into_response());
    }
    let mut response = (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        stock_csv(warehouse_id, &page.items),
    )
        .into_response();
    if let Some(next) = page.next_after {
        let mut link =
            format!("</api/v1/warehouses/{warehouse_id}/products?limit={limit}&after={next}");
        if let Some(t) = as_of {
            link.push_str(&format!(
                "&as_of={}",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ));
        }
        link.push_str(">; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// One page of a warehouse's stock list, now or as of a moment: what the
/// API and the console's page both show.
pub(super) async fn stock_page(
    state: &AppState,
    warehouse_id: Uuid,
    as_of: Option<DateTime<Utc>>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<StockPage, AppError> {
    let items = match as_of {
        Some(t) => {
            settled(state, t).await?;
            state
                .ledger
                .warehouse_stock_as_of(warehouse_id, t, after, limit)
                .await?
                .ok_or_else(too_far_back)?
        }
        None => {
            state
                .ledger
                .warehouse_stock(warehouse_id, after, limit)
                .await?
        }
    };
    let next_after = next_cursor(&items, limit, |i| i.product_id);
    Ok(StockPage { items, next_after })
}

/// Whether the caller asked for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// A stock list as CSV: a header row, then a row per product. Every field
/// is a UUID or a number, so nothing needs quoting.
pub(super) fn stock_csv(warehouse_id: Uuid, items: &[StockItem]) -> String {
    let mut out = String::from("warehouse_id,product_id,quantity\r\n");
    for item in items {
        out.push_str(&format!(
            "{warehouse_id},{},{}\r\n",
            item.product_id, item.quantity
        ));
    }
    out
}

/// `?reason=` of the rejections.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RejectionParams {
    /// Only the rejections with this reason.
    #[param(value_type = Option<RejectReason>)]
    reason: Option<String>,
}

query_extractor! {
    /// The rejections' query, parsed.
    RejectionQuery from RejectionParams { reason: Option<RejectReason> }
}

/// Rejected events from the audit log, with their reasons, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/rejections",
    tag = "audit",
    params(SeqPageParams, RejectionParams),
    responses(
        (status = 200, description = "One page, read from PostgreSQL", body = RejectionPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn rejections(
    State(state): State<AppState>,
    Page { limit, after }: SeqPage,
    RejectionQuery { reason }: RejectionQuery,
) -> Result<Json<RejectionPage>, AppError> {
    let items = state.ledger.rejections(reason, after, limit).await?;
    let next_after = next_cursor(&items, limit, |r| r.seq);
    Ok(Json(RejectionPage { items, next_after }))
}

/// One page of a pair's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    items: Vec<HistoryItem>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// How a pair's stock came to be: its applied events in the order the
/// ledger applied them, each with the stock right after it.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{warehouse_id}/products/{product_id}/history",
    tag = "stock",
    params(PairPath, SeqPageParams),
    responses(
        (status = 200, description = "One page, oldest first, read from PostgreSQL", body = HistoryPage),
        (status = 400, description = "`invalid_uuid` or `invalid_query`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn history(
    State(state): State<AppState>,
    PairPath {
        warehouse_id,
        product_id,
    }: PairPath,
    Page { limit, after }: SeqPage,
) -> Result<Json<HistoryPage>, AppError> {
    let items = state
        .ledger
        .history(warehouse_id, product_id, after, limit)
        .await?;
    let next_after = next_cursor(&items, limit, |i| i.seq);
    Ok(Json(HistoryPage { items, next_after }))
}

/// A product across warehouses: the total, what is on the road, and one
/// page of the warehouses holding it.
#[derive(Serialize, ToSchema)]
pub struct ProductStock {
    product_id: Uuid,
    /// The sum over every warehouse.
    total: i64,
    /// The departure quantities of movements that departed and have not
    /// arrived.
    in_transit: i64,
    /// Warehouses holding more than 0, by warehouse_id.
    items: Vec<WarehouseQuantity>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<Uuid>,
}

/// A product across warehouses: the total, what is on the road, and the
/// warehouses holding it.
#[utoipa::path(
    get,
    path = "/api/v1/products/{product_id}/stock",
    tag = "stock",
    params(ProductPath, UuidPageParams),
    responses(
        (status = 200, description = "The totals and one page of warehouses, by warehouse_id, read from PostgreSQL", body = ProductStock),
        (status = 400, description = "`invalid_uuid` or `invalid_query`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn product_stock(
    State(state): State<AppState>,
    ProductPath { product_id }: ProductPath,
    Page { limit, after }: UuidPage,
) -> Result<Json<ProductStock>, AppError> {
    let figures = state.ledger.product_stock(product_id, after, limit).await?;
    let next_after = next_cursor(&figures.items, limit, |i| i.warehouse_id);
    Ok(Json(ProductStock {
        product_id,
        total: figures.total,
        in_transit: figures.in_transit,
        items: figures.items,
        next_after,
    }))
}

/// One pair of a bulk lookup.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
pub struct Pair {
    warehouse_id: Uuid,
    product_id: Uuid,
}

/// `POST /api/v1/stock/lookup`: 1 to 1000 pairs; duplicates are allowed.
#[derive(Deserialize, ToSchema)]
pub struct LookupRequest {
    #[schema(min_items = 1, max_items = 1000)]
    items: Vec<Pair>,
}

/// One figure of a bulk lookup.
#[derive(Serialize, ToSchema)]
pub struct LookupItem {
    warehouse_id: Uuid,
    product_id: Uuid,
    /// 0 for a pair the ledger has never seen.
    quantity: i64,
    /// The `seq` of the pair's last change; `null` while it has had none.
    last_seq: Option<i64>,
}

/// The figures, in the order asked.
#[derive(Serialize, ToSchema)]
pub struct LookupAnswer {
    items: Vec<LookupItem>,
}

/// The current stock of many pairs at once, in the order asked: one Redis
/// round trip reads them all, one PostgreSQL statement reads the misses.
#[utoipa::path(
    post,
    path = "/api/v1/stock/lookup",
    tag = "stock",
    request_body = LookupRequest,
    responses(
        (status = 200, description = "One figure per pair asked, in order; read through the cache", body = LookupAnswer),
        (status = 400, description = "`malformed_json`, `invalid_body` (a field missing, an id not a UUID) or `invalid_query` (no pairs)", body = ErrorBody),
        (status = 413, description = "`too_many_items` (over 1000 pairs) or `payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn stock_lookup(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LookupRequest>,
) -> Result<Json<LookupAnswer>, AppError> {
    let asked = request.items.len();
    if asked > MAX_LOOKUP {
        return Err(AppError::TooManyItems {
            what: "pairs",
            limit: MAX_LOOKUP,
            got: asked,
        });
    }
    if asked == 0 {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("items must hold 1 to {MAX_LOOKUP} pairs, got none"),
        ));
    }
    let pairs: Vec<(Uuid, Uuid)> = request
        .items
        .iter()
        .map(|p| (p.warehouse_id, p.product_id))
        .collect();
    let figures = state.ledger.stock_many(&pairs).await?;
    let items = request
        .items
        .into_iter()
        .zip(figures)
        .map(|(p, figure)| LookupItem {
            warehouse_id: p.warehouse_id,
            product_id: p.product_id,
            quantity: figure.quantity,
            last_seq: figure.last_seq,
        })
        .collect();
    Ok(Json(LookupAnswer { items }))
}

/// How long an `as_of` read waits for its moment to become final: a
/// moment just past is final within a tick or two of the horizon.
const SETTLE_WITHIN: Duration = Duration::from_secs(2);

/// Waits until no later commit can be applied at or before `t`, so that
/// the answer about to be read never changes afterwards; 503
/// `as_of_not_final` if that takes longer than [`SETTLE_WITHIN`], and 400
/// `as_of_in_future` at once for a moment further ahead than that.
async fn settled(state: &AppState, t: DateTime<Utc>) -> Result<(), AppError> {
    if t > Utc::now() + SETTLE_WITHIN {
        return Err(AppError::bad_request(
            "as_of_in_future",
            format!(
                "as_of is in the future: {}",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
        ));
    }
    if state.changes.settles(t, SETTLE_WITHIN).await {
        Ok(())
    } else {
        Err(AppError::NotFinal)
    }
}

/// What an `as_of` answers when a pair changed more often since that
/// moment than one read may walk back (`READ_SCAN_LIMIT`).
fn too_far_back() -> AppError {
    AppError::bad_request(
        "as_of_too_far_back",
        "a pair changed more often since as_of than one read walks back; \
         ask a later as_of, a smaller limit, or page the pair's history",
    )
}
