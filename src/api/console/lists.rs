//! The console's lists: movements (in transit by default, with their
//! write-off and reversal buttons) and one movement, the rejections, the
//! live change feed, and the alerts with their levels.

use super::layout::{
    self, delta, maybe_time, movement_link, pair_link, product_link, th, time, warehouse_link,
};
use super::page::{Page, ROWS, given};
use crate::api::error::AppError;
use crate::api::extract::{ApiQuery, MovementPath, next_cursor, parse_optional_uuid};
use crate::api::extract::{parse_reason, parse_time};
use crate::api::state::AppState;
use crate::domain::{
    CorrectionReason, MovementClosing, MovementStatus, MovementView, RejectReason,
};
use crate::ledger::log::ChangeFilter;
use crate::ledger::reads::MovementFilter;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

/// How far back the feed page looks for its first rows: a bounded read
/// however the log has grown, whatever the filter.
const FEED_WINDOW: i64 = 1000;
/// Rows the feed page opens with.
const FEED_ROWS: usize = 25;
/// The most alerts the alerts page lists.
const ALERTS: i64 = 1000;

/// `?status=&warehouse_id=&product_id=&departed_before=&after=`.
#[derive(Deserialize)]
pub struct MovementQuery {
    status: Option<String>,
    warehouse_id: Option<String>,
    product_id: Option<String>,
    departed_before: Option<String>,
    after: Option<String>,
}

const STATUSES: [MovementStatus; 5] = [
    MovementStatus::InTransit,
    MovementStatus::Arrived,
    MovementStatus::Completed,
    MovementStatus::Reversed,
    MovementStatus::WrittenOff,
];

impl MovementQuery {
    /// The filter asked for; in transit when no status is given, every
    /// status for `any`.
    fn filter(&self) -> Result<MovementFilter, AppError> {
        let status = match given(&self.status) {
            None => Some(MovementStatus::InTransit),
            Some("any") => None,
            Some(s) => Some(MovementStatus::parse(s).ok_or_else(|| {
                AppError::bad_request("invalid_query", format!("no status {s:?}"))
            })?),
        };
        Ok(MovementFilter {
            status,
            warehouse_id: parse_optional_uuid("warehouse_id", given(&self.warehouse_id))?,
            product_id: parse_optional_uuid("product_id", given(&self.product_id))?,
            departed_before: given(&self.departed_before)
                .map(parse_day_or_time)
                .transpose()?,
        })
    }
}

/// A date (its start, UTC) as a date input sends it, or an RFC 3339 time.
fn parse_day_or_time(raw: &str) -> Result<DateTime<Utc>, AppError> {
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) => Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()),
        Err(_) => parse_time("departed_before", raw),
    }
}

/// Movements by status, warehouse, product and departure; in transit by
/// default, the longest on the road first.
pub async fn movements(
    State(state): State<AppState>,
    query: Result<ApiQuery<MovementQuery>, AppError>,
) -> Page {
    let ApiQuery(q) = query?;
    let filter = q.filter()?;
    let after = parse_optional_uuid("after", given(&q.after))?;
    let page = state.ledger.movements(filter, after, ROWS).await?;
    let next = next_cursor(&page.items, ROWS, |m| m.movement_id).or(page.resume_after);
    let mut items = page.items;
    // The API pages by movement_id; within a page, the oldest departure
    // comes first, which is what a controller looks for.
    items.sort_by_key(|m| (m.departure_time.is_none(), m.departure_time));
    let next_query = filter_query(&filter);
    Ok(layout::page(
        "Movements",
        html! {
            form.inline method="get" action="/console/movements" {
                label { "Status" select name="status" {
                    @for s in STATUSES {
                        option value=(s.as_str()) selected[Some(s) == filter.status] { (s.as_str()) }
                    }
                    option value="any" selected[filter.status.is_none()] { "any" }
                } }
                label { "Warehouse" input name="warehouse_id" size="38"
                    value=[filter.warehouse_id.map(|w| w.to_string())]; }
                label { "Product" input name="product_id" size="38"
                    value=[filter.product_id.map(|p| p.to_string())]; }
                label { "Departed before" input name="departed_before" type="date"
                    value=[given(&q.departed_before)]; }
                button type="submit" { "Filter" }
            }
            div.scroll { table #movements {
                thead { tr {
                    (th("Movement", false)) (th("Product", false)) (th("From", false))
                    (th("To", false)) (th("Quantity", true)) (th("Departed", false))
                    (th("On the road", false)) (th("Status", false)) th { "Action" }
                } }
                tbody { @for m in &items { (movement_row(m)) } }
            } }
            @if items.is_empty() { p.muted #no-movements { "No movement matches." } }
            (layout::next_link(next.map(|a| format!("/console/movements?{}&after={a}",
                next_query)), "Next page"))
        },
    ))
}

