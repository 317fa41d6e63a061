//! The relay's records: each change as a structured-mode CloudEvent
//! `ru.retail.warehouses.stock.changed`, and its alerts beside it, keyed
//! by the pair so that a pair's records share a partition.

use super::alerts::Alert;
use crate::ledger::log::Change;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

pub const CHANGED: &str = "ru.retail.warehouses.stock.changed";

/// The CloudEvents `source` of everything the relay publishes.
pub const SOURCE: &str = "warehouse-stock";

/// The record key and CloudEvents `subject` of a change: its pair.
pub fn pair_key(c: &Change) -> String {
    let mut key = String::with_capacity(73);
    key.push_str(
        c.warehouse_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    key.push(':');
    key.push_str(
        c.product_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
    key
}

/// Writes the change as a structured-mode CloudEvent into `out`: the bytes
/// [`change_event`] gives, written directly. A change is serialized a
/// million times in a large ingest, and the generic path formats each UUID
/// and timestamp through `core::fmt`, twice where the envelope repeats
/// them; here each is formatted once. `subject` is [`pair_key`]. The test
/// `the_direct_writer_gives_the_envelopes_bytes` holds the two equal.
pub fn write_change_event(out: &mut Vec<u8>, c: &Change, subject: &str) {
    let time = c.changed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let (warehouse, product) = subject.split_at(36);
    let product = &product[1..];
    let mut uuid = Uuid::encode_buffer();
    let movement = c.movement_id.hyphenated().encode_lower(&mut uuid);
    let text = |out: &mut Vec<u8>, pieces: &[&[u8]]| {
        for piece in pieces {
            out.extend_from_slice(piece);
        }
    };
    // serde_json writes integers without `core::fmt`.
    let number = |out: &mut Vec<u8>, n: i64| serde_json::to_writer(out, &n).unwrap_or_default();
    text(
        out,
        &[b"{\"specversion\":\"1.0\",\"type\":\"", CHANGED.as_bytes()],
    );
    text(
        out,
        &[
            b"\",\"source\":\"",
            SOURCE.as_bytes(),
            b"\",\"id\":\"stock-change-",
        ],
    );
    number(out, c.seq);
    text(
        out,
        &[
            b"\",\"subject\":\"",
            subject.as_bytes(),
            b"\",\"time\":\"",
            time.as_bytes(),
        ],
    );
    text(
        out,
        &[b"\",\"datacontenttype\":\"application/json\",\"data\":{\"seq\":"],
    );
    number(out, c.seq);
    text(out, &[b",\"warehouse_id\":\"", warehouse.as_bytes()]);
    text(
        out,
        &[
            b"\",\"product_id\":\"",
            product.as_bytes(),
            b"\",\"delta\":",
        ],
    );
    number(out, c.delta);
    text(out, &[b",\"quantity\":"]);
    number(out, c.quantity);
    text(
        out,
        &[
            b",\"movement_id\":\"",
            movement.as_bytes(),
            b"\",\"event\":\"",
        ],
    );
    text(out, &[c.event.as_str().as_bytes(), b"\",\"message_id\":"]);
    // Strings from outside go through the JSON writer, which escapes them.
    serde_json::to_writer(&mut *out, &c.message_id).unwrap_or_default();
    text(out, &[b",\"changed_at\":\"", time.as_bytes(), b"\"}}"]);
}

/// A structured-mode CloudEvent as the relay writes it: serialized from
/// borrowed fields, with no intermediate JSON tree.
#[derive(Serialize)]
struct Envelope<D> {
    specversion: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    source: &'static str,
    id: String,
    subject: String,
    time: DateTime<Utc>,
    datacontenttype: &'static str,
    data: D,
}

impl<D: Serialize> Envelope<D> {
    fn new(kind: &'static str, id: String, c: &Change, data: D) -> Self {
        Envelope {
            specversion: "1.0",
            kind,
            source: SOURCE,
            id,
            subject: format!("{}:{}", c.warehouse_id, c.product_id),
            time: c.changed_at,
            datacontenttype: "application/json",
            data,
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        // Every field serializes (strings, numbers, UUIDs, times).
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What an alert says.
#[derive(Serialize)]
struct AlertData<'a> {
    seq: i64,
    warehouse_id: &'a Uuid,
    product_id: &'a Uuid,
    quantity: i64,
    previous_quantity: i64,
    low: Option<i64>,
    changed_at: &'a DateTime<Utc>,
}

/// The change as a structured-mode CloudEvent, serialized the generic
/// way: the reference [`write_change_event`] is tested against.
#[cfg(test)]
fn change_event(c: &Change) -> Vec<u8> {
    Envelope::new(CHANGED, format!("stock-change-{}", c.seq), c, c).to_vec()
}

/// An alert as a structured-mode CloudEvent; it carries its change's `seq`.
pub fn alert_event(c: &Change, alert: Alert, level: Option<i64>) -> Vec<u8> {
    let data = AlertData {
        seq: c.seq,
        warehouse_id: &c.warehouse_id,
        product_id: &c.product_id,
        quantity: c.quantity,
        previous_quantity: c.before(),
        low: level,
        changed_at: &c.changed_at,
    };
    Envelope::new(
        alert.event_type(),
        format!("stock-{}-{}", alert.as_str(), c.seq),
        c,
        data,
    )
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn change(seq: i64, delta: i64, quantity: i64, message_id: String, nanos: u32) -> Change {
        Change {
            seq,
            warehouse_id: Uuid::new_v4(),
            product_id: Uuid::new_v4(),
            delta,
            quantity,
            movement_id: Uuid::new_v4(),
            event: if delta > 0 {
                EventKind::Arrival
            } else {
                EventKind::Departure
            },
            message_id,
            changed_at: Utc
                .timestamp_opt(1_795_000_000 + seq % 1_000_000, nanos)
                .unwrap(),
        }
    }

    proptest! {
        #[test]
        fn the_direct_writer_gives_the_envelopes_bytes(
            seq in 1i64..i64::MAX,
            delta in prop_oneof![1i64..=i64::from(i32::MAX), -i64::from(i32::MAX)..=-1],
            quantity in 0i64..i64::MAX,
            message_id in any::<String>(),
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000, (0u32..1_000_000).prop_map(|m| m * 1000)],
        ) {
            let c = change(seq, delta, quantity, message_id, nanos);
            let mut direct = Vec::new();
            write_change_event(&mut direct, &c, &pair_key(&c));
            prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(change_event(&c)).unwrap());
        }
    }
}
