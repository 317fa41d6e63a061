//! A movement: the departure and the arrival of one transfer, joined by
//! `movement_id`, what closed it early (a reversal, a write-off), and the
//! view of it the API returns.

use super::correction::{CorrectionDetails, CorrectionReason};
use super::entry::EventKind;
use super::event::EventContent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One applied half of a movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub warehouse_id: Uuid,
    pub at: DateTime<Utc>,
    pub quantity: i32,
}

impl Side {
    /// The half of a movement that `e` describes.
    pub fn of(e: &EventContent) -> Self {
        Side {
            warehouse_id: e.warehouse_id,
            at: e.occurred_at,
            quantity: e.quantity.get(),
        }
    }
}

/// The applied halves of a movement, and its applied reversal and
/// write-off. Rejected events never appear here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovementState {
    pub product_id: Option<Uuid>,
    pub departure: Option<Side>,
    pub arrival: Option<Side>,
    pub reversal: Option<MovementClosing>,
    pub write_off: Option<MovementClosing>,
}

/// A reversal or write-off of a movement, as its view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovementClosing {
    /// The `reversal_id` or `write_off_id` it was made with.
    pub id: Uuid,
    #[schema(inline)]
    pub reason: CorrectionReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the ledger applied it.
    pub applied_at: DateTime<Utc>,
}

impl MovementClosing {
    /// From the details stored with its entry; `None` if they name no id
    /// (only a reversal's or write-off's do).
    pub fn from_details(details: &CorrectionDetails, applied_at: DateTime<Utc>) -> Option<Self> {
        Some(MovementClosing {
            id: details.closing_id()?,
            reason: details.reason,
            note: details.note.clone(),
            reference: details.reference.clone(),
            applied_at,
        })
    }
}

/// A half as a view or a stored row gives it: its kind, and its warehouse,
/// quantity and time where it has been applied.
pub type HalfParts = (EventKind, Option<Uuid>, Option<i32>, Option<DateTime<Utc>>);

impl MovementState {
    /// A movement of `product_id` with the `halves` whose parts are all
    /// known recorded.
    pub fn of_halves(product_id: Uuid, halves: [HalfParts; 2]) -> Self {
        let mut state = MovementState::default();
        for (kind, warehouse, quantity, at) in halves {
            if let (Some(warehouse_id), Some(quantity), Some(at)) = (warehouse, quantity, at) {
                let side = Side {
                    warehouse_id,
                    at,
                    quantity,
                };
                state.record(kind, product_id, side);
            }
        }
        state
    }

    /// Whether `e` may join this movement: the other half, if present, must
    /// name the same product and a different warehouse.
    pub fn accepts(&self, e: &EventContent) -> bool {
        let other = match e.kind {
            EventKind::Arrival => self.departure,
            EventKind::Departure => self.arrival,
            // Only halves join a movement.
            _ => return true,
        };
        match (other, self.product_id) {
            (Some(other), Some(product)) => {
                product == e.product_id && other.warehouse_id != e.warehouse_id
            }
            _ => true,
        }
    }

    pub fn record(&mut self, kind: EventKind, product_id: Uuid, side: Side) {
        match kind {
            EventKind::Arrival => self.arrival = Some(side),
            EventKind::Departure => self.departure = Some(side),
            // Counts and adjustments are no part of a movement; closings
            // are recorded by `close`.
            _ => return,
        }
        self.product_id = Some(product_id);
    }

    /// Records the movement's applied reversal or write-off.
    pub fn close(&mut self, kind: EventKind, closing: MovementClosing) {
        match kind {
            EventKind::Reversal => self.reversal = Some(closing),
            EventKind::WriteOff => self.write_off = Some(closing),
            _ => debug_assert!(false, "only a reversal or write-off closes a movement"),
        }
    }

    /// Whether it departed, has not arrived, and was neither reversed nor
    /// written off: what a write-off may close, and what counts as in
    /// transit.
    pub fn in_transit(&self) -> bool {
        self.departure.is_some()
            && self.arrival.is_none()
            && self.reversal.is_none()
            && self.write_off.is_none()
    }

    /// Its product and departure while it is on the road.
    pub fn on_the_road(&self) -> Option<(Uuid, Side)> {
        if self.in_transit() {
            Some((self.product_id?, self.departure?))
        } else {
            None
        }
    }

    /// The status its view shows.
    pub fn status(&self) -> MovementStatus {
        match (self.departure, self.arrival) {
            _ if self.reversal.is_some() => MovementStatus::Reversed,
            (Some(_), Some(_)) => MovementStatus::Completed,
            (Some(_), None) if self.write_off.is_some() => MovementStatus::WrittenOff,
            (Some(_), None) => MovementStatus::InTransit,
            _ => MovementStatus::Arrived,
        }
    }

