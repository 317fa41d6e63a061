//! The CloudEvents protocol bindings: how a movement event arrives over HTTP
//! (`ce-` headers) and over Kafka (`ce_` headers), which content mode a
//! message is in, and the codes of every way decoding can fail.
//!
//! Both transports decode through [`decode`], so a message gets the same
//! verdict, and the same code, however it arrives. Only the header prefix
//! differs, as the two bindings say.

use super::event::{JSON, MAX_MESSAGE_BYTES, MovementEvent, is_media_type};
use super::fields::{FieldError, ParseError};
use std::fmt;

/// The transport a message came over, which names its attribute headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Kafka,
}

impl Transport {
    /// The prefix of binary-mode attribute headers.
    fn prefix(self) -> &'static str {
        match self {
            Transport::Http => "ce-",
            Transport::Kafka => "ce_",
        }
    }
}

/// The machine-readable codes of a message that is not a movement event: the
/// HTTP error `code`, the dead-letter `dlq_error_code` header and the
/// `kafka_dlq_messages_total{code}` label all come from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeCode {
    /// A Kafka record with no value.
    EmptyMessage,
    PayloadTooLarge,
    UnsupportedMediaType,
    MalformedJson,
    InvalidEvent,
}

impl DecodeCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeCode::EmptyMessage => "empty_message",
            DecodeCode::PayloadTooLarge => "payload_too_large",
            DecodeCode::UnsupportedMediaType => "unsupported_media_type",
            DecodeCode::MalformedJson => "malformed_json",
            DecodeCode::InvalidEvent => "invalid_event",
        }
    }
}

/// Why a message could not be decoded into a movement event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The message is over [`MAX_MESSAGE_BYTES`].
    TooLarge { size: usize },
    /// The content type is neither JSON, CloudEvents JSON, nor binary mode
    /// with JSON data.
    UnsupportedMediaType(String),
    /// The bytes are not JSON, or the JSON breaks the event contract.
    Parse(ParseError),
}

impl DecodeError {
    pub fn code(&self) -> DecodeCode {
        match self {
            DecodeError::TooLarge { .. } => DecodeCode::PayloadTooLarge,
            DecodeError::UnsupportedMediaType(_) => DecodeCode::UnsupportedMediaType,
            DecodeError::Parse(ParseError::MalformedJson(_)) => DecodeCode::MalformedJson,
            DecodeError::Parse(ParseError::Invalid(_)) => DecodeCode::InvalidEvent,
        }
    }
}