/// The query string of `filter`, for the next page's link. It is written
/// from the parsed values: UUIDs and a UTC time in `Z` form need no
/// escaping in a query string.
fn filter_query(filter: &MovementFilter) -> String {
    let status = filter.status.map_or("any", MovementStatus::as_str);
    let mut parts = vec![format!("status={status}")];
    parts.extend(filter.warehouse_id.map(|w| format!("warehouse_id={w}")));
    parts.extend(filter.product_id.map(|p| format!("product_id={p}")));
    parts.extend(filter.departed_before.map(|t| {
        format!(
            "departed_before={}",
            t.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }));
    parts.join("&")
}

fn movement_row(m: &MovementView) -> Markup {
    let on_road = m.status == MovementStatus::InTransit;
    html! {
        tr data-movement=(m.movement_id) {
            td { (movement_link(m.movement_id)) }
            td { (product_link(m.product_id)) }
            td { @if let Some(w) = m.source_warehouse_id { (warehouse_link(w)) } }
            td { @if let Some(w) = m.destination_warehouse_id { (warehouse_link(w)) } }
            td.num { (m.departure_quantity.or(m.arrival_quantity).unwrap_or(0)) }
            td data-sort=[m.departure_time.map(|t| t.to_rfc3339())] { (maybe_time(m.departure_time)) }
            td { @if let (true, Some(t)) = (on_road, m.departure_time) {
                span data-since=(t.to_rfc3339_opts(SecondsFormat::Millis, true)) {}
            } }
            td { (m.status.as_str()) }
            td { (closing_buttons(m)) }
        }
    }
}

/// A write-off for a movement on the road, and a reversal for any
/// movement not yet reversed; each with a fresh idempotency key.
fn closing_buttons(m: &MovementView) -> Markup {
    let id = m.movement_id;
    html! {
        @if m.status == MovementStatus::InTransit {
            form.inline.write-off data-api=(format!("/api/v1/movements/{id}/write-off"))
                data-method="POST" {
                input type="hidden" name="write_off_id" value=(Uuid::new_v4());
                input type="hidden" name="reason" value=(CorrectionReason::Lost.as_str());
                button type="submit" { "Write off" }
                output {}
            }
        }
        @if !matches!(m.status, MovementStatus::Reversed | MovementStatus::WrittenOff) {
            form.inline.reverse data-api=(format!("/api/v1/movements/{id}/reversal"))
                data-method="POST" {
                input type="hidden" name="reversal_id" value=(Uuid::new_v4());
                input type="hidden" name="reason" value=(CorrectionReason::Correction.as_str());
                button type="submit" { "Reverse" }
                output {}
            }
        }
    }
}

/// One movement: both halves and any reversal or write-off.
pub async fn movement(State(state): State<AppState>, ids: Result<MovementPath, AppError>) -> Page {
    let MovementPath { movement_id } = ids?;
    let m = state
        .ledger
        .movement(movement_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("movement {movement_id} not found")))?;
    let half = |label: &str, w: Option<Uuid>, t, q: Option<i32>, source: &Option<String>| {
        html! {
            tr {
                th { (label) }
                td { @if let Some(w) = w { (pair_link(w, m.product_id, html! { (w) })) } @else { "—" } }
                td { (maybe_time(t)) }
                td.num { (q.map_or("—".to_string(), |q| q.to_string())) }
                td.source { (source.as_deref().unwrap_or("")) }
            }
        }
    };
    Ok(layout::page(
        &format!("Movement {movement_id}"),
        html! {
            ul.strip {
                li { "Status" b #status { (m.status.as_str()) } }
                li { "Product" b { (product_link(m.product_id)) } }
                @if let Some(d) = m.quantity_diff { li { "Missing on arrival" b { (d) } } }
                @if let Some(s) = m.duration_seconds { li { "Took" b { (format!("{s:.0}")) " s" } } }
            }
            div.scroll { table #halves {
                thead { tr { th { "" } th { "Warehouse" } th { "Time" } th.num { "Quantity" }
                             th { "Source" } } }
                tbody {
                    (half("Departure", m.source_warehouse_id, m.departure_time,
                          m.departure_quantity, &m.departure_source))
                    (half("Arrival", m.destination_warehouse_id, m.arrival_time,
                          m.arrival_quantity, &m.arrival_source))
                }
            } }
            (closing("Reversal", &m.reversal))
            (closing("Write-off", &m.write_off))
            (closing_buttons(&m))
        },
    ))
}

