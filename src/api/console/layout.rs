//! What every console page shares: the frame with its navigation and
//! token box, and the small pieces of markup the pages repeat.

use super::assets::{ICON_PATH, SCRIPT_PATH, STYLESHEET_PATH};
use crate::domain::CorrectionReason;
use axum::response::Html;
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};
use uuid::Uuid;

/// A whole page around `body`.
pub fn page(title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · warehouse-stock" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                link rel="icon" type="image/svg+xml" href=(ICON_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body {
                header {
                    a.brand href="/console" { "warehouse-stock" }
                    nav {
                        a href="/console/movements" { "In transit" } " · "
                        a href="/console/changes" { "Live changes" } " · "
                        a href="/console/alerts" { "Alerts" } " · "
                        a href="/console/rejections" { "Rejections" } " · "
                        a href="/redoc" { "API" }
                    }
                    form #token-form {
                        input #write-token name="write_token" type="password"
                            autocomplete="off" placeholder="write token" aria-label="Write token";
                        input #admin-token name="admin_token" type="password"
                            autocomplete="off" placeholder="admin token" aria-label="Admin token";
                        button type="submit" { "Keep for this tab" }
                        span #token-state {}
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A moment, shown in the browser's time zone by the script.
pub fn time(t: DateTime<Utc>) -> Markup {
    let iso = t.to_rfc3339_opts(SecondsFormat::Millis, true);
    html! { time datetime=(iso) { (iso) } }
}

/// An optional moment.
pub fn maybe_time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

pub fn warehouse_link(w: Uuid) -> Markup {
    html! { a.id href=(format!("/console/warehouses/{w}")) { (w) } }
}

pub fn product_link(p: Uuid) -> Markup {
    html! { a.id href=(format!("/console/products/{p}")) { (p) } }
}

pub fn pair_link(w: Uuid, p: Uuid, text: Markup) -> Markup {
    html! { a href=(format!("/console/warehouses/{w}/products/{p}")) { (text) } }
}

pub fn movement_link(m: Uuid) -> Markup {
    html! { a.id href=(format!("/console/movements/{m}")) { (m) } }
}

/// A signed change, green up and red down.
pub fn delta(d: i64) -> Markup {
    let class = if d < 0 { "num down" } else { "num up" };
    let sign = if d > 0 { "+" } else { "" };
    html! { td class=(class) data-sort=(d) { (sign) (d) } }
}

/// A sortable column header.
pub fn th(label: &str, numeric: bool) -> Markup {
    html! { th data-sortable="" class=[numeric.then_some("num")] { (label) } }
}

/// A `<select>` of correction reasons with `default` chosen.
pub fn reasons(default: CorrectionReason) -> Markup {
    html! {
        select name="reason" {
            @for r in CorrectionReason::ALL {
                option value=(r.as_str()) selected[r == default] { (r.as_str()) }
            }
        }
    }
}

/// The note and reference every correction may carry.
pub fn note_and_reference() -> Markup {
    html! {
        label { "Note" input name="note" maxlength="500"; }
        label { "Reference" input name="reference" maxlength="500"; }
    }
}

/// A page's "older" or "next" link, when there is one.
pub fn next_link(href: Option<String>, label: &str) -> Markup {
    html! {
        @if let Some(href) = href {
            nav.pages { a rel="next" href=(href) { (label) } }
        }
    }
}
