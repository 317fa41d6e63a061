//! Corrections of stock that people make: a count (the quantity found on
//! the shelf) or an adjustment (a signed change), each with a reason, and
//! the closings of a movement: its reversal (recorded in error) or its
//! write-off (lost on the road). They are entries of the one audit log,
//! and the rules decide them in the same batches as movements.

use super::entry::{EventKind, Quantity};
use super::fields::{FieldError, Fields, whole_number};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// The longest `note` or `reference` a correction may carry.
pub const MAX_TEXT: usize = 500;

/// Why stock was corrected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionReason {
    CycleCount,
    Damaged,
    Lost,
    Found,
    Correction,
    Other,
}

impl CorrectionReason {
    pub const ALL: [CorrectionReason; 6] = [
        CorrectionReason::CycleCount,
        CorrectionReason::Damaged,
        CorrectionReason::Lost,
        CorrectionReason::Found,
        CorrectionReason::Correction,
        CorrectionReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CorrectionReason::CycleCount => "cycle_count",
            CorrectionReason::Damaged => "damaged",
            CorrectionReason::Lost => "lost",
            CorrectionReason::Found => "found",
            CorrectionReason::Correction => "correction",
            CorrectionReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a correction says besides its pair and quantity: stored with its
/// entry (the audit log's `correction` column) and compared, field by
/// field, when the same id comes again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CorrectionDetails {
    pub reason: CorrectionReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Counts only: the `seq` of the last change the counter had seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis_seq: Option<i64>,
    /// Compare-and-set: the stock the correction expects to find.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_quantity: Option<i64>,
    /// A reversal's idempotency key, on each of its entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal_id: Option<Uuid>,
    /// A write-off's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_off_id: Option<Uuid>,
    /// The half of its movement a reversal's entry reverses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<EventKind>,
}

impl CorrectionDetails {
    /// Details that say only why.
    pub fn because(reason: CorrectionReason) -> Self {
        CorrectionDetails {
            reason,
            note: None,
            reference: None,
            basis_seq: None,
            expected_quantity: None,
            reversal_id: None,
            write_off_id: None,
            reverses: None,
        }
    }

    /// The id of the reversal or write-off these details belong to.
    pub fn closing_id(&self) -> Option<Uuid> {
        self.reversal_id.or(self.write_off_id)
    }
}

/// An adjustment as its fields say it, before it has a time and a source
/// ([`crate::domain::MovementEvent::from_adjustment`]).
#[derive(Debug)]
pub struct Adjustment {
    pub id: Uuid,
    pub kind: EventKind,
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: Quantity,
    pub details: CorrectionDetails,
}

/// Reads an adjustment from its fields (a request's body, or an adjustment
/// CloudEvent's `data`), naming each broken field after `prefix`. Every
/// field is read before any is given up on, so every broken one is told.
pub(super) fn read_adjustment(
    fields: &Map<String, Value>,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Adjustment> {
    let mut read = Fields::new(fields, prefix, errors);
    let [id, warehouse_id, product_id] = read.ids("adjustment_id");
    let kind = read.required("kind", correction_kind);
    let quantity = read.required("quantity", integer);
    let basis_seq = read.optional("basis_seq", non_negative);
    let expected_quantity = read.optional("expected_quantity", non_negative);
    let reason = read.required("reason", reason);
    let note = read.optional("note", text);
    let reference = read.optional("reference", text);
    read.refuse_unknown(&KNOWN, "an adjustment");
    let quantity = match (kind, quantity) {
        (Some(EventKind::Count), Some(q)) => read.check("quantity", Quantity::counted(q)),
        (Some(_), Some(q)) => read.check("quantity", Quantity::change(q)),
        _ => None,
    };
    if kind == Some(EventKind::Adjustment) && basis_seq.is_some() {
        read.error("basis_seq", "only a count takes a basis_seq".into());
    }
    Some(Adjustment {
        id: id?,
        kind: kind?,
        warehouse_id: warehouse_id?,
        product_id: product_id?,
        quantity: quantity?,
        details: CorrectionDetails {
            note,
            reference,
            basis_seq,
            expected_quantity,
            ..CorrectionDetails::because(reason?)
        },
    })
}

/// The fields an adjustment may name.
const KNOWN: [&str; 10] = [
    "adjustment_id",
    "warehouse_id",
    "product_id",
    "kind",
    "quantity",
    "basis_seq",
    "expected_quantity",
    "reason",
    "note",
    "reference",
];

fn correction_kind(v: &Value) -> Result<EventKind, String> {
    match v.as_str() {
        Some("count") => Ok(EventKind::Count),
        Some("adjustment") => Ok(EventKind::Adjustment),
        _ => Err(format!("must be \"count\" or \"adjustment\", got {v}")),
    }
}

pub(super) fn reason(v: &Value) -> Result<CorrectionReason, String> {
    v.as_str().and_then(CorrectionReason::parse).ok_or_else(|| {
        let names: Vec<&str> = CorrectionReason::ALL.iter().map(|r| r.as_str()).collect();
        format!("must be one of {}, got {v}", names.join(", "))
    })
}

fn integer(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            whole_number(n).ok_or_else(|| format!("must be a whole number, got {n}"))
        }
        _ => Err(format!("must be a whole number, got {v}")),
    }
}