impl From<ParseError> for DecodeError {
    fn from(e: ParseError) -> Self {
        DecodeError::Parse(e)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { size } => write!(
                f,
                "the message is {size} bytes, over the limit of {MAX_MESSAGE_BYTES}"
            ),
            DecodeError::UnsupportedMediaType(detail) => f.write_str(detail),
            DecodeError::Parse(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one message from its headers (name and raw value, in any case)
/// and its body, as the CloudEvents binding of `transport` says: a
/// `specversion` attribute header selects binary mode (headers are the
/// attributes, the body is the data); otherwise the body is the whole event
/// in structured mode. A message without a content type is taken as JSON:
/// clients that send JSON without saying so are common.
pub fn decode<'a>(
    transport: Transport,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<MovementEvent, DecodeError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { size: body.len() });
    }
    let prefix = transport.prefix();
    let mut content_type = None;
    let mut binary = false;
    let mut attributes: Vec<(String, &str)> = Vec::new();
    let mut bad = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "content-type" {
            content_type = Some(std::str::from_utf8(value).map_err(|_| {
                DecodeError::UnsupportedMediaType("the content type is not text".into())
            })?);
            continue;
        }
        let Some(attribute) = name.strip_prefix(prefix) else {
            continue;
        };
        binary |= attribute == "specversion";
        match std::str::from_utf8(value) {
            Ok(v) => attributes.push((attribute.to_string(), v)),
            Err(_) => bad.push(FieldError {
                field: attribute.to_string(),
                message: "header value is not UTF-8".into(),
            }),
        }
    }

    if !binary {
        return match content_type {
            None => Ok(MovementEvent::from_structured(body)?),
            Some(ct) if is_media_type(ct, JSON) || is_media_type(ct, CLOUDEVENTS_JSON) => {
                Ok(MovementEvent::from_structured(body)?)
            }
            Some(ct) if is_media_type(ct, CLOUDEVENTS_BATCH) => {
                Err(DecodeError::UnsupportedMediaType(
                    "CloudEvents batch mode is not supported; send one event per message".into(),
                ))
            }
            Some(ct) => Err(DecodeError::UnsupportedMediaType(format!(
                "content type {ct:?} is not supported; send application/json, \
                 application/cloudevents+json, or binary mode with {prefix}* headers"
            ))),
        };
    }
    if let Some(ct) = content_type
        && !is_media_type(ct, JSON)
    {
        return Err(DecodeError::UnsupportedMediaType(format!(
            "binary-mode data must be application/json, got {ct:?}"
        )));
    }
    if !bad.is_empty() {
        return Err(ParseError::Invalid(bad).into());
    }
    let attributes = attributes
        .iter()
        .map(|(name, value)| (name.as_str(), *value))
        .chain(content_type.map(|ct| ("datacontenttype", ct)));
    Ok(MovementEvent::from_binary(attributes, body)?)
}

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = r#"{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0","warehouse_id":"25718666-6af6-4281-b5a6-3016e36fa557","timestamp":"2025-02-18T12:12:56Z","event":"departure","product_id":"4705204f-498f-4f96-b4ba-df17fb56bf55","quantity":100}"#;

    /// The binary-mode headers of one event, under `prefix`.
    fn binary(prefix: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        [
            ("id", "m-1"),
            ("source", "WH-1"),
            ("specversion", "1.0"),
            ("type", "ru.retail.warehouses.movement"),
        ]
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.as_bytes().to_vec()))
        .chain(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        )
        .collect()
    }

    fn run(
        transport: Transport,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
    ) -> Result<MovementEvent, DecodeError> {
        decode(
            transport,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            body,
        )
    }

    #[test]
    fn each_transport_reads_attributes_from_its_own_prefix_only() {
        for (transport, own, other) in [
            (Transport::Http, "ce-", "ce_"),
            (Transport::Kafka, "ce_", "ce-"),
        ] {
            let event = run(transport, &binary(own, &[]), DATA.as_bytes()).unwrap();
            assert_eq!(event.message_id, "m-1");
            assert_eq!(event.content.quantity.get(), 100);
            // The other binding's headers do not make binary mode: the body
            // is then read as a whole structured event, which it is not.
            let err = run(transport, &binary(other, &[]), DATA.as_bytes()).unwrap_err();
            assert_eq!(err.code(), DecodeCode::InvalidEvent, "{transport:?}");
        }
    }

    #[test]
    fn both_transports_give_the_same_verdict_on_the_same_message() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], Option<DecodeCode>);
        let cases: Vec<Case<'_>> = vec![
            (
                &[("Content-Type", "application/json")],
                DATA.as_bytes(),
                None,
            ),
            (
                &[("content-type", "application/xml")],
                DATA.as_bytes(),
                Some(DecodeCode::UnsupportedMediaType),
            ),
            (&[], b"{not json", Some(DecodeCode::MalformedJson)),
            (&[], b"{\"quantity\":0}", Some(DecodeCode::InvalidEvent)),
        ];
        for (extra, body, expected) in cases {
            let verdicts: Vec<Option<DecodeCode>> =
                [("ce-", Transport::Http), ("ce_", Transport::Kafka)]
                    .into_iter()
                    .map(|(prefix, transport)| {
                        run(transport, &binary(prefix, extra), body)
                            .err()
                            .map(|e| e.code())
                    })
                    .collect();
            assert_eq!(verdicts, vec![expected, expected], "{extra:?}");
        }
    }

    #[test]
    fn structured_mode_takes_json_cloudevents_json_or_no_content_type() {
        let event = serde_json::json!({
            "id": "s-1", "source": "WH-1", "specversion": "1.0",
            "type": "ru.retail.warehouses.movement",
            "data": serde_json::from_str::<serde_json::Value>(DATA).unwrap(),
        })
        .to_string();
        for transport in [Transport::Http, Transport::Kafka] {
            for ct in [
                None,
                Some("application/json; charset=utf-8"),
                Some("application/cloudevents+json"),
            ] {
                let headers: Vec<(String, Vec<u8>)> = ct
                    .map(|ct| ("content-type".to_string(), ct.as_bytes().to_vec()))
                    .into_iter()
                    .collect();
                assert!(run(transport, &headers, event.as_bytes()).is_ok(), "{ct:?}");
            }
            for ct in ["text/plain", "application/cloudevents-batch+json"] {
                let headers = vec![("content-type".to_string(), ct.as_bytes().to_vec())];
                assert_eq!(
                    run(transport, &headers, event.as_bytes())
                        .unwrap_err()
                        .code(),
                    DecodeCode::UnsupportedMediaType,
                    "{ct}"
                );
            }
        }
    }

    #[test]
    fn an_oversized_message_or_a_non_utf8_header_is_refused_with_its_code() {
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            run(Transport::Kafka, &[], &big).unwrap_err().code(),
            DecodeCode::PayloadTooLarge
        );
        let mut headers = binary("ce_", &[]);
        headers.push(("ce_subject".into(), vec![0xff, 0xfe]));
        let err = run(Transport::Kafka, &headers, DATA.as_bytes()).unwrap_err();
        assert_eq!(err.code(), DecodeCode::InvalidEvent);
        assert!(err.to_string().contains("subject"), "{err}");
    }
}
