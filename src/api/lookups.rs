//! The read endpoints: stock, movements, a warehouse's stock list and the
//! rejected events. Stock and movements read through the cache.

use super::AppState;
use super::error::{AppError, ErrorBody};
use crate::domain::MovementView;
use crate::ledger::reads::{self, Rejection, StockItem};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use uuid::Uuid;

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

/// The stock of one product at one warehouse.
#[derive(Serialize, ToSchema)]
pub struct StockView {
    warehouse_id: Uuid,
    product_id: Uuid,
    /// 0 for a pair the ledger has never seen.
    quantity: i64,
}

/// The answers of both stock routes, as documented.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum StockAnswers {
    /// Current stock; read through the cache
    #[response(status = 200)]
    Found(StockView),
    /// `invalid_uuid`: an id is not a UUID
    #[response(status = 400)]
    BadId(ErrorBody),
    /// `unavailable`, `overloaded` or `timeout`
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `internal`
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// The stock of a product at a warehouse.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{warehouse_id}/products/{product_id}",
    tag = "stock",
    params(
        ("warehouse_id" = Uuid, Path, description = "The warehouse"),
        ("product_id" = Uuid, Path, description = "The product"),
    ),
    responses(StockAnswers)
)]
pub async fn stock(
    State(state): State<AppState>,
    Path((warehouse_id, product_id)): Path<(String, String)>,
) -> Result<Json<StockView>, AppError> {
    let warehouse_id = parse_uuid("warehouse_id", &warehouse_id)?;
    let product_id = parse_uuid("product_id", &product_id)?;
    let cache = state.ledger.cache();
    let pool = state.ledger.pool();
    let (quantity, _) = cache
        .read_through(&cache.stock_key(warehouse_id, product_id), || async {
            Ok(Some(reads::stock(pool, warehouse_id, product_id).await?))
        })
        .await
        .map_err(from_anyhow)?;
    Ok(Json(StockView {
        warehouse_id,
        product_id,
        quantity: quantity.unwrap_or(0),
    }))
}

/// The same answer under the previous service's singular path, kept so that
/// its clients switch without changes.
#[utoipa::path(
    get,
    path = "/api/v1/warehouse/{warehouse_id}/products/{product_id}",
    tag = "stock",
    params(
        ("warehouse_id" = Uuid, Path, description = "The warehouse"),
        ("product_id" = Uuid, Path, description = "The product"),
    ),
    responses(StockAnswers)
)]
pub async fn stock_singular(
    state: State<AppState>,
    ids: Path<(String, String)>,
) -> Result<Json<StockView>, AppError> {
    stock(state, ids).await
}

