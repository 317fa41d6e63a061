//! Decoding a Kafka record into a movement event: CloudEvents structured mode
//! (the value is the JSON event) or binary mode (`ce_*` headers, value =
//! data), as the CloudEvents Kafka binding says.

use crate::domain::event::{MAX_MESSAGE_BYTES, is_json_media_type};
use crate::domain::{FieldError, MovementEvent, ParseError};
use rdkafka::message::{Headers, Message, OwnedMessage};

/// Why a record went to the dead-letter topic without reaching the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub code: &'static str,
    pub detail: String,
}

pub fn decode(record: &OwnedMessage) -> Result<MovementEvent, Undecodable> {
    let Some(value) = record.payload() else {
        return Err(Undecodable {
            code: "empty_message",
            detail: "the record has no value".into(),
        });
    };
    if value.len() > MAX_MESSAGE_BYTES {
        return Err(Undecodable {
            code: "payload_too_large",
            detail: format!(
                "the record value is {} bytes, over the limit of {MAX_MESSAGE_BYTES}",
                value.len()
            ),
        });
    }

    let mut binary = false;
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut bad = Vec::new();
    if let Some(headers) = record.headers() {
        for header in headers.iter() {
            let name = header.key.to_ascii_lowercase();
            let is_ce = name.starts_with("ce_");
            if !is_ce && name != "content-type" {
                continue;
            }
            binary |= name == "ce_specversion";
            match header.value.map(std::str::from_utf8) {
                Some(Ok(v)) => attributes.push((name, v.to_string())),
                None => {}
                Some(Err(_)) => bad.push(FieldError {
                    field: name.trim_start_matches("ce_").to_string(),
                    message: "header value is not UTF-8".into(),
                }),
            }
        }
    }

    let parsed = if binary {
        if !bad.is_empty() {
            return Err(invalid(ParseError::Invalid(bad)));
        }
        if let Some((_, ct)) = attributes.iter().find(|(n, _)| n == "content-type")
            && !is_json_media_type(ct)
        {
            return Err(Undecodable {
                code: "unsupported_media_type",
                detail: format!("binary-mode data must be application/json, got {ct:?}"),
            });
        }
        let attrs = attributes.iter().map(|(name, v)| {
            let name = match name.as_str() {
                "content-type" => "datacontenttype",
                other => other.trim_start_matches("ce_"),
            };
            (name, v.as_str())
        });
        MovementEvent::from_binary(attrs, value)
    } else {
        MovementEvent::from_structured(value)
    };
    parsed.map_err(invalid)
}

fn invalid(e: ParseError) -> Undecodable {
    Undecodable {
        code: e.code(),
        detail: e.to_string(),
    }
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
            "empty_message"
        );
        assert_eq!(
            decode(&record(Some(b"\x00\x9f\x92\x96"), None))
                .unwrap_err()
                .code,
            "malformed_json"
        );
        assert_eq!(
            decode(&record(Some(b"{\"id\":1}"), None)).unwrap_err().code,
            "invalid_event"
        );
    }
}
