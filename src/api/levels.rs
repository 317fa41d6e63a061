//! The low-stock levels that the feed's alerts compare against: reading
//! and setting them, and the pairs standing below them now.

use super::error::{ApiJson, AppError, ErrorBody};
use super::extract::{Limit, PairPath, ProductPath, query_extractor};
use super::lookups::ServerErrors;
use super::state::AppState;
use crate::feed::active::ActiveAlert;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use uuid::Uuid;

/// `?limit=` of the active alerts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// How many pairs to answer, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

query_extractor! {
    /// The active alerts' query, parsed.
    AlertQuery from AlertParams { limit: Limit }
}

/// The pairs below their low-stock level now.
#[derive(Serialize, ToSchema)]
pub struct ActiveAlerts {
    /// Depleted first, then the longest below first.
    items: Vec<ActiveAlert>,
}

/// The pairs below the low-stock level in force for them now (`low`, or
/// `depleted` at 0), with the change that took each there. Only pairs
/// with a level (their own or their product's) are listed.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/active",
    tag = "changes",
    params(AlertParams),
    responses(
        (status = 200, description = "The pairs below their level, read from PostgreSQL", body = ActiveAlerts),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn active_alerts(
    State(state): State<AppState>,
    AlertQuery {
        limit: Limit(limit),
    }: AlertQuery,
) -> Result<Json<ActiveAlerts>, AppError> {
    let items = state.levels.active_alerts(&state.ledger, limit).await?;
    Ok(Json(ActiveAlerts { items }))
}

/// What an admin write answers when it may not run; every admin route
/// lists these beside its own answers.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum AdminRefusals {
    /// `unauthorized`: no or a wrong admin token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// `forbidden`: the service has no ADMIN_TOKEN
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// A low-stock level to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdBody {
    /// Stock below this is low: the feed emits `stock.low` when a change
    /// takes it there, and `stock.restored` when one brings it back.
    #[schema(value_type = i64, minimum = 0, example = 10)]
    low: serde_json::Number,
}

/// The low-stock level in effect for a pair.
#[derive(Serialize, ToSchema)]
pub struct PairThreshold {
    warehouse_id: Uuid,
    product_id: Uuid,
    low: i64,
    /// `pair` for the pair's own level, `product` for its product's
    /// default.
    #[schema(example = "pair")]
    source: &'static str,
}

/// A product's default low-stock level.
#[derive(Serialize, ToSchema)]
pub struct ProductThreshold {
    product_id: Uuid,
    low: i64,
}

/// `low`: a whole number (`10.0` counts, as JSON Schema says), 0 or more.
fn parse_low(body: &ThresholdBody) -> Result<i64, AppError> {
    // 2^63 as a float: every whole float below it is an exact i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    body.low
        .as_i64()
        .or_else(|| {
            body.low
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < LIMIT)
                .map(|f| f as i64)
        })
        .filter(|low| *low >= 0)
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_body",
                format!("low must be a whole number, 0 or more, got {}", body.low),
            )
        })
}

/// The low-stock level in effect for a pair: its own, else its product's.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
    tag = "changes",
    params(PairPath),
    responses(
        (status = 200, description = "The level in effect", body = PairThreshold),
        (status = 400, description = "`invalid_uuid`", body = ErrorBody),
        (status = 404, description = "`not_found`: neither the pair nor its product has a level", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn pair_threshold(
    State(state): State<AppState>,
    PairPath {
        warehouse_id,
        product_id,
    }: PairPath,
) -> Result<Json<PairThreshold>, AppError> {
    match state.levels.level(warehouse_id, product_id).await? {
        Some(level) => Ok(Json(PairThreshold {
            warehouse_id,
            product_id,
            low: level.low,
            source: level.from.as_str(),
        })),
        None => Err(AppError::NotFound(
            "neither this pair nor its product has a low-stock level".into(),
        )),
    }
}

/// Sets a pair's own low-stock level, which wins over its product's.
#[utoipa::path(
    put,
    path = "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
    tag = "changes",
    params(PairPath),
    request_body = ThresholdBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The level is set", body = PairThreshold),
        (status = 400, description = "`invalid_uuid`, `malformed_json` or `invalid_body`", body = ErrorBody),
        AdminRefusals,
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn set_pair_threshold(
    State(state): State<AppState>,
    PairPath {
        warehouse_id,
        product_id,
    }: PairPath,
    ApiJson(body): ApiJson<ThresholdBody>,
) -> Result<Json<PairThreshold>, AppError> {
    let low = parse_low(&body)?;
    state.levels.set_pair(warehouse_id, product_id, low).await?;
    Ok(Json(PairThreshold {
        warehouse_id,
        product_id,
        low,
        source: "pair",
    }))
}

/// Removes a pair's own level; its product's default, if any, applies.
#[utoipa::path(
    delete,
    path = "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
    tag = "changes",
    params(PairPath),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_uuid`", body = ErrorBody),
        AdminRefusals,
        (status = 404, description = "`not_found`: the pair has no level of its own", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn delete_pair_threshold(
    State(state): State<AppState>,
    PairPath {
        warehouse_id,
        product_id,
    }: PairPath,
) -> Result<StatusCode, AppError> {
    if state.levels.delete_pair(warehouse_id, product_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound(
            "this pair has no low-stock level of its own".into(),
        ))
    }
}

/// A product's default low-stock level.
#[utoipa::path(
    get,
    path = "/api/v1/products/{product_id}/threshold",
    tag = "changes",
    params(ProductPath),
    responses(
        (status = 200, description = "The product's default level", body = ProductThreshold),
        (status = 400, description = "`invalid_uuid`", body = ErrorBody),
        (status = 404, description = "`not_found`: the product has no default level", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn product_threshold(
    State(state): State<AppState>,
    ProductPath { product_id }: ProductPath,
) -> Result<Json<ProductThreshold>, AppError> {
    match state.levels.product(product_id).await? {
        Some(low) => Ok(Json(ProductThreshold { product_id, low })),
        None => Err(AppError::NotFound(
            "this product has no default low-stock level".into(),
        )),
    }
}

/// Sets a product's default low-stock level in every warehouse; a pair's
/// own level wins over it.
#[utoipa::path(
    put,
    path = "/api/v1/products/{product_id}/threshold",
    tag = "changes",
    params(ProductPath),
    request_body = ThresholdBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The level is set", body = ProductThreshold),
        (status = 400, description = "`invalid_uuid`, `malformed_json` or `invalid_body`", body = ErrorBody),
        AdminRefusals,
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `application/json`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn set_product_threshold(
    State(state): State<AppState>,
    ProductPath { product_id }: ProductPath,
    ApiJson(body): ApiJson<ThresholdBody>,
) -> Result<Json<ProductThreshold>, AppError> {
    let low = parse_low(&body)?;
    state.levels.set_product(product_id, low).await?;
    Ok(Json(ProductThreshold { product_id, low }))
}

/// Removes a product's default level.
#[utoipa::path(
    delete,
    path = "/api/v1/products/{product_id}/threshold",
    tag = "changes",
    params(ProductPath),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_uuid`", body = ErrorBody),
        AdminRefusals,
        (status = 404, description = "`not_found`: the product has no default level", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn delete_product_threshold(
    State(state): State<AppState>,
    ProductPath { product_id }: ProductPath,
) -> Result<StatusCode, AppError> {
    if state.levels.delete_product(product_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound(
            "this product has no default low-stock level".into(),
        ))
    }
}