/// A movement by its `movement_id`: where from, where to, when, how long it
/// took and how much went missing.
#[utoipa::path(
    get,
    path = "/api/v1/movements/{movement_id}",
    tag = "movements",
    params(("movement_id" = Uuid, Path, description = "The movement_id of the events")),
    responses(
        (status = 200, description = "The movement; read through the cache", body = MovementView),
        (status = 400, description = "`invalid_uuid`", body = ErrorBody),
        (status = 404, description = "`not_found`: no applied event has this movement_id", body = ErrorBody),
        (status = 503, description = "`unavailable`, `overloaded` or `timeout`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn movement(
    State(state): State<AppState>,
    Path(movement_id): Path<String>,
) -> Result<Json<MovementView>, AppError> {
    let movement_id = parse_uuid("movement_id", &movement_id)?;
    find_movement(&state, movement_id).await.map(Json)
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
    params(("movement_id" = Uuid, Path, description = "The movement_id of the events")),
    responses(
        (status = 200, description = "Both halves are applied", body = DurationView),
        (status = 400, description = "`invalid_uuid`, or `movement_incomplete` while a half is missing", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`, `overloaded` or `timeout`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn movement_duration(
    State(state): State<AppState>,
    Path(movement_id): Path<String>,
) -> Result<Json<DurationView>, AppError> {
    let movement_id = parse_uuid("movement_id", &movement_id)?;
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
        _ => Err(AppError::bad_request(
            "movement_incomplete",
            format!(
                "movement {movement_id} has no {} yet, so it has no duration",
                if m.departure_time.is_none() {
                    "departure"
                } else {
                    "arrival"
                }
            ),
        )),
    }
}

async fn find_movement(state: &AppState, movement_id: Uuid) -> Result<MovementView, AppError> {
    let cache = state.ledger.cache();
    let pool = state.ledger.pool();
    let (view, _) = cache
        .read_through(&cache.movement_key(movement_id), || async {
            Ok(reads::movement(pool, movement_id).await?)
        })
        .await
        .map_err(from_anyhow)?;
    view.ok_or_else(|| AppError::NotFound(format!("movement {movement_id} not found")))
}

/// `?limit=&after=`, parsed by hand so that bad values get our error shape.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
}

/// Products in stock at a warehouse, by product_id.
#[derive(Serialize, ToSchema)]
pub struct StockPage {
    items: Vec<StockItem>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<Uuid>,
}

/// Rejected events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct RejectionPage {
    items: Vec<Rejection>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// The products in stock (quantity > 0) at a warehouse, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{warehouse_id}/products",
    tag = "stock",
    params(("warehouse_id" = Uuid, Path, description = "The warehouse"), PageParams),
    responses(
        (status = 200, description = "One page, read from PostgreSQL", body = StockPage),
        (status = 400, description = "`invalid_uuid` or `invalid_query`", body = ErrorBody),
        (status = 503, description = "`unavailable`, `overloaded` or `timeout`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn warehouse_stock(
    State(state): State<AppState>,
    Path(warehouse_id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<StockPage>, AppError> {
    let warehouse_id = parse_uuid("warehouse_id", &warehouse_id)?;
    let Query(params) =
        params.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    let limit = parse_limit(params.limit.as_deref())?;
    let after = params
        .after
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_uuid("after", s))
        .transpose()?;
    let items = reads::warehouse_stock(state.ledger.pool(), warehouse_id, after, limit).await?;
    let next_after = next_cursor(&items, limit, |i| i.product_id);
    Ok(Json(StockPage { items, next_after }))
}

/// Rejected events from the audit log, with their reasons, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/rejections",
    tag = "audit",
    params(PageParams),
    responses(
        (status = 200, description = "One page, read from PostgreSQL", body = RejectionPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 503, description = "`unavailable`, `overloaded` or `timeout`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
    )
)]
pub async fn rejections(
    State(state): State<AppState>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<RejectionPage>, AppError> {
    let Query(params) =
        params.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    let limit = parse_limit(params.limit.as_deref())?;
    let after = match params.after.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                format!("after must be a non-negative integer (a previous next_after), got {s:?}"),
            )
        })?),
    };
    let items = reads::rejections(state.ledger.pool(), after, limit).await?;
    let next_after = next_cursor(&items, limit, |r| r.seq);
    Ok(Json(RejectionPage { items, next_after }))
}

/// A full page may have a successor; a short one is the last.
fn next_cursor<T, A>(items: &[T], limit: i64, key: impl Fn(&T) -> A) -> Option<A> {
    if items.len() as i64 == limit {
        items.last().map(key)
    } else {
        None
    }
}

fn parse_limit(raw: Option<&str>) -> Result<i64, AppError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_PAGE),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_query",
                    format!("limit must be an integer from 1 to {MAX_PAGE}, got {s:?}"),
                )
            }),
    }
}

fn parse_uuid(name: &str, raw: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(raw).map_err(|_| {
        AppError::bad_request(
            "invalid_uuid",
            format!("{name} must be a UUID, got {raw:?}"),
        )
    })
}

/// Read-through errors are PostgreSQL errors wrapped by the cache layer.
fn from_anyhow(e: anyhow::Error) -> AppError {
    match e.downcast::<sqlx::Error>() {
        Ok(e) => e.into(),
        Err(e) => AppError::Internal(e),
    }
}