fn closing(label: &str, c: &Option<MovementClosing>) -> Markup {
    html! {
        @if let Some(c) = c {
            h2 { (label) }
            p { (time(c.applied_at)) ", " (c.reason.as_str())
                @if let Some(n) = &c.note { ": " span.note { (n) } }
                @if let Some(r) = &c.reference { " (ref " (r) ")" } }
        }
    }
}

/// `?reason=&after=` of the rejections.
#[derive(Deserialize)]
pub struct RejectionQuery {
    reason: Option<String>,
    after: Option<String>,
}

/// Refused events, oldest first, with what differed for conflicting
/// duplicates.
pub async fn rejections(
    State(state): State<AppState>,
    query: Result<ApiQuery<RejectionQuery>, AppError>,
) -> Page {
    let ApiQuery(q) = query?;
    let reason = parse_reason(given(&q.reason))?;
    let after = given(&q.after)
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                AppError::bad_request("invalid_query", format!("after must be a seq, got {s:?}"))
            })
        })
        .transpose()?;
    let items = state.ledger.rejections(reason, after, ROWS).await?;
    let next = next_cursor(&items, ROWS, |r| r.seq);
    let reason_query = reason.map_or(String::new(), |r| format!("reason={}&", r.as_str()));
    Ok(layout::page(
        "Rejections",
        html! {
            form.inline method="get" action="/console/rejections" {
                label { "Reason" select name="reason" {
                    option value="" selected[reason.is_none()] { "any" }
                    @for r in RejectReason::ALL {
                        option value=(r.as_str()) selected[Some(r) == reason] { (r.as_str()) }
                    }
                } }
                button type="submit" { "Filter" }
            }
            div.scroll { table #rejections {
                thead { tr {
                    (th("Seq", true)) (th("Received", false)) (th("Reason", false))
                    (th("Differs", false)) (th("Event", false)) (th("Pair", false))
                    (th("Quantity", true)) (th("Movement", false)) (th("Source", false))
                } }
                tbody { @for r in &items { tr {
                    td.num { (r.seq) }
                    td { (time(r.received_at)) }
                    td { (r.reason) }
                    td { (r.differs.join(", ")) }
                    td { (r.event.as_str()) }
                    td { (pair_link(r.warehouse_id, r.product_id,
                          html! { span.id { (r.warehouse_id) " / " (r.product_id) } })) }
                    td.num { (r.quantity) }
                    td { (movement_link(r.movement_id)) }
                    td.source { (r.source) }
                } } }
            } }
            @if items.is_empty() { p.muted { "No rejection matches." } }
            (layout::next_link(next.map(|a| format!("/console/rejections?{reason_query}after={a}")),
                "Next page"))
        },
    ))
}

/// `?warehouse_id=&product_id=` of the feed.
#[derive(Deserialize)]
pub struct FeedQuery {
    warehouse_id: Option<String>,
    product_id: Option<String>,
}

