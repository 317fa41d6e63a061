//! Low-stock alerts: which thresholds one change crosses. Pure, so the
//! rules are tested against a model without a database.
//!
//! - `low`: from at or above the pair's level to below it;
//! - `depleted`: to 0 from above it, with or without a level;
//! - `restored`: from below the level (or from 0, for a pair without one)
//!   back to at or above it. A pair's first change is not a restoration:
//!   its stock was never there to come back.
//!
//! A change that drops from above the level straight to 0 crosses both
//! `low` and `depleted`, and says so with both. Each alert is a function of
//! one change, so a crossing is reported once, by the change that made it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Alert {
    Low,
    Depleted,
    Restored,
}

impl Alert {
    pub fn as_str(self) -> &'static str {
        match self {
            Alert::Low => "low",
            Alert::Depleted => "depleted",
            Alert::Restored => "restored",
        }
    }

    /// The CloudEvents `type` of the alert.
    pub fn event_type(self) -> &'static str {
        match self {
            Alert::Low => "ru.retail.warehouses.stock.low",
            Alert::Depleted => "ru.retail.warehouses.stock.depleted",
            Alert::Restored => "ru.retail.warehouses.stock.restored",
        }
    }
}

/// Whether `quantity` is below the `level` in force: the one definition of
/// "below" that a change's crossings and the standing alerts share.
fn below(quantity: i64, level: Option<i64>) -> bool {
    level.is_some_and(|low| quantity < low)
}

/// How a pair stands below its level now: a standing alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shortfall {
    /// Below the level, above 0.
    Low,
    /// At 0, under a level above 0.
    Depleted,
}

impl Shortfall {
    /// Where `quantity` stands against `level`: `None` unless below it.
    pub fn of(quantity: i64, level: Option<i64>) -> Option<Shortfall> {
        if !below(quantity, level) {
            return None;
        }
        Some(if quantity == 0 {
            Shortfall::Depleted
        } else {
            Shortfall::Low
        })
    }

    /// The stock the pair must reach to leave this shortfall: the level,
    /// or 1 from 0. The change that last took it under this mark is the one
    /// that made the alert.
    pub fn mark(self, level: i64) -> i64 {
        match self {
            Shortfall::Low => level,
            Shortfall::Depleted => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Shortfall::Low => "low",
            Shortfall::Depleted => "depleted",
        }
    }
}

/// What one change of a pair's stock from `before` to `after` crosses,
/// given the pair's low-stock `level` (its own, or its product's).
/// `first_change` says that the pair had no change before this one.
pub fn crossings(before: i64, after: i64, level: Option<i64>, first_change: bool) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if !below(before, level) && below(after, level) {
        alerts.push(Alert::Low);
    }
    if before > 0 && after == 0 {
        alerts.push(Alert::Depleted);
    }
    // Without a level (or with 0) the stock is "below" only at 0.
    let back = level.unwrap_or(0).max(1);
    if !first_change && before < back && after >= back {
        alerts.push(Alert::Restored);
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_departure_below_the_level_is_low_and_one_to_zero_is_also_depleted() {
        assert_eq!(crossings(10, 4, Some(5), false), vec![Alert::Low]);
        assert_eq!(
            crossings(10, 0, Some(5), false),
            vec![Alert::Low, Alert::Depleted]
        );
        assert_eq!(crossings(4, 2, Some(5), false), vec![]);
        assert_eq!(crossings(3, 0, None, false), vec![Alert::Depleted]);
    }

    #[test]
    fn a_pair_stands_low_below_its_level_and_depleted_at_zero_under_one() {
        assert_eq!(Shortfall::of(4, Some(5)), Some(Shortfall::Low));
        assert_eq!(Shortfall::of(0, Some(5)), Some(Shortfall::Depleted));
        assert_eq!(Shortfall::of(5, Some(5)), None);
        assert_eq!(Shortfall::of(0, Some(0)), None, "a level of 0 never alerts");
        assert_eq!(Shortfall::of(0, None), None, "no level, no standing alert");
        assert_eq!(Shortfall::Low.mark(5), 5);
        assert_eq!(Shortfall::Depleted.mark(5), 1);
    }

    #[test]
    fn coming_back_to_the_level_is_restored_but_a_first_arrival_is_not() {
        assert_eq!(crossings(4, 5, Some(5), false), vec![Alert::Restored]);
        assert_eq!(crossings(0, 1, None, false), vec![Alert::Restored]);
        assert_eq!(crossings(0, 3, Some(5), false), vec![]);
        assert_eq!(crossings(0, 9, None, true), vec![]);
        assert_eq!(crossings(0, 9, Some(5), true), vec![]);
    }

    /// Where a stock figure stands against a level: the model's state.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Zone {
        empty: bool,
        below: bool,
    }

    fn zone(quantity: i64, level: Option<i64>) -> Zone {
        Zone {
            empty: quantity == 0,
            below: level.is_some_and(|l| quantity < l),
        }
    }

    proptest! {
        /// A pair's stock walks through random arrivals and departures (a
        /// departure past the stock is refused, as the ledger does) under
        /// a random level. The model tracks the zone the stock is in and
        /// expects an alert exactly when a change moves it across a zone's
        /// edge; over the whole walk, `low` and `restored` alternate, and
        /// so do `depleted` and leaving 0.
        #[test]
        fn alerts_fire_exactly_once_per_crossing(
            level in proptest::option::of(0i64..20),
            steps in proptest::collection::vec(-15i64..15, 1..60),
        ) {
            let mut stock = 0i64;
            let mut changed_before = false;
            let mut last_edge: Option<Alert> = None;
            let mut empty_reported = false;
            for delta in steps {
                if delta == 0 || stock + delta < 0 {
                    continue;
                }
                let (before, after) = (stock, stock + delta);
                let alerts = crossings(before, after, level, !changed_before);
                let (from, to) = (zone(before, level), zone(after, level));
                prop_assert_eq!(alerts.contains(&Alert::Low), !from.below && to.below);
                prop_assert_eq!(alerts.contains(&Alert::Depleted), !from.empty && to.empty);
                let was_down = from.below || from.empty;
                let is_down = to.below || to.empty;
                prop_assert_eq!(
                    alerts.contains(&Alert::Restored),
                    changed_before && was_down && !is_down
                );
                // With a level, `low` and `restored` alternate: a second
                // one in a row would be a crossing reported twice.
                if level.is_some_and(|l| l > 0) {
                    for alert in [Alert::Low, Alert::Restored] {
                        if alerts.contains(&alert) {
                            prop_assert_ne!(last_edge, Some(alert), "reported twice in a row");
                            last_edge = Some(alert);
                        }
                    }
                }
                // `depleted` and leaving 0 alternate likewise.
                if alerts.contains(&Alert::Depleted) {
                    prop_assert!(!empty_reported, "depleted twice without leaving 0");
                    empty_reported = true;
                }
                if from.empty && !to.empty {
                    empty_reported = false;
                }
                stock = after;
                changed_before = true;
            }
        }
    }
}
