//! Decoding a Kafka record into a movement event, through the Kafka
//! CloudEvents binding (`ce_` headers) of [`crate::domain::binding`].

use crate::domain::{DecodeCode, MovementEvent, Transport, binding};
use rdkafka::message::{Headers, Message, OwnedMessage};

/// Why a record went to the dead-letter topic without reaching the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub code: DecodeCode,
    pub detail: String,
}

pub fn decode(record: &OwnedMessage) -> Result<MovementEvent, Undecodable> {
    // A record without a value (a tombstone) has nothing to parse.
    let Some(value) = record.payload() else {
        return Err(Undecodable {
            code: DecodeCode::EmptyMessage,
            detail: "the record has no value".into(),
        });
    };
    let headers = record
        .headers()
        .into_iter()
        .flat_map(|headers| headers.iter())
        .filter_map(|header| Some((header.key, header.value?)));
    binding::decode(Transport::Kafka, headers, value).map_err(|e| Undecodable {
        code: e.code(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};

    fn record(value: Option<&[u8]>, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            headers,
        )
    }

    const DATA: &str = r#"{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0","warehouse_id":"25718666-6af6-4281-b5a6-3016e36fa557","timestamp":"2025-02-18T12:12:56Z","event":"arrival","product_id":"4705204f-498f-4f96-b4ba-df17fb56bf55","quantity":3}"#;

    #[test]
    fn binary_records_take_attributes_from_ce_headers() {
        let mut headers = OwnedHeaders::new();
        for (k, v) in [
            ("ce_specversion", "1.0"),
            ("ce_id", "k-1"),
            ("ce_source", "WH-1"),
            ("ce_type", "ru.retail.warehouses.movement"),
            ("content-type", "application/json"),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let event = decode(&record(Some(DATA.as_bytes()), Some(headers))).unwrap();
        assert_eq!(event.message_id, "k-1");
        assert_eq!(event.content.quantity.get(), 3);
    }

    #[test]
    fn garbage_and_empty_values_are_undecodable_with_a_code() {
        assert_eq!(
            decode(&record(None, None)).unwrap_err().code,
            DecodeCode::EmptyMessage
        );
        assert_eq!(
            decode(&record(Some(b"\x00\x9f\x92\x96"), None))
                .unwrap_err()
                .code,
            DecodeCode::MalformedJson
        );
        assert_eq!(
            decode(&record(Some(b"{\"id\":1}"), None)).unwrap_err().code,
            DecodeCode::InvalidEvent
        );
    }
}
