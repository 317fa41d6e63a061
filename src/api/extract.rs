//! Extractors whose rejection is the API's own error: ids in the path,
//! the query string, and the page of a list. A handler takes parsed
//! values, so no handler parses an id or a query parameter by hand.

use super::error::AppError;
use crate::domain::{MovementStatus, RejectReason};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;
use uuid::Uuid;

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

/// The query string, deserialized into `T`; a shape it does not fit
/// answers 400 `invalid_query`.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for AppError {
    fn from(e: QueryRejection) -> Self {
        AppError::bad_request("invalid_query", e.body_text())
    }
}

/// The path's segments by name, each parsed as a UUID, in the order of
/// `names`; a segment that is not one answers 400 `invalid_uuid`. The raw
/// parameters are borrowed, not collected: this runs on every lookup.
async fn path_ids<const N: usize, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    names: [&'static str; N],
) -> Result<[Uuid; N], AppError> {
    let raw = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| AppError::bad_request("invalid_uuid", e.body_text()))?;
    let mut ids = [None; N];
    for (key, value) in &raw {
        if let Some(i) = names.iter().position(|name| *name == key) {
            ids[i] = Some(parse_uuid(names[i], value)?);
        }
    }
    let mut found = [Uuid::nil(); N];
    for ((slot, id), name) in found.iter_mut().zip(ids).zip(names) {
        *slot = id.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("the route has no {name} segment"))
        })?;
    }
    Ok(found)
}

/// Declares an extractor of the path's ids, named as the route names them,
/// which also describes them to the API document (`params(PairPath)`).
macro_rules! path_extractor {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident),+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: Uuid),+
        }

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = AppError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
                let [$($field),+] = path_ids(parts, state, [$(stringify!($field)),+]).await?;
                Ok($name { $($field),+ })
            }
        }
    };
}

path_extractor! {
    /// `{warehouse_id}/products/{product_id}`: a pair.
    PairPath {
        /// The warehouse
        warehouse_id,
        /// The product
        product_id
    }
}

path_extractor! {
    /// `{warehouse_id}`.
    WarehousePath {
        /// The warehouse
        warehouse_id
    }
}

path_extractor! {
    /// `{product_id}`.
    ProductPath {
        /// The product
        product_id
    }
}

path_extractor! {
    /// `{movement_id}`.
    MovementPath {
        /// The movement_id of the events
        movement_id
    }
}

/// `?limit=&after=` of a list keyed by UUID, as documented. An empty value
/// is malformed, not absent.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UuidPageParams {
    /// Page size, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_after` of the previous page.
    #[param(value_type = Option<Uuid>)]
    after: Option<String>,
}

/// `?limit=&after=` of a list in audit-log order, where `after` is a
/// position (`seq`), as documented.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SeqPageParams {
    /// Page size, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_after` of the previous page: an audit-log position.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
}

/// `?limit=&after=` as sent, parsed by hand so that bad values get the
/// API's error shape.
#[derive(Deserialize)]
struct RawPage {
    limit: Option<String>,
    after: Option<String>,
}

/// A page of a list: its size, and the key (a UUID, or an audit-log
/// position) of the last item of the previous page.
pub struct Page<A> {
    pub limit: i64,
    pub after: Option<A>,
}

/// A list keyed by UUID ([`UuidPageParams`]).
pub type UuidPage = Page<Uuid>;
/// A list in audit-log order ([`SeqPageParams`]).
pub type SeqPage = Page<i64>;

/// A key a page starts after.
pub trait Cursor: Sized {
    fn parse_after(raw: &str) -> Result<Self, AppError>;
}

impl Cursor for Uuid {
    fn parse_after(raw: &str) -> Result<Self, AppError> {
        parse_uuid("after", raw)
    }
}

impl Cursor for i64 {
    fn parse_after(raw: &str) -> Result<Self, AppError> {
        raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                format!(
                    "after must be a non-negative integer (a previous next_after), got {raw:?}"
                ),
            )
        })
    }
}

impl<S: Send + Sync, A: Cursor> FromRequestParts<S> for Page<A> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let ApiQuery(raw) = ApiQuery::<RawPage>::from_request_parts(parts, state).await?;
        Ok(Page {
            limit: parse_limit(raw.limit.as_deref())?,
            after: raw.after.as_deref().map(A::parse_after).transpose()?,
        })
    }
}

/// A full page may have a successor; a short one is the last.
pub fn next_cursor<T, A>(items: &[T], limit: i64, key: impl Fn(&T) -> A) -> Option<A> {
    if items.len() as i64 == limit {
        items.last().map(key)
    } else {
        None
    }
}

