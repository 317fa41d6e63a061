//! A pair's stock over time as an SVG step chart, drawn on the server:
//! the stock holds its value until the next change, so the line steps.
//! No script draws it, so it shows wherever the page does.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 220.0;
/// Room for the axis labels.
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;
const RIGHT: f64 = 10.0;

/// One point of the chart: the stock right after a change at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub stock: i64,
}

/// The chart of `steps` (oldest first), carried on to `until`, with the
/// low-stock `level` as a dashed line when there is one.
pub fn step_chart(steps: &[Step], until: DateTime<Utc>, level: Option<i64>) -> Markup {
    let Some(first) = steps.first() else {
        return html! { p.muted { "No changes yet, so nothing to chart." } };
    };
    let top = steps
        .iter()
        .map(|s| s.stock)
        .chain(level)
        .max()
        .unwrap_or(0)
        .max(1);
    let start = first.at.timestamp_millis() as f64;
    let end = (until.timestamp_millis() as f64).max(start + 1.0);
    let x = |t: DateTime<Utc>| {
        LEFT + (t.timestamp_millis() as f64 - start) / (end - start) * plot_width()
    };
    let y = |v: i64| TOP + (1.0 - v as f64 / top as f64) * plot_height();
    let path = step_path(steps, until, x, y);
    html! {
        svg.chart #stock-chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-label="Stock over time" {
            line x1=(LEFT) y1=(y(0)) x2=(WIDTH - RIGHT) y2=(y(0)) stroke="#d8dde2" {}
            @if let Some(level) = level {
                line.level x1=(LEFT) y1=(y(level)) x2=(WIDTH - RIGHT) y2=(y(level)) {}
            }
            path.line d=(path) {}
            text x="4" y=(y(top) + 4.0) { (top) }
            text x="4" y=(y(0)) { "0" }
            text x=(LEFT) y=(HEIGHT - 6.0) { (first.at.format("%Y-%m-%d %H:%M UTC")) }
            text x=(WIDTH - RIGHT) y=(HEIGHT - 6.0) text-anchor="end" {
                (until.format("%Y-%m-%d %H:%M UTC"))
            }
        }
    }
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

/// `M` to the first point, then for each later change a horizontal run to
/// its time and a vertical step to its stock, and a last run to `until`.
fn step_path(
    steps: &[Step],
    until: DateTime<Utc>,
    x: impl Fn(DateTime<Utc>) -> f64,
    y: impl Fn(i64) -> f64,
) -> String {
    let mut d = String::new();
    for (i, step) in steps.iter().enumerate() {
        if i == 0 {
            d.push_str(&format!("M{:.1} {:.1}", x(step.at), y(step.stock)));
        } else {
            d.push_str(&format!(" H{:.1} V{:.1}", x(step.at), y(step.stock)));
        }
    }
    d.push_str(&format!(" H{:.1}", x(until)));
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_line_holds_each_figure_until_the_next_change_then_steps() {
        let steps = [
            Step {
                at: at(0),
                stock: 10,
            },
            Step {
                at: at(50),
                stock: 4,
            },
        ];
        let path = step_path(
            &steps,
            at(100),
            |t| (t - at(0)).num_seconds() as f64,
            |v| v as f64,
        );
        assert_eq!(path, "M0.0 10.0 H50.0 V4.0 H100.0");
    }

    #[test]
    fn the_chart_scales_to_the_highest_of_the_stock_and_the_level() {
        let steps = [Step {
            at: at(0),
            stock: 5,
        }];
        let svg = step_chart(&steps, at(10), Some(20)).into_string();
        assert!(svg.contains(">20</text>"), "{svg}");
        assert!(svg.contains("class=\"level\""), "{svg}");
    }

    #[test]
    fn a_pair_with_no_changes_gets_a_sentence_not_an_empty_chart() {
        let svg = step_chart(&[], at(0), None).into_string();
        assert!(!svg.contains("<svg"), "{svg}");
    }
}
