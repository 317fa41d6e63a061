//! What closes a movement early, as asked over HTTP: a reversal or a
//! write-off request, and the audit entries it becomes against the
//! movement's halves.

use super::attributes::Attributes;
use super::correction::{CorrectionDetails, reason, text};
use super::entry::{EventKind, Quantity};
use super::event::{EventContent, MovementEvent};
use super::fields::{FieldError, Fields, ParseError, field_error, uuid};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A reversal or write-off request as its fields say it: its id and why
/// (`POST /api/v1/movements/{id}/reversal` or `/write-off`).
#[derive(Debug)]
pub struct Closing {
    pub kind: EventKind,
    pub id: Uuid,
    pub details: CorrectionDetails,
}

/// A movement's applied halves, as a closing is asked against them: each
/// half's warehouse and quantity.
#[derive(Debug, Clone, Copy)]
pub struct Halves {
    pub movement_id: Uuid,
    pub product_id: Uuid,
    pub departure: Option<(Uuid, Quantity)>,
    pub arrival: Option<(Uuid, Quantity)>,
}

impl Closing {
    /// The entries of this closing against `halves`, sent as its id by
    /// `source`, made `now`: a reversal's, one per applied half, each at
    /// that half's warehouse and quantity and naming the half it reverses;
    /// a write-off's, one at the departure (none before it departed).
    pub fn entries(&self, halves: &Halves, source: &str, now: DateTime<Utc>) -> Vec<MovementEvent> {
        let reversal = self.kind == EventKind::Reversal;
        let sides = [
            (EventKind::Departure, halves.departure),
            (EventKind::Arrival, halves.arrival.filter(|_| reversal)),
        ];
        sides
            .into_iter()
            .filter_map(|(half, side)| {
                let (warehouse_id, quantity) = side?;
                Some(MovementEvent {
                    message_id: self.id.to_string(),
                    source: source.to_owned(),
                    event_time: Some(now),
                    content: EventContent {
                        movement_id: halves.movement_id,
                        kind: self.kind,
                        warehouse_id,
                        product_id: halves.product_id,
                        quantity,
                        occurred_at: now.trunc_subsecs(6),
                    },
                    attributes: Attributes::default(),
                    correction: Some(Box::new(CorrectionDetails {
                        reverses: reversal.then_some(half),
                        ..self.details.clone()
                    })),
                })
            })
            .collect()
    }
}

/// Reads a reversal or write-off request (`kind`), reporting every broken
/// field at once, as for an adjustment.
pub fn read_closing(kind: EventKind, body: &Value) -> Result<Closing, ParseError> {
    let mut errors = Vec::new();
    let closing = match body {
        Value::Object(fields) => closing_fields(kind, fields, &mut errors),
        _ => {
            errors.push(field_error("body", "must be a JSON object"));
            None
        }
    };
    match closing {
        Some(closing) if errors.is_empty() => Ok(closing),
        _ => Err(ParseError::Invalid(errors)),
    }
}

/// The fields of a reversal or write-off request, naming every broken one.
fn closing_fields(
    kind: EventKind,
    fields: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<Closing> {
    debug_assert!(kind.closes_movement(), "only a closing has these fields");
    let key = match kind {
        EventKind::Reversal => "reversal_id",
        _ => "write_off_id",
    };
    let mut read = Fields::new(fields, "", errors);
    let id = read.required(key, uuid);
    let reason = read.required("reason", reason);
    let note = read.optional("note", text);
    let reference = read.optional("reference", text);
    read.refuse_unknown(&[key, "reason", "note", "reference"], "this request");
    let id = id?;
    let mut details = CorrectionDetails {
        note,
        reference,
        ..CorrectionDetails::because(reason?)
    };
    match kind {
        EventKind::Reversal => details.reversal_id = Some(id),
        _ => details.write_off_id = Some(id),
    }
    Some(Closing { kind, id, details })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CorrectionReason;
    use serde_json::json;

    fn named(e: ParseError) -> Vec<String> {
        match e {
            ParseError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_reversal_reads_its_id_and_why_into_its_details() {
        let id = "a1c0ffee-0000-4000-8000-000000000012";
        let body = json!({"reversal_id": id, "reason": "correction", "note": "keyed twice"});
        let closing = read_closing(EventKind::Reversal, &body).unwrap();
        assert_eq!(closing.id.to_string(), id);
        assert_eq!(closing.details.reversal_id, Some(closing.id));
        assert_eq!(closing.details.write_off_id, None);
        assert_eq!(closing.details.reason, CorrectionReason::Correction);
        assert_eq!(closing.details.note.as_deref(), Some("keyed twice"));
    }

    #[test]
    fn a_write_off_is_keyed_by_its_own_field_and_refuses_the_other() {
        let id = "a1c0ffee-0000-4000-8000-000000000010";
        let body = json!({"reversal_id": id, "reason": "lost"});
        let mut fields = named(read_closing(EventKind::WriteOff, &body).unwrap_err());
        fields.sort();
        assert_eq!(fields, ["reversal_id", "write_off_id"]);
        let body = json!({"write_off_id": id, "reason": "lost"});
        let closing = read_closing(EventKind::WriteOff, &body).unwrap();
        assert_eq!(closing.details.write_off_id, Some(closing.id));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_named_as_the_body() {
        assert_eq!(
            named(read_closing(EventKind::Reversal, &json!([1])).unwrap_err()),
            ["body"]
        );
    }

    #[test]
    fn a_write_off_has_one_entry_at_the_departure_and_a_reversal_one_per_half() {
        let id = |n: u128| Uuid::from_u128(n);
        let q = |n: i64| Quantity::parse(n).unwrap();
        let halves = Halves {
            movement_id: id(1),
            product_id: id(2),
            departure: Some((id(3), q(10))),
            arrival: Some((id(4), q(9))),
        };
        let now = chrono::Utc::now();
        let body = json!({"write_off_id": id(5).to_string(), "reason": "lost"});
        let write_off = read_closing(EventKind::WriteOff, &body).unwrap();
        let entries = write_off.entries(&halves, "test", now);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].content.warehouse_id, id(3));
        let body = json!({"reversal_id": id(6).to_string(), "reason": "correction"});
        let reversal = read_closing(EventKind::Reversal, &body).unwrap();
        let entries = reversal.entries(&halves, "test", now);
        let reversed: Vec<_> = entries
            .iter()
            .map(|e| e.correction.as_ref().unwrap().reverses)
            .collect();
        assert_eq!(
            reversed,
            [Some(EventKind::Departure), Some(EventKind::Arrival)]
        );
    }
}