    /// The API view, or `None` while neither half has been applied.
    pub fn view(&self, movement_id: Uuid) -> Option<MovementView> {
        let product_id = self.product_id?;
        if self.departure.is_none() && self.arrival.is_none() {
            return None;
        }
        let (dep, arr) = (self.departure, self.arrival);
        let status = self.status();
        let both = dep.zip(arr);
        Some(MovementView {
            movement_id,
            product_id,
            source_warehouse_id: dep.map(|d| d.warehouse_id),
            destination_warehouse_id: arr.map(|a| a.warehouse_id),
            departure_time: dep.map(|d| d.at),
            arrival_time: arr.map(|a| a.at),
            departure_quantity: dep.map(|d| d.quantity),
            arrival_quantity: arr.map(|a| a.quantity),
            quantity_diff: both.map(|(d, a)| i64::from(d.quantity) - i64::from(a.quantity)),
            duration_seconds: both
                .map(|(d, a)| (a.at - d.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6),
            status,
            departure_source: None,
            arrival_source: None,
            reversal: self.reversal.clone(),
            write_off: self.write_off.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementStatus {
    /// Departed, not arrived yet.
    InTransit,
    /// Arrival seen, departure not (yet).
    Arrived,
    /// Both halves seen.
    Completed,
    /// Recorded in error: each applied half was given an opposite entry.
    Reversed,
    /// Departed and lost on the road: it no longer counts as in transit.
    /// An arrival that comes after all completes it.
    WrittenOff,
}

impl MovementStatus {
    pub const ALL: [MovementStatus; 5] = [
        MovementStatus::InTransit,
        MovementStatus::Arrived,
        MovementStatus::Completed,
        MovementStatus::Reversed,
        MovementStatus::WrittenOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MovementStatus::InTransit => "in_transit",
            MovementStatus::Arrived => "arrived",
            MovementStatus::Completed => "completed",
            MovementStatus::Reversed => "reversed",
            MovementStatus::WrittenOff => "written_off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// `GET /api/v1/movements/{movement_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovementView {
    pub movement_id: Uuid,
    pub product_id: Uuid,
    pub source_warehouse_id: Option<Uuid>,
    pub destination_warehouse_id: Option<Uuid>,
    pub departure_time: Option<DateTime<Utc>>,
    pub arrival_time: Option<DateTime<Utc>>,
    pub departure_quantity: Option<i32>,
    pub arrival_quantity: Option<i32>,
    /// Departure quantity minus arrival quantity: what went missing.
    pub quantity_diff: Option<i64>,
    /// Arrival time minus departure time.
    pub duration_seconds: Option<f64>,
    pub status: MovementStatus,
    /// The CloudEvent `source` of the departure (who sent it), `null` while
    /// the departure is unseen. Required when read back from the cache, so
    /// an entry cached before the field existed reads as unreadable and is
    /// loaded again rather than served without it.
    #[serde(deserialize_with = "Option::deserialize")]
    pub departure_source: Option<String>,
    /// The CloudEvent `source` of the arrival, `null` while it is unseen.
    #[serde(deserialize_with = "Option::deserialize")]
    pub arrival_source: Option<String>,
    /// Its reversal, if it was reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal: Option<MovementClosing>,
    /// Its write-off, if it was written off (kept when the arrival came
    /// after all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_off: Option<MovementClosing>,
}

impl MovementView {
    /// The movement as it stands once `closing` (a reversal or a write-off,
    /// `kind`) has closed it, as a read would show it then.
    pub fn closed(self, kind: EventKind, closing: MovementClosing) -> MovementView {
        let mut state = MovementState::of_halves(
            self.product_id,
            [
                (
                    EventKind::Departure,
                    self.source_warehouse_id,
                    self.departure_quantity,
                    self.departure_time,
                ),
                (
                    EventKind::Arrival,
                    self.destination_warehouse_id,
                    self.arrival_quantity,
                    self.arrival_time,
                ),
            ],
        );
        for (was, earlier) in [
            (EventKind::Reversal, self.reversal),
            (EventKind::WriteOff, self.write_off),
        ] {
            if let Some(earlier) = earlier {
                state.close(was, earlier);
            }
        }
        state.close(kind, closing);
        let sources = (self.departure_source, self.arrival_source);
        match state.view(self.movement_id) {
            Some(view) => MovementView {
                departure_source: sources.0,
                arrival_source: sources.1,
                ..view
            },
            None => unreachable!("a movement with a half has a view"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_completed_movement_reports_what_went_missing_and_how_long_it_took() {
        let t0 = Utc.with_ymd_and_hms(2025, 2, 18, 12, 12, 56).unwrap();
        let t1 = Utc.with_ymd_and_hms(2025, 2, 18, 14, 34, 56).unwrap();
        let (w1, w2, p) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut m = MovementState::default();
        m.record(
            EventKind::Departure,
            p,
            Side {
                warehouse_id: w1,
                at: t0,
                quantity: 100,
            },
        );
        assert_eq!(
            m.view(Uuid::nil()).unwrap().status,
            MovementStatus::InTransit
        );
        m.record(
            EventKind::Arrival,
            p,
            Side {
                warehouse_id: w2,
                at: t1,
                quantity: 98,
            },
        );
        let v = m.view(Uuid::nil()).unwrap();
        assert_eq!(v.status, MovementStatus::Completed);
        assert_eq!(v.quantity_diff, Some(2));
        assert_eq!(v.duration_seconds, Some(8520.0));
    }

    #[test]
    fn an_empty_movement_has_no_view() {
        assert!(MovementState::default().view(Uuid::nil()).is_none());
    }
}
