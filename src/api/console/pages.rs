//! The overview and the stock pages: a warehouse's list (now or as of a
//! moment, and as CSV), a pair with its chart, history and corrections,
//! and a product across warehouses.

use super::chart::{Step, step_chart};
use super::layout::{
    self, delta, movement_link, note_and_reference, pair_link, product_link, th, time,
    warehouse_link,
};
use super::page::{Page, PageError, ROWS, given};
use crate::api::error::AppError;
use crate::api::extract::parse_time;
use crate::api::extract::{ApiQuery, PairPath, ProductPath, WarehousePath, parse_uuid};
use crate::api::health;
use crate::api::lookups::{stock_csv, stock_page};
use crate::api::state::AppState;
use crate::domain::CorrectionReason;
use crate::feed::alerts::Shortfall;
use crate::feed::levels::LevelSource;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

/// The most history a pair's page shows and charts at once.
const HISTORY: i64 = 200;
/// Where counting the last hour's rejections stops.
const REJECTIONS_CAP: i64 = 1000;
/// The most alerts the overview counts.
const ALERTS_CAP: i64 = 1000;

/// The overview: health, the pairs low now, the last hour's rejections
/// and a search.
pub async fn overview(State(state): State<AppState>) -> Page {
    let components = health::check(&state).await;
    let lags = state.metrics.lags();
    let held = state.changes.held_back().unwrap_or_default();
    let alerts = state
        .levels
        .active_alerts(&state.ledger, ALERTS_CAP)
        .await?;
    let depleted = alerts
        .iter()
        .filter(|a| a.level == Shortfall::Depleted)
        .count();
    let since = Utc::now() - Duration::hours(1);
    let rejected = state.ledger.rejections_since(since, REJECTIONS_CAP).await?;
    let capped = |n: usize, cap: i64| {
        if n as i64 >= cap {
            format!("{cap}+")
        } else {
            n.to_string()
        }
    };
    let state_of = |label: &str, value: &str| {
        html! { li { (label) b class=(format!("state-{value}")) { (value) } } }
    };
    Ok(layout::page(
        "Overview",
        html! {
            ul.strip #health {
                (state_of("Database", components.db))
                (state_of("Redis", components.redis))
                (state_of("Broker", components.kafka))
                (state_of("Change relay", components.stock_changes))
                li { "Consumer lag" b { (lags.consumer) } }
                li { "Relay lag" b { (lags.relay_changes) " changes, "
                     (format!("{:.0}", lags.relay_seconds)) " s" } }
                li { "Feed horizon trails" b { (held.as_secs()) " s" } }
            }
            ul.strip #counts {
                li { a href="/console/alerts" { "Low now" }
                     b #low-now { (capped(alerts.len() - depleted, ALERTS_CAP)) } }
                li { a href="/console/alerts" { "Depleted now" } b #depleted-now { (depleted) } }
                li { a href="/console/rejections" { "Rejected, last hour" }
                     b #rejected-hour { (capped(rejected as usize, REJECTIONS_CAP)) } }
            }
            h2 { "Find stock" }
            form.inline action="/console/search" method="get" {
                label { "Warehouse" input name="warehouse_id" placeholder="warehouse UUID" size="38"; }
                label { "Product" input name="product_id" placeholder="product UUID" size="38"; }
                button type="submit" { "Show" }
            }
            p.muted { "A warehouse alone lists its stock; a product alone shows it across \
                       warehouses; both show the pair." }
        },
    ))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    warehouse_id: Option<String>,
    product_id: Option<String>,
}

/// The overview's search: to the pair, the warehouse or the product.
pub async fn search(ApiQuery(q): ApiQuery<SearchQuery>) -> Result<Redirect, PageError> {
    let w = given(&q.warehouse_id)
        .map(|s| parse_uuid("warehouse_id", s))
        .transpose()?;
    let p = given(&q.product_id)
        .map(|s| parse_uuid("product_id", s))
        .transpose()?;
    Ok(Redirect::to(&match (w, p) {
        (Some(w), Some(p)) => format!("/console/warehouses/{w}/products/{p}"),
        (Some(w), None) => format!("/console/warehouses/{w}"),
        (None, Some(p)) => format!("/console/products/{p}"),
        (None, None) => super::page::PATH.to_string(),
    }))
}

/// `?as_of=&after=` of a warehouse's list.
#[derive(Deserialize)]
pub struct ListQuery {
    as_of: Option<String>,
    after: Option<String>,
}

impl ListQuery {
    fn parse(&self) -> Result<(Option<DateTime<Utc>>, Option<Uuid>), AppError> {
        let as_of = given(&self.as_of)
            .map(|s| parse_time("as_of", s))
            .transpose()?;
        let after = given(&self.after)
            .map(|s| parse_uuid("after", s))
            .transpose()?;
        Ok((as_of, after))
    }

    /// The query string that shows the same list, for links.
    fn encode(as_of: Option<DateTime<Utc>>, after: Option<Uuid>) -> String {
        let mut parts = Vec::new();
        if let Some(t) = as_of {
            parts.push(format!(
                "as_of={}",
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            ));
        }
        if let Some(a) = after {
            parts.push(format!("after={a}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// A warehouse's products with their stock, now or as of a moment.
pub async fn warehouse(
    State(state): State<AppState>,
    ids: Result<WarehousePath, AppError>,
    query: Result<ApiQuery<ListQuery>, AppError>,
) -> Page {
    let WarehousePath { warehouse_id: w } = ids?;
    let (as_of, after) = query?.0.parse()?;
    let page = stock_page(&state, w, as_of, after, ROWS).await?;
    let shown = ListQuery::encode(as_of, after);
    let iso = as_of.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    Ok(layout::page(
        &format!("Warehouse {w}"),
        html! {
            form.inline #as-of-form action=(format!("/console/warehouses/{w}")) method="get" {
                label { "Stock as of (your time)"
                    input name="local_as_of" type="datetime-local" step="1"; }
                input type="hidden" name="as_of" value=[iso.as_deref()];
                button type="submit" { "Show" }
                a href=(format!("/console/warehouses/{w}")) { "Now" }
            }
            p {
                @match as_of {
                    Some(t) => { "Stock as it stood at " (time(t)) ", on the ledger's clock." },
                    None => { "Stock now." },
                }
                " "
                a #csv href=(format!("/console/warehouses/{w}/products.csv{shown}")) download {
                    "Download this page as CSV"
                }
            }
            div.scroll { table #stock {
                thead { tr { (th("Product", false)) (th("Quantity", true)) th { "" } } }
                tbody {
                    @for item in &page.items {
                        tr {
                            td { (product_link(item.product_id)) }
                            td.num data-sort=(item.quantity) { (item.quantity) }
                            td { (pair_link(w, item.product_id, html! { "history" })) }
                        }
                    }
                }
            } }
            @if page.items.is_empty() { p.muted { "Nothing in stock here." } }
            (layout::next_link(page.next_after.map(|a| format!(
                "/console/warehouses/{w}{}", ListQuery::encode(as_of, Some(a)))), "Next page"))
        },
    ))
}

/// Exactly the list the warehouse page shows, as CSV.
pub async fn warehouse_csv(
    State(state): State<AppState>,
    ids: Result<WarehousePath, AppError>,
    query: Result<ApiQuery<ListQuery>, AppError>,
) -> Result<Response, PageError> {
    let WarehousePath { warehouse_id: w } = ids?;
    let (as_of, after) = query?.0.parse()?;
    let page = stock_page(&state, w, as_of, after, ROWS).await?;
    let name = format!("attachment; filename=\"stock-{w}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        stock_csv(w, &page.items),
    )
        .into_response())
}

/// `?before=` of a pair's history.
#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<String>,
}

/// A pair: its stock and level, the chart and table of its history, and
/// the forms that correct it.
pub async fn pair(
    State(state): State<AppState>,
    ids: Result<PairPath, AppError>,
    query: Result<ApiQuery<HistoryQuery>, AppError>,
) -> Page {
    let PairPath {
        warehouse_id: w,
        product_id: p,
    } = ids?;
    let before = given(&query?.0.before)
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                AppError::bad_request("invalid_query", format!("before must be a seq, got {s:?}"))
            })
        })
        .transpose()?;
    let figure = state.ledger.stock(w, p).await?;
    let level = state.levels.level(w, p).await?;
    let history = state.ledger.recent_history(w, p, before, HISTORY).await?;
    let steps: Vec<Step> = history
        .iter()
        .rev()
        .map(|h| Step {
            at: h.applied_at,
            stock: h.stock_after,
        })
        .collect();
    let until = match before {
        Some(_) => history.first().map_or_else(Utc::now, |h| h.applied_at),
        None => Utc::now(),
    };
    let older = (history.len() as i64 == HISTORY)
        .then(|| history.last().map(|h| format!("?before={}", h.seq)))
        .flatten();
    Ok(layout::page(
        "Stock of a pair",
        html! {
            p { "Warehouse " (warehouse_link(w)) br; "Product " (product_link(p)) }
            ul.strip {
                li { "Stock now" b #stock-now { (figure.quantity) } }
                li { "Last change" b { (figure.last_seq.map_or("none".into(), |s| format!("#{s}"))) } }
                li { "Low-stock level" b #level {
                    @match level {
                        Some(l) => { (l.low) " (" (if l.from == LevelSource::Pair { "own" } else { "product's" }) ")" },
                        None => { "none" },
                    }
                } }
            }
            h2 { "Stock over time" }
            (step_chart(&steps, until, level.map(|l| l.low)))
            (correction_forms(w, p, figure.last_seq))
            h2 { "History" @if before.is_some() { " (older)" } }
            (history_table(&history))
            (layout::next_link(older, "Older changes"))
        },
    ))
}