fn non_negative(v: &Value) -> Result<i64, String> {
    integer(v).and_then(|n| match n >= 0 {
        true => Ok(n),
        false => Err(format!("must be 0 or more, got {n}")),
    })
}

/// A note or reference: at most [`MAX_TEXT`] characters, and no U+0000,
/// which PostgreSQL cannot store.
pub(super) fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if s.chars().count() > MAX_TEXT => Err(format!(
            "must be at most {MAX_TEXT} characters, got {}",
            s.chars().count()
        )),
        Value::String(s) if s.contains('\0') => {
            Err("must not contain the NUL character (U+0000)".into())
        }
        Value::String(s) => Ok(s.clone()),
        _ => Err("must be a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The adjustment `body` reads as, or the fields it names as broken.
    fn read(body: Value) -> Result<Adjustment, Vec<String>> {
        let mut errors = Vec::new();
        let fields = body.as_object().expect("an object").clone();
        let read = read_adjustment(&fields, "", &mut errors);
        match read {
            Some(adjustment) if errors.is_empty() => Ok(adjustment),
            _ => Err(errors.into_iter().map(|e| e.field).collect()),
        }
    }

    fn count() -> Value {
        json!({
            "adjustment_id": "a1c0ffee-0000-4000-8000-000000000001",
            "warehouse_id": "c1d70455-7e14-11e9-812a-70106f431230",
            "product_id": "4705204f-498f-4f96-b4ba-df17fb56bf55",
            "kind": "count", "quantity": 95, "basis_seq": 3,
            "expected_quantity": 98, "reason": "cycle_count",
            "note": "aisle 4", "reference": "SC-1"
        })
    }

    #[test]
    fn a_count_with_every_field_reads_as_sent() {
        let a = read(count()).unwrap();
        assert_eq!(a.kind, EventKind::Count);
        assert_eq!(a.quantity.get(), 95);
        assert_eq!(a.details.reason, CorrectionReason::CycleCount);
        assert_eq!(a.details.basis_seq, Some(3));
        assert_eq!(a.details.expected_quantity, Some(98));
        assert_eq!(a.details.note.as_deref(), Some("aisle 4"));
        assert_eq!(a.details.reference.as_deref(), Some("SC-1"));
    }

    #[test]
    fn a_count_may_find_nothing_but_an_adjustment_must_change_something() {
        let mut zero = count();
        zero["quantity"] = json!(0);
        assert_eq!(read(zero.clone()).unwrap().quantity.get(), 0);
        zero["kind"] = json!("adjustment");
        zero.as_object_mut().unwrap().remove("basis_seq");
        assert_eq!(read(zero).unwrap_err(), ["quantity"]);
    }

    #[test]
    fn every_broken_field_is_named_at_once() {
        let mut body = count();
        body["adjustment_id"] = json!("nope");
        body["kind"] = json!("recount");
        body["reason"] = json!("stolen");
        body["expected_quantity"] = json!(-1);
        body["note"] = json!("x".repeat(MAX_TEXT + 1));
        body["reference"] = json!("a\u{0}b");
        let mut named = read(body).unwrap_err();
        named.sort();
        assert_eq!(
            named,
            [
                "adjustment_id",
                "expected_quantity",
                "kind",
                "note",
                "reason",
                "reference"
            ]
        );
    }

    #[test]
    fn an_adjustment_takes_no_basis_and_no_field_it_does_not_know() {
        let mut body = count();
        body["kind"] = json!("adjustment");
        body["quantity"] = json!(-2);
        assert_eq!(read(body.clone()).unwrap_err(), ["basis_seq"]);
        body.as_object_mut().unwrap().remove("basis_seq");
        body["expected_qty"] = json!(95);
        assert!(read(body).is_err(), "a misspelt field is refused");
    }
}