/// `limit`: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn parse_limit(raw: Option<&str>) -> Result<i64, AppError> {
    match raw {
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

/// An audit-log position from a previous page's `next_after`.
pub fn parse_seq_cursor(raw: Option<&str>) -> Result<Option<i64>, AppError> {
    raw.map(i64::parse_after).transpose()
}

pub fn parse_uuid(name: &str, raw: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(raw).map_err(|_| {
        AppError::bad_request(
            "invalid_uuid",
            format!("{name} must be a UUID, got {raw:?}"),
        )
    })
}

/// An optional UUID parameter: absent is `None`, present must parse.
pub fn parse_optional_uuid(name: &str, raw: Option<&str>) -> Result<Option<Uuid>, AppError> {
    raw.map(|s| parse_uuid(name, s)).transpose()
}

/// A query parameter's value, parsed from the string as sent (`None` when
/// absent) under the parameter's `name`, with the API's error for a bad one.
pub trait FromQuery: Sized {
    fn from_query(name: &'static str, raw: Option<&str>) -> Result<Self, AppError>;
}

impl FromQuery for Option<Uuid> {
    fn from_query(name: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        parse_optional_uuid(name, raw)
    }
}

impl FromQuery for Option<DateTime<Utc>> {
    fn from_query(name: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        raw.map(|s| parse_time(name, s)).transpose()
    }
}

impl FromQuery for Option<MovementStatus> {
    fn from_query(name: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        raw.map(|s| {
            MovementStatus::parse(s).ok_or_else(|| {
                AppError::bad_request(
                    "invalid_query",
                    format!(
                        "{name} must be in_transit, arrived, completed, reversed or \
                         written_off, got {s:?}"
                    ),
                )
            })
        })
        .transpose()
    }
}

impl FromQuery for Option<RejectReason> {
    fn from_query(_: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        parse_reason(raw)
    }
}

/// A page size: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
#[derive(Debug, Clone, Copy)]
pub struct Limit(pub i64);

impl FromQuery for Limit {
    fn from_query(_: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        parse_limit(raw).map(Limit)
    }
}

/// An audit-log position a reader goes on from (`after`): 0 when absent.
#[derive(Debug, Clone, Copy)]
pub struct SeqCursor(pub i64);

impl FromQuery for SeqCursor {
    fn from_query(_: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        Ok(SeqCursor(parse_seq_cursor(raw)?.unwrap_or(0)))
    }
}

/// How long a long poll may wait: whole seconds, 0 to [`MAX_WAIT_SECONDS`].
#[derive(Debug, Clone, Copy)]
pub struct Wait(pub Duration);

/// The longest a reader may ask to wait for a change.
pub const MAX_WAIT_SECONDS: u64 = 30;

impl FromQuery for Wait {
    fn from_query(_: &'static str, raw: Option<&str>) -> Result<Self, AppError> {
        parse_wait(raw).map(Wait)
    }
}

/// `wait`: whole seconds, 0 to [`MAX_WAIT_SECONDS`].
pub fn parse_wait(raw: Option<&str>) -> Result<Duration, AppError> {
    match raw {
        None => Ok(Duration::ZERO),
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= MAX_WAIT_SECONDS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_query",
                    format!("wait must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}, got {s:?}"),
                )
            }),
    }
}

/// An RFC 3339 timestamp.
pub fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            AppError::bad_request(
                "invalid_query",
                format!("{name} must be an RFC 3339 timestamp such as 2025-02-18T12:00:00Z, got {raw:?} ({e})"),
            )
        })
}

/// A rejection reason by its name.
pub fn parse_reason(raw: Option<&str>) -> Result<Option<RejectReason>, AppError> {
    let Some(raw) = raw else { return Ok(None) };
    RejectReason::parse(raw).map(Some).ok_or_else(|| {
        let known: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        AppError::bad_request(
            "invalid_query",
            format!("reason must be one of {}, got {raw:?}", known.join(", ")),
        )
    })
}

/// Declares a handler's query: the parameters as sent (`$raw`, a struct of
/// strings that also describes them to the API document), read through
/// [`ApiQuery`], and the extractor `$name` of their parsed values, each by
/// its type's [`FromQuery`] in the order listed, so the first broken
/// parameter is the one an answer names.
macro_rules! query_extractor {
    ($(#[$doc:meta])* $name:ident from $raw:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name {
            $(pub $field: $ty),+
        }

        impl<S: Send + Sync> axum::extract::FromRequestParts<S> for $name {
            type Rejection = AppError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, AppError> {
                use $crate::api::extract::FromQuery;
                let $crate::api::extract::ApiQuery(raw) =
                    $crate::api::extract::ApiQuery::<$raw>::from_request_parts(parts, state)
                        .await?;
                Ok($name {
                    $($field: <$ty>::from_query(stringify!($field), raw.$field.as_deref())?),+
                })
            }
        }
    };
}
pub(super) use query_extractor;