fn history_table(history: &[crate::ledger::reads::HistoryItem]) -> maud::Markup {
    html! {
        div.scroll { table #history {
            thead { tr {
                (th("Seq", true)) (th("Applied", false)) (th("Event", false)) (th("Delta", true))
                (th("Stock after", true)) (th("Movement or correction", false))
                (th("Reason", false)) (th("Source", false))
            } }
            tbody {
                @for h in history {
                    tr {
                        td.num { (h.seq) }
                        td data-sort=(h.applied_at.to_rfc3339()) { (time(h.applied_at)) }
                        td { (h.event.as_str()) }
                        (delta(h.delta))
                        td.num { (h.stock_after) }
                        td { (movement_link(h.movement_id))
                             @if let Some(r) = &h.reference { br; span.muted { "ref " (r) } } }
                        td { (h.reason.as_deref().unwrap_or(""))
                             @if let Some(n) = &h.note { br; span.note { (n) } } }
                        td.source { (h.source) }
                    }
                }
            }
        } }
        @if history.is_empty() { p.muted { "This pair has had no change." } }
    }
}

/// The count and adjustment forms, with a fresh idempotency key each:
/// sending a form twice applies it once.
fn correction_forms(w: Uuid, p: Uuid, last_seq: Option<i64>) -> maud::Markup {
    let hidden = |kind: &str| {
        html! {
            input type="hidden" name="kind" value=(kind);
            input type="hidden" name="adjustment_id" value=(Uuid::new_v4());
            input type="hidden" name="warehouse_id" value=(w);
            input type="hidden" name="product_id" value=(p);
        }
    };
    html! {
        div.grid {
            fieldset { legend { "Record a count" }
                form.inline #count-form data-api="/api/v1/adjustments" data-method="POST" {
                    (hidden("count"))
                    @if let Some(seq) = last_seq {
                        input type="hidden" name="basis_seq" data-type="int" value=(seq);
                    }
                    label { "Quantity found"
                        input name="quantity" type="number" min="0" required data-type="int"; }
                    label { "Reason" (layout::reasons(CorrectionReason::CycleCount)) }
                    (note_and_reference())
                    button type="submit" { "Record count" }
                    output {}
                }
                p.muted { "Counted against change #" (last_seq.unwrap_or(0))
                    ": what changed since is kept." }
            }
            fieldset { legend { "Adjust" }
                form.inline #adjust-form data-api="/api/v1/adjustments" data-method="POST" {
                    (hidden("adjustment"))
                    label { "Change (+ or −)"
                        input name="quantity" type="number" required data-type="int"; }
                    label { "Reason" (layout::reasons(CorrectionReason::Correction)) }
                    (note_and_reference())
                    button type="submit" { "Adjust" }
                    output {}
                }
            }
            (super::lists::threshold_forms(Some(w), p))
        }
    }
}