/// The live change feed: the latest changes, then each new one as it is
/// committed, pulled by the script's long poll of the API's feed.
pub async fn changes(
    State(state): State<AppState>,
    query: Result<ApiQuery<FeedQuery>, AppError>,
) -> Page {
    let ApiQuery(q) = query?;
    let filter = ChangeFilter {
        warehouse_id: parse_optional_uuid("warehouse_id", given(&q.warehouse_id))?,
        product_id: parse_optional_uuid("product_id", given(&q.product_id))?,
    };
    let horizon = state.changes.horizon();
    let from = (horizon - FEED_WINDOW).max(0);
    let recent = state
        .changes
        .changes(from, horizon, filter, FEED_WINDOW)
        .await?
        .changes;
    Ok(layout::page(
        "Live changes",
        html! {
            form.inline method="get" action="/console/changes" {
                label { "Warehouse" input name="warehouse_id" size="38"
                    value=[filter.warehouse_id.map(|w| w.to_string())]; }
                label { "Product" input name="product_id" size="38"
                    value=[filter.product_id.map(|p| p.to_string())]; }
                button type="submit" { "Filter" }
                span.muted { "Feed: " span #feed-state { "connecting…" } }
            }
            div.scroll { table #feed data-after=(horizon)
                data-warehouse=[filter.warehouse_id.map(|w| w.to_string())]
                data-product=[filter.product_id.map(|p| p.to_string())] {
                thead { tr { th.num { "Seq" } th { "Applied" } th { "Warehouse / product" }
                             th { "Event" } th.num { "Delta" } th.num { "Stock after" } } }
                tbody {
                    @for c in recent.iter().rev().take(FEED_ROWS) { tr {
                        td.num { (c.seq) }
                        td { (time(c.changed_at)) }
                        td { (pair_link(c.warehouse_id, c.product_id,
                              html! { span.id { (c.warehouse_id) " / " (c.product_id) } })) }
                        td { (c.event.as_str()) }
                        (delta(c.delta))
                        td.num { (c.quantity) }
                    } }
                }
            } }
        },
    ))
}

/// The pairs below their level now, and the forms that set levels.
pub async fn alerts(State(state): State<AppState>) -> Page {
    let alerts = state.levels.active_alerts(&state.ledger, ALERTS).await?;
    Ok(layout::page(
        "Alerts",
        html! {
            p.muted { "Pairs below the low-stock level in force for them (their own, \
                       else their product's); a pair at 0 is depleted." }
            div.scroll { table #alerts {
                thead { tr {
                    (th("Level", false)) (th("Pair", false)) (th("Stock", true))
                    (th("Threshold", true)) (th("From", false)) (th("Since", false))
                    (th("Change", true))
                } }
                tbody { @for a in &alerts { tr {
                    td class=(format!("level-{}", a.level.as_str())) { (a.level.as_str()) }
                    td { (pair_link(a.warehouse_id, a.product_id,
                          html! { span.id { (a.warehouse_id) " / " (a.product_id) } })) }
                    td.num { (a.quantity) }
                    td.num { (a.threshold) }
                    td { (a.threshold_from.as_str()) }
                    td { (maybe_time(a.crossed_at)) }
                    td.num { (a.crossed_seq.map_or(String::new(), |s| s.to_string())) }
                } } }
            } }
            @if alerts.is_empty() { p.muted #no-alerts { "No pair is below its level." } }
            h2 { "Set or remove a level" }
            div.grid { (level_form(true)) (level_form(false)) }
        },
    ))
}

/// A form for any pair's (or product's) level: the ids go into the path.
fn level_form(pair: bool) -> Markup {
    let (legend, path) = if pair {
        (
            "A pair's own level",
            "/api/v1/warehouses/{warehouse_id}/products/{product_id}/threshold",
        )
    } else {
        (
            "A product's default level",
            "/api/v1/products/{product_id}/threshold",
        )
    };
    html! {
        fieldset { legend { (legend) }
            form.inline data-api=(path) data-method="PUT" data-auth="admin" {
                @if pair { label { "Warehouse" input name="warehouse_id" data-path="" required; } }
                label { "Product" input name="product_id" data-path="" required; }
                label { "Low below" input name="low" type="number" min="0" required data-type="int"; }
                button type="submit" { "Set" }
                output {}
            }
            form.inline data-api=(path) data-method="DELETE" data-auth="admin" {
                @if pair { label { "Warehouse" input name="warehouse_id" data-path="" required; } }
                label { "Product" input name="product_id" data-path="" required; }
                button type="submit" { "Remove" }
                output {}
            }
        }
    }
}

/// The level forms of one pair (`Some(w)`) or product.
pub(super) fn threshold_forms(w: Option<Uuid>, p: Uuid) -> Markup {
    let path = match w {
        Some(w) => format!("/api/v1/warehouses/{w}/products/{p}/threshold"),
        None => format!("/api/v1/products/{p}/threshold"),
    };
    let legend = if w.is_some() {
        "This pair's low-stock level"
    } else {
        "This product's default level"
    };
    html! {
        fieldset { legend { (legend) }
            form.inline.level-set data-api=(path.clone()) data-method="PUT" data-auth="admin" {
                label { "Low below" input name="low" type="number" min="0" required data-type="int"; }
                button type="submit" { "Set" }
                output {}
            }
            form.inline.level-remove data-api=(path) data-method="DELETE" data-auth="admin" {
                button type="submit" { "Remove" }
                output {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_filter_means_the_start_of_that_day() {
        let t = parse_day_or_time("2026-01-02").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-02T00:00:00+00:00");
        assert!(parse_day_or_time("yesterday").is_err());
    }

    #[test]
    fn the_next_page_link_keeps_a_time_with_an_offset_as_the_same_moment() {
        let filter = MovementFilter {
            status: Some(MovementStatus::InTransit),
            warehouse_id: None,
            product_id: None,
            departed_before: Some(parse_day_or_time("2026-01-02T00:00:00+01:00").unwrap()),
        };
        let query = filter_query(&filter);
        assert_eq!(
            query,
            "status=in_transit&departed_before=2026-01-01T23:00:00.000Z"
        );
        assert!(!query.contains('+'), "{query}");
    }
}