/// A product across warehouses: the total, what is in transit, and the
/// warehouses holding it.
pub async fn product(
    State(state): State<AppState>,
    ids: Result<ProductPath, AppError>,
    query: Result<ApiQuery<ListQuery>, AppError>,
) -> Page {
    let ProductPath { product_id: p } = ids?;
    let (_, after) = query?.0.parse()?;
    let figures = state.ledger.product_stock(p, after, ROWS).await?;
    let next = crate::api::extract::next_cursor(&figures.items, ROWS, |i| i.warehouse_id);
    Ok(layout::page(
        &format!("Product {p}"),
        html! {
            ul.strip {
                li { "In warehouses" b #total { (figures.total) } }
                li { a href=(format!("/console/movements?product_id={p}")) { "In transit" }
                     b #in-transit { (figures.in_transit) } }
                li { "All told" b { (figures.total + figures.in_transit) } }
            }
            div.scroll { table #holders {
                thead { tr { (th("Warehouse", false)) (th("Quantity", true)) th { "" } } }
                tbody {
                    @for item in &figures.items {
                        tr {
                            td { (warehouse_link(item.warehouse_id)) }
                            td.num data-sort=(item.quantity) { (item.quantity) }
                            td { (pair_link(item.warehouse_id, p, html! { "history" })) }
                        }
                    }
                }
            } }
            @if figures.items.is_empty() { p.muted { "No warehouse holds this product." } }
            (layout::next_link(next.map(|a| format!("/console/products/{p}?after={a}")), "Next page"))
            div.grid { (super::lists::threshold_forms(None, p)) }
        },
    ))
}
